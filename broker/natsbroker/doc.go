// Package natsbroker is the clustered broker: Herald nodes share
// publications through NATS, and history lives in one JetStream stream.
//
// Publishing stores the message in the stream (subject herald.ch.<channel>)
// and the stream's sequence number becomes the offset, so a message has the
// same offset on every node. A publish with an idempotency key carries it
// as the Nats-Msg-Id (a hash of channel and key, so keys are per channel);
// within Config.DuplicateWindow the stream stores a repeat once and answers
// with the first one's sequence. A publish fails with ErrUnavailable only
// when the message certainly was not stored (not connected, no stream, the
// server refused it); once it was sent and no ack came back, the error is
// ErrUnknownOutcome and a retry with the same key is safe.
//
// The stream republishes every stored message, in stream order, to
// herald.live.<channel> with its sequence in the Nats-Sequence header and
// the sequence of the channel's previous stored message in
// Nats-Last-Sequence. A node subscribes to that subject (core NATS) when
// its first local subscriber of the channel arrives and unsubscribes when
// the last one leaves, so it receives traffic only for channels someone
// there wants.
//
// Live delivery has no silent gaps. Per channel the node keeps the sequence
// of the last publication it delivered; the starting point is the channel's
// last stored message, read once the server has registered the interest
// (older messages are the history the hub reads); SubscribeTop hands it
// to the hub (broker.TopSubscriber), so the subscribe that created the
// interest needs no second read for its starting point. A message whose
// Nats-Last-Sequence is not the last delivered one reveals messages that
// never arrived (dropped by a full queue, lost while disconnected): they are
// fetched from the stream by subject, in order, and delivered before it.
// Drops that no later message reveals (the slow-consumer report, the
// subscription's drop count, a reconnect) mark the channel suspect, and a
// check every Config.GapCheckInterval compares its last stored message with
// the last delivered one. nats.go reports only the first drop of a
// slow-consumer episode, so a reported channel is watched: the check reads
// its drop count on every tick until a message was queued with no drop in
// between. The check visits only flagged channels (suspect or watched),
// never all of a node's channels: with a channel per user a node has
// hundreds of thousands. What cannot be repaired (the stream no longer
// holds it, NATS does not answer) is delivered as a broker.Publication with
// Gap set, in channel order, and the hub makes the channel's subscribers
// recover from history; nothing is delivered out of order or skipped
// without that signal.
//
// Failing fast: every round trip to NATS made on a caller's behalf (a
// publish's ack, a subscribe's registration and starting point, creating
// the stream, each history read) is bounded by Config.Timeout, and ends at
// once when the connection to NATS is lost (its reply cannot arrive on a
// new one); a connection that stops answering is declared lost after two
// unanswered pings, one every Config.PingInterval. While the connection is down, Publish, Subscribe and Recover
// fail with ErrUnavailable without a round trip; nats.go keeps
// reconnecting, and the first connect (of a node started while NATS was
// down) or reconnect creates the stream again, so the node is ready as
// soon as NATS is.
//
// Replication: Config.Replicas is the stream's replica count on a NATS
// cluster. JetStream acknowledges a publish once a majority of the
// replicas stored it; a leader change in between is an ack that never
// comes (ErrUnknownOutcome, safe to retry with the same key).
//
// Channel names may contain '.', which separates NATS subject tokens; it is
// written as '~' (not allowed in channel names) in subjects.
//
// A stream that is recreated (deleted, or on a NATS server that lost its
// store) starts its sequences again from 1; a node notices by the stream's
// creation time (after a reconnect, or within Config.GapCheckInterval) and
// delivers a Gap for each subscribed channel, which restarts from the new
// stream's history.
//
// The server API's cluster-wide calls (control.go, broker.Control) are
// one core NATS request on herald.control, answered by every node on an
// inbox of the asker's; Ask stops waiting once every node of the node
// directory (directory.go) answered, or at its context's deadline.
//
// Goroutines: nats.go's, one that watches the stream's identity, plus
// Config.DeliveryShards delivery shards. A
// channel belongs to one shard by hash of its name; the shard's queue
// (Config.ShardQueue messages) is the NATS subscriptions' pending limit,
// and the shard runs gap repair and the hub's Deliver (which encodes and
// compresses) for its channels one message at a time, so each channel
// keeps its order while channels on different shards proceed in parallel.
// Every method is safe for concurrent use.
package natsbroker
