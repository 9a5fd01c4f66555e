// Package hub is the channel registry and the fan-out: which sessions, on
// which event loop, subscribe to which channel, and how a publication
// reaches them.
//
// A publication is encoded into a WebSocket frame once; it is compressed
// only when a subscriber negotiated permessage-deflate, lazily, once per
// window size (frame.go), and encoded as a Server-Sent Event once, when a
// stream session receives it. transport.go is the one place that picks a
// session's bytes: the frame, the event (a stream of several channels gets
// its own id line, hub.EventStream), or for a long poll the message JSON
// handed to its hub.Collector. The hub then queues the publication once in
// the inbox of each event loop that has subscribers of the channel
// (inbox.go) and schedules one drain per loop. A drain takes everything
// queued so far and delivers it in arrival order while the subscribers'
// sessions are corked (session.Cork): every subscriber gets one write for
// the whole batch, not one per publication. Consecutive publications of
// one channel (a run) are delivered subscriber by subscriber, all of the
// run for one before the next, so a loop that is behind on a busy channel
// writes each subscriber dozens of publications at once. What corked
// sessions gather is bounded per connection (session.GatherLimit) and per
// drain (DrainGatherBudget, checked between subscribers: past it the
// gathered bytes are written and the drain goes on, so what goes early
// is a subscriber's whole part of a run, never a slice of it). The run
// that ends a batch writes each subscriber as soon as it is visited, and
// every 64 subscribers the drain looks for publications of the same
// channel queued since it began (with nothing else queued before them):
// those go to the subscribers still to come in this drain, and the next
// drain skips them there by offset. A loop that is behind then reaches
// the last subscriber of a publication one drain's time after it was
// queued, not up to two.
// Nothing is allocated per subscriber or per publication, and no lock is
// taken per subscriber: a loop's subscription index is touched only by
// that loop. Per-channel and per-connection order are kept.
//
// Inboxes are bounded (Config.InboxPublications and InboxBytes). From
// three quarters of either bound a loop is behind: Admit, which the API
// calls before publishing, waits up to Config.AdmitWait for room and then
// refuses with ErrOverloaded, and Overloaded tells a client publish to
// retry; so nothing the node acknowledged is dropped. A publication that
// still finds a full inbox (another node of a cluster published it) is not
// queued: a conflated channel's queued publication is replaced by it,
// otherwise a gap note is queued and the loop's subscribers of the channel
// recover from history in order. For conflated channels
// (Config.Conflate), a subscriber whose socket has a backlog gets only the
// newest publication of the channel in a drain.
//
// Subscribing with recovery (since) is a small protocol of its own: the
// subscription is registered first (so live publications start arriving),
// marked pending, and the channel's history is fetched off the loop by a
// bounded worker pool. While pending, live publications are held back; when
// the history arrives, it is sent, then the held-back publications, skipping
// any offset already sent. The client sees no gap and no duplicate however
// publishes race with the subscribe.
//
// A subscribe without a position needs only the channel's top offset
// (tops.go): the reads of one channel are coalesced, each subscribe
// joining the next read that starts after it registered (never one
// already in flight), so a node makes one broker request per round trip
// per channel however many clients subscribe at once. The read that
// subscribes the node to the channel makes none of its own when the broker
// is a broker.TopSubscriber: the broker read the top once the interest was
// registered, which is what the read needs (a node with a channel per user
// subscribes it for almost every client).
//
// SubscribeLast (last.go) is the same recovery with its starting point
// taken from the history: the newest N publications, then the live ones.
// Visit and Notify (visit.go) reach a channel's local subscribers on their
// loops for the server API and presence: Visit to list or unsubscribe
// them, Notify to send a frame that is not a publication (no offset, not
// in history).
//
// Metrics (metrics.go): each drain observes the inbox lag, its own
// duration and the deliveries per write; each publication a drain wrote
// observes the publish-to-write latency; never per subscriber.
// TopChannels reads per-channel subscription counters kept in the
// registry; Inboxes reads each loop's depth without a lock.
//
// Goroutines: the broker's (Deliver, which only queues and never waits
// for a loop), API handlers waiting in Admit, a small worker pool for
// broker calls that may block, and the event loops. Methods that take a
// *session.Session must run on that session's loop.
package hub
