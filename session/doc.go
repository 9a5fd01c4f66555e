// Package session is the per-connection WebSocket state machine: the
// upgrade, the open state, the close handshake and the closed state; ping and
// pong; outbound accounting against the write-buffer limit; and the /echo
// handler. It drives codec and hands complete messages to a Handler.
//
// It never starts a goroutine and never blocks. Every method runs on the
// event loop that owns the connection (in Herald, a gnet loop): HandleTraffic
// from OnTraffic, Tick from the loop's periodic sweep, OnWritable when the
// engine finds the socket writable, Send and Flush from either or from a
// task the loop executes. Inbound bytes are peeked from the connection and
// discarded once consumed; no slice of them outlives the HandleTraffic
// call. What sessions hold between reads (messages being reassembled,
// partial headers and requests) counts against the server-wide
// Config.MaxInboundBuffer; the session whose read would pass it is closed
// with 1008.
//
// Outbound frames are gathered in the Loop's scratch buffer and handed to
// the socket with one non-blocking write per flush, never to gnet's
// outbound buffer (which nobody can drop). A fan-out corks the sessions it
// writes to (Cork, Uncork): while corked, frames are gathered in the
// session's own pooled buffer, up to GatherLimit, and Uncork writes them
// with one write, so a batch of publications costs one syscall per
// connection; past GatherLimit the gathered bytes are written and
// gathering starts again. Behind reports a session with a backlog (the
// kernel did not take everything): conflation skips intermediate
// publications for those. What the kernel does not take is
// the session's backlog, a pooled buffer that exists only while there are
// such bytes, written by OnWritable as the socket drains; the session knows
// where its frames begin in it. At the write-buffer limit (or when a
// handler aborts a slow consumer) the backlog is dropped except the rest of
// the frame the kernel already has part of, the 1008 "slow consumer" close
// frame follows it, then a FIN, and the session lingers.
//
// A route whose handler is a StreamHandler (stream.go) is served over
// plain HTTP: a GET that passes the origin and Authorize checks gets the
// handler's response head, and the session is a stream session, which
// writes raw bytes (no framing) under the same corking, backlog and
// write-buffer rules, reads nothing more, heartbeats every ping interval,
// is closed as idle when its socket takes nothing for the idle timeout,
// and ends with a FIN instead of a close frame. EndStream returns it to
// waiting for the connection's next request (HTTP/1.1 keep-alive), which
// the handshake timeout bounds (then closed without a 408).
//
// It never touches sockets beyond that: it sees only the Conn interface.
// Methods report that the connection must be dropped and the engine closes
// it; the exceptions are Abort of a session already closed (a handler's
// task found it cannot be served, so it asks the connection to close
// itself, asynchronously) and the shutdown(2) of the write side that
// follows a lingering close frame (a protocol violation, a slow consumer,
// the inbound budget), so the peer reads the close code and an EOF while
// the session discards what the peer still sends, until the peer closes or
// the close timeout passes.
//
// A handler that also implements Ticker hears OnTick from Tick for each of
// its open sessions, so per-connection deadlines of the application ride
// the same sweep.
//
// The handler hears OnClose exactly once, from OnConnClosed, after the
// engine has dropped the connection. That can happen inside Flush: a write
// that finds the peer gone closes the session and its caller drops the
// connection, so a handler iterating its own sessions (a fan-out) must
// tolerate entries being removed while it iterates.
package session
