// Package engine runs Herald's client listener: a gnet reactor with N event
// loops and no goroutine per connection. It owns the listening socket, the
// per-loop connection lists, admission (max-conns), the periodic sweep that
// enforces handshake, idle and close timeouts and sends heartbeats, and
// graceful shutdown. The WebSocket protocol itself lives in session and
// codec; engine only moves bytes between gnet and them.
//
// Goroutines: gnet's loops (one per -loops), gnet's ticker, and the one that
// runs gnet.Run. Everything that touches a connection or a loop's list runs
// on that connection's loop, either in a gnet callback or in a task handed
// to EventLoop.Execute. Timeouts use one sweep per loop per tick, never a
// timer per connection.
package engine
