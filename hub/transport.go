package hub

import (
	"github.com/gobwas/ws"

	"github.com/herald-ws/herald/broker"
	"github.com/herald-ws/herald/session"
)

// writeLive queues live publication p, encoded once as f, on s's output.
// It is the one place that picks the bytes a kind of session gets for a
// publication; the caller flushes.
func writeLive(s *session.Session, p broker.Publication, f *sharedFrame) {
	s.SendFrame(f.frameFor(s.Deflate(), s.DeflateWindowBits()))
}

// writeReplayed queues p, read from history, on s's output. buf is scratch
// space the caller reuses across calls; the grown buffer is returned.
func writeReplayed(s *session.Session, p broker.Publication, buf []byte) []byte {
	buf = AppendMessageJSON(buf[:0], p)
	s.Send(ws.OpText, buf)
	return buf
}
