// Package engine runs Herald's client listener: a gnet reactor with N event
// loops and no goroutine per connection. It owns the listening socket, the
// per-loop connection lists, admission (max-conns), the periodic sweep that
// enforces handshake, idle and close timeouts and sends heartbeats, and
// graceful shutdown. The WebSocket protocol itself lives in session and
// codec; engine only moves bytes between gnet and them.
//
// Goroutines: gnet's loops (one per -loops), gnet's ticker, the one that
// runs gnet.Run, and the write waker: gnet has no writable callback, and
// sessions write to their sockets themselves (see session), so the engine
// keeps an epoll instance of its own holding only the sockets that have a
// backlog, armed one-shot, and one goroutine that hands each writable
// socket to its loop. Everything that touches a connection or a loop's
// list runs on that connection's loop, either in a gnet callback or in a
// task handed to EventLoop.Execute. Timeouts use one sweep per loop per
// tick, never a timer per connection.
//
// VisitOpen (visit.go) walks every loop's connection list once, on the
// loops, for the server API's commands by user: no per-user index is kept.
//
// After a burst of thousands of connections opened or closed, once half a
// second passes without a new one, gnet's ticker hands the heap's garbage
// back to the operating system (settle.go), at most every 10 s.
//
// Shutdown spreads the close 1001s evenly over the grace: of the n
// sessions open when it starts, session i gets its close at about
// i*grace/n (a stream session, SSE, gets a FIN instead; the sweep also
// runs stream sessions' deadlines: heartbeats, long polls' timeouts).
// Each close is logged at debug level with its reason and code.
package engine
