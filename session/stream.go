package session

import (
	"time"

	"github.com/herald-ws/herald/codec"
)

// StreamHandler is a Handler for a route served over plain HTTP rather than
// WebSocket (Server-Sent Events): the request is an ordinary GET, there is
// no upgrade, and once the response head is out the session is a stream
// session. A stream session writes the bytes it is given as they are (no
// WebSocket framing) with the same corking, write-buffer limit and slow
// consumer rule as a WebSocket session, and reads nothing more from the
// peer: whatever it sends after the request is discarded. OnMessage is never
// called.
//
// Its deadlines differ because the peer never speaks: instead of a ping,
// every ping interval the handler's Heartbeat bytes go out (when the
// session is not behind); instead of the idle timeout on silence, a session
// whose socket takes nothing for the idle timeout while bytes wait is
// closed as idle. Closing (shutdown, idle, slow consumer, Abort) sends no
// close frame: what is queued goes out (a slow consumer's is dropped), then
// a FIN, so the client sees the stream end and reconnects.
type StreamHandler interface {
	Handler
	// AppendHead appends the response head (status line and header
	// fields, through the blank line) for a request Authorize accepted;
	// r is valid only during the call.
	AppendHead(dst []byte, s *Session, r *codec.Request) []byte
	// Heartbeat is what the session writes every ping interval to keep
	// proxies from timing out an idle stream (an SSE comment); nil for
	// none. It must not change.
	Heartbeat() []byte
}

// StreamTicker is implemented by a StreamHandler with deadlines of its own
// (a long poll's timeout): the engine's periodic sweep calls TickStream
// for each of its open sessions, so no request needs a timer.
type StreamTicker interface {
	TickStream(s *Session, now time.Time)
}

// EndStream ends a stream session's response (its handler wrote all of
// it, with a length): the connection stays open and waits for its next
// request, as a new connection does, under the handshake timeout (HTTP/1.1
// keep-alive). The handler hears no OnClose for the ended response and
// must have released its state; Value is cleared. What the kernel has not
// taken yet still goes out first. A no-op unless s is an open stream
// session.
func (s *Session) EndStream() {
	if s.state != StateOpen || !s.Stream() {
		return
	}
	s.state = StateHandshake
	s.route = 0
	s.flags &^= opened | pingSent
	s.Value = nil
	s.lastSeen = time.Now().UnixNano()
	// Marks the wait for the next request (see Tick): the connection is
	// then closed without the 408 a client would read as the answer to a
	// request it sent just then, and which it would not retry.
	s.reason = CloseKeepAlive
}

// Stream reports whether s is a stream session (its route has a
// StreamHandler): a fan-out picks its bytes by it.
func (s *Session) Stream() bool {
	return s.route != 0 && s.loop.stream[s.route-1] != nil
}

// streamHandler is s's StreamHandler, nil for a WebSocket session.
func (s *Session) streamHandler() StreamHandler {
	if s.route == 0 {
		return nil
	}
	return s.loop.stream[s.route-1]
}

// openStream answers a GET on a stream route: the origin and Authorize
// checks of an upgrade, then the handler's response head, and the session
// is open.
func (s *Session) openStream(req *codec.Request, route uint8, h StreamHandler) {
	if len(req.Host) == 0 {
		s.reject(400, "missing Host")
		return
	}
	if !originAllowed(s.loop.Config.AllowedOrigins, req.Origin) {
		s.reject(403, "origin not allowed")
		return
	}
	s.route = route + 1
	if status, body := h.Authorize(s, req); status != 0 {
		s.reject(status, body)
		return
	}
	s.reason = 0 // no longer waiting on a kept-alive connection
	s.loop.out = h.AppendHead(s.loop.out, s, req)
	s.loop.httpEnd = len(s.loop.out)
	s.state = StateOpen
	h.OnOpen(s)
}

// preflight answers a CORS preflight (OPTIONS) for a stream route: a page
// of an allowed origin may send Authorization and Last-Event-ID with its
// GET. The connection then waits for that GET, as after EndStream.
func (s *Session) preflight(req *codec.Request) {
	if !originAllowed(s.loop.Config.AllowedOrigins, req.Origin) {
		s.reject(403, "origin not allowed")
		return
	}
	out := append(s.loop.out, "HTTP/1.1 204 No Content\r\n"...)
	if len(req.Origin) > 0 {
		out = append(out, "Access-Control-Allow-Origin: "...)
		out = append(out, req.Origin...)
		out = append(out, "\r\nVary: Origin\r\n"...)
	}
	out = append(out, "Access-Control-Allow-Methods: GET\r\nAccess-Control-Allow-Headers: Authorization, Last-Event-ID\r\nAccess-Control-Max-Age: 600\r\n\r\n"...)
	s.loop.out = out
	s.loop.httpEnd = len(out)
	s.reason = CloseKeepAlive
	s.lastSeen = time.Now().UnixNano()
}

// streamTraffic discards what a stream session's peer sends once the
// request is read.
func (s *Session) streamTraffic(in []byte) (drop bool) {
	_, _ = s.conn.Discard(len(in))
	s.syncInbound()
	if s.is(lingering) {
		s.shutdownWrite()
	}
	return s.state == StateClosed
}

// streamTick enforces an open stream session's deadlines. lastSeen is the
// last heartbeat (or the open); while the session is behind, the stalled
// bit (pingSent, which a stream session has no other use for) marks that
// lastSeen is instead when the socket last took bytes.
func (s *Session) streamTick(now time.Time, h StreamHandler) (drop bool) {
	cfg := s.loop.Config
	if t, ok := h.(StreamTicker); ok {
		t.TickStream(s, now)
		if s.state != StateOpen {
			return s.state == StateClosed
		}
	}
	if s.Behind() {
		if !s.is(pingSent) {
			s.flags |= pingSent
			s.lastSeen = now.UnixNano()
			return false
		}
		if cfg.IdleTimeout > 0 && time.Duration(now.UnixNano()-s.lastSeen) >= cfg.IdleTimeout {
			s.loop.Stats.IdleTimeouts.Add(1)
			s.closeStream(CloseIdleTimeout, true)
			return s.state == StateClosed
		}
		return false
	}
	if s.is(pingSent) {
		s.flags &^= pingSent
		s.lastSeen = now.UnixNano()
	}
	if beat := h.Heartbeat(); len(beat) > 0 && cfg.PingInterval > 0 && time.Duration(now.UnixNano()-s.lastSeen) >= cfg.PingInterval {
		s.lastSeen = now.UnixNano()
		s.loop.out = append(s.loop.out, beat...)
		return !s.Flush()
	}
	return false
}

// closeStream ends a stream session: with drop, everything the kernel has
// not taken is dropped (a slow or stalled consumer); otherwise it goes out
// first. Then the write side is shut down and the session lingers until
// the peer closes or the close timeout passes. There is no unit to keep
// whole: a client discards an event the stream ends in the middle of.
func (s *Session) closeStream(r CloseReason, drop bool) {
	if s.state != StateOpen {
		if s.state == StateClosing {
			s.linger(r)
		}
		return
	}
	if drop {
		s.loop.resetOut()
		if bl := s.backlog; bl != nil {
			s.releaseBacklog()
		}
	}
	s.reason = r
	s.linger(r)
	if s.Flush() {
		s.shutdownWrite()
	}
}
