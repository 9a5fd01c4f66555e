package hub

import (
	"github.com/gobwas/ws"

	"github.com/herald-ws/herald/broker"
	"github.com/herald-ws/herald/session"
)

// writeLive queues live publication p, encoded once as f, on s's output.
// It is the one place that picks the bytes a kind of session gets for a
// publication: a WebSocket frame (compressed or not); for a stream
// session the Server-Sent Event, shared too unless the session's events
// carry an id of their own (several channels), which is then written into
// buf, scratch space the caller reuses (the grown buffer is returned); or
// for a long poll (a Collector) the message JSON, which it gathers. The
// caller flushes.
func writeLive(s *session.Session, p broker.Publication, f *sharedFrame, buf []byte) []byte {
	if !s.Stream() {
		s.SendFrame(f.frameFor(s.Deflate(), s.DeflateWindowBits()))
		return buf
	}
	if c, ok := s.Value.(Collector); ok {
		c.Collect(s, p.Channel, p.Offset, f.json)
		return buf
	}
	ev, tail := f.event(p)
	buf = append(buf[:0], "id: "...)
	buf, own := ownEventID(s, p, buf)
	if !own {
		s.SendFrame(ev)
		return buf
	}
	buf = append(buf, '\n')
	buf = append(buf, ev[tail:]...)
	s.SendFrame(buf)
	return buf
}

// writeReplayed queues p, read from history, on s's output. buf is scratch
// space the caller reuses across calls; the grown buffer is returned.
func writeReplayed(s *session.Session, p broker.Publication, buf []byte) []byte {
	buf = AppendMessageJSON(buf[:0], p)
	if !s.Stream() {
		s.Send(ws.OpText, buf)
		return buf
	}
	if c, ok := s.Value.(Collector); ok {
		c.Collect(s, p.Channel, p.Offset, buf)
		return buf
	}
	n := len(buf)
	buf = appendEventHead(buf, s, p)
	buf = AppendEventData(buf, buf[:n])
	s.SendFrame(buf[n:])
	return buf
}
