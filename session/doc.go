// Package session is the per-connection WebSocket state machine: the
// upgrade, the open state, the close handshake and the closed state; ping and
// pong; outbound accounting against the write-buffer limit; and the /echo
// handler. It drives codec and hands complete messages to a Handler.
//
// It never starts a goroutine and never blocks. Every method runs on the
// event loop that owns the connection (in Herald, a gnet loop): HandleTraffic
// from OnTraffic, Tick from the loop's periodic sweep, Send and Flush from
// either or from a task the loop executes. Inbound bytes are peeked from the
// connection and discarded once consumed; no slice of them outlives the
// HandleTraffic call. Outbound frames are gathered in the Loop's scratch
// buffer and written with one Write per flush.
//
// It never touches sockets directly: it sees only the Conn interface, which
// gnet.Conn satisfies. Methods report that the connection must be dropped
// and the engine closes it; the exceptions are Abort (a handler's task found
// the session cannot be served, so it asks the connection to close itself,
// asynchronously) and the shutdown(2) of the write side that follows the
// close frame of a protocol violation, so the peer reads the close code and
// an EOF while the session drains what the peer still sends.
//
// The handler hears OnClose exactly once, from OnConnClosed, after the engine has
// dropped the connection. That can happen inside Flush: when the kernel
// reports the peer gone, gnet closes the connection inside Write, so a
// handler iterating its own sessions (a fan-out) must tolerate entries
// being removed while it iterates.
package session
