package session

import (
	"bytes"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/herald-ws/herald/codec"
)

// streamRec is a StreamHandler that records like recorder.
type streamRec struct{ recorder }

func (r *streamRec) AppendHead(dst []byte, _ *Session, _ *codec.Request) []byte {
	return append(dst, "HTTP/1.1 200 OK\r\n\r\n"...)
}
func (r *streamRec) Heartbeat() []byte { return []byte(": hb\n\n") }

// newStream opens a stream session on /s (a WebSocket route /t exists too).
func newStream(t *testing.T, cfg Config) (*Session, *fakeConn, *streamRec) {
	t.Helper()
	rec := &streamRec{}
	cfg.Routes = map[string]Handler{"/s": rec, "/t": &recorder{}}
	if cfg.CloseTimeout == 0 {
		cfg.CloseTimeout = time.Second
	}
	l := NewLoop(&cfg, &Stats{}, func(f func()) error { f(); return nil })
	c := newFakeConn(t)
	s := new(Session)
	s.Init(c, l, t0)
	// A WebSocket frame pipelined behind the request must not be read.
	c.in = append([]byte("GET /s?x=1 HTTP/1.1\r\nHost: x\r\n\r\n"), clientFrame(ws.OpText, []byte("hi"))...)
	if drop := s.HandleTraffic(t0); drop || s.State() != StateOpen || !s.Stream() {
		t.Fatalf("open: drop=%v state=%v stream=%v", drop, s.State(), s.Stream())
	}
	if got := c.out(); string(got) != "HTTP/1.1 200 OK\r\n\r\n" {
		t.Fatalf("head %q", got)
	}
	c.resetOut()
	return s, c, rec
}

// fill queues bytes until the kernel refuses some: the session is behind.
func fill(t *testing.T, s *Session) {
	t.Helper()
	chunk := bytes.Repeat([]byte("x"), 32<<10)
	for i := 0; !s.Behind(); i++ {
		if i > 1000 {
			t.Fatal("the socket never filled")
		}
		s.SendFrame(chunk)
		if !s.Flush() {
			t.Fatal("flush failed")
		}
	}
}

func TestStreamSessionReadsNothingAfterItsRequest(t *testing.T) {
	s, c, rec := newStream(t, Config{})
	c.in = clientFrame(ws.OpClose, closeBody(1000))
	if drop := s.HandleTraffic(t0); drop || s.State() != StateOpen {
		t.Fatalf("input after the request: drop=%v state=%v", drop, s.State())
	}
	if len(rec.messages) != 0 || len(c.in) != 0 || len(c.out()) != 0 {
		t.Fatalf("messages %q, unread %d, written %q: want input discarded and no reply", rec.messages, len(c.in), c.out())
	}
}

// Heartbeats go out every ping interval while the socket takes bytes; a
// stream whose socket takes nothing for the idle timeout is closed as
// idle, without a WebSocket close frame.
func TestStreamSessionDeadlines(t *testing.T) {
	s, c, _ := newStream(t, Config{PingInterval: 100 * time.Millisecond, IdleTimeout: time.Second, WriteBufferLimit: 64 << 20})
	if s.Tick(t0.Add(50*time.Millisecond)) || len(c.out()) != 0 {
		t.Fatal("heartbeat before the ping interval")
	}
	if s.Tick(t0.Add(100*time.Millisecond)) || string(c.out()) != ": hb\n\n" {
		t.Fatalf("no heartbeat at the ping interval: %q", c.out())
	}
	// Silent for an hour but never behind: not idle.
	if s.Tick(t0.Add(time.Hour)) || s.State() != StateOpen {
		t.Fatal("a stream whose socket takes everything was closed")
	}
	c.resetOut()
	fill(t, s)
	now := t0.Add(2 * time.Hour)
	if s.Tick(now) || s.Tick(now.Add(500*time.Millisecond)) || s.State() != StateOpen {
		t.Fatal("closed before the idle timeout")
	}
	// The socket drains, then fills again: the stall starts again.
	c.resetOut()
	if s.OnWritable() {
		t.Fatal("OnWritable dropped the stream")
	}
	fill(t, s)
	if s.Tick(now.Add(900*time.Millisecond)) || s.Tick(now.Add(1500*time.Millisecond)) || s.State() != StateOpen {
		t.Fatal("closed as idle although its socket took bytes")
	}
	if s.Tick(now.Add(2600 * time.Millisecond)); s.State() == StateOpen || s.CloseReason() != CloseIdleTimeout {
		t.Fatalf("stalled past the idle timeout: state %v reason %v", s.State(), s.CloseReason())
	}
	if s.CloseCode() != 0 || s.Backlog() != 0 {
		t.Fatalf("close code %d, backlog %d: want no close frame and the backlog dropped", s.CloseCode(), s.Backlog())
	}
}

// At the write-buffer limit a stream is dropped like a slow WebSocket,
// without a close frame: the peer reads a prefix of what was queued, then
// EOF.
func TestStreamSlowConsumer(t *testing.T) {
	s, c, _ := newStream(t, Config{WriteBufferLimit: 256 << 10})
	fill(t, s)
	for s.State() == StateOpen {
		s.SendFrame(bytes.Repeat([]byte("y"), 32<<10))
		s.Flush()
	}
	if s.CloseReason() != CloseSlowConsumer || s.loop.Stats.SlowConsumers.Load() != 1 || s.CloseCode() != 0 {
		t.Fatalf("reason %v, slow consumers %d, code %d", s.CloseReason(), s.loop.Stats.SlowConsumers.Load(), s.CloseCode())
	}
	out := c.out()
	if len(bytes.Trim(out, "xy")) != 0 {
		t.Fatalf("the stream carried something besides the queued bytes: %q", bytes.Trim(out, "xy")[:16])
	}
}

// EndStream (a long poll answered) leaves the connection waiting for its
// next request; idle past the handshake timeout it is closed without the
// 408 a fresh connection gets.
func TestEndStreamKeepsTheConnection(t *testing.T) {
	s, c, rec := newStream(t, Config{HandshakeTimeout: time.Second})
	s.EndStream()
	if s.State() != StateHandshake || s.Stream() {
		t.Fatalf("after EndStream: state %v stream %v", s.State(), s.Stream())
	}
	c.in = []byte(upgrade) // the same connection upgrades to WebSocket
	if s.HandleTraffic(t0); s.State() != StateOpen || s.Stream() {
		t.Fatalf("upgrade after EndStream: state %v", s.State())
	}
	if !bytes.HasPrefix(c.out(), []byte("HTTP/1.1 101 ")) {
		t.Fatalf("response %q", c.out())
	}
	_ = rec
	s2, c2, _ := newStream(t, Config{HandshakeTimeout: time.Second})
	s2.EndStream()
	if !s2.Tick(time.Now().Add(2*time.Second)) || len(c2.out()) != 0 || s2.CloseReason() != CloseKeepAlive {
		t.Fatalf("idle kept-alive connection: wrote %q, reason %v; want a silent close", c2.out(), s2.CloseReason())
	}
}
