// Package hub is the channel registry and the fan-out: which sessions, on
// which event loop, subscribe to which channel, and how a publication
// reaches them.
//
// A publication is encoded into a WebSocket frame once (and compressed once,
// when any session negotiated permessage-deflate; and as a Server-Sent
// Event once, when a stream session receives it). transport.go is the one
// place that picks a session's bytes: the frame, the event (a stream of
// several channels gets its own id line, hub.EventStream), or for a long
// poll the message JSON handed to its hub.Collector. The hub then hands one
// task to each event loop that has subscribers of the channel; the task runs
// on that loop and writes the same frame to each of the loop's subscribers.
// Nothing is allocated per subscriber, and no lock is taken per subscriber:
// a loop's subscription index is touched only by that loop.
//
// Subscribing with recovery (since) is a small protocol of its own: the
// subscription is registered first (so live publications start arriving),
// marked pending, and the channel's history is fetched off the loop by a
// bounded worker pool. While pending, live publications are held back; when
// the history arrives, it is sent, then the held-back publications, skipping
// any offset already sent. The client sees no gap and no duplicate however
// publishes race with the subscribe.
//
// Metrics (metrics.go): each loop's fan-out observes two histograms once
// per publication (publish-to-delivery latency from Publication.Time, and
// the fan-out's duration), never per subscriber; TopChannels reads
// per-channel subscription counters kept in the registry.
//
// Goroutines: the broker's (Deliver), a small worker pool for broker calls
// that may block, and the event loops. Methods that take a
// *session.Session must run on that session's loop.
package hub
