package session

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/herald-ws/herald/codec"
)

// fakeConn is a Conn over byte slices: in is what the peer sent, out what
// the session wrote, pending what the "kernel" has not taken yet.
type fakeConn struct {
	in      []byte
	out     bytes.Buffer
	pending int
	closed  bool
}

func (c *fakeConn) Peek(int) ([]byte, error) { return c.in, nil }
func (c *fakeConn) Discard(n int) (int, error) {
	c.in = c.in[n:]
	return n, nil
}
func (c *fakeConn) Write(p []byte) (int, error) { return c.out.Write(p) }
func (c *fakeConn) OutboundBuffered() int       { return c.pending }
func (c *fakeConn) Close() error                { c.closed = true; return nil }
func (c *fakeConn) Fd() int                     { return -1 }

type recorder struct {
	messages []string
	closed   []CloseReason
}

func (r *recorder) Authorize(*Session, *codec.Request) (int, string) { return 0, "" }
func (r *recorder) OnOpen(*Session)                                  {}
func (r *recorder) OnMessage(s *Session, op ws.OpCode, p []byte) {
	r.messages = append(r.messages, string(p))
	s.Send(op, p)
}
func (r *recorder) OnClose(_ *Session, reason CloseReason) { r.closed = append(r.closed, reason) }

const upgrade = "GET /t HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

var t0 = time.Unix(1_700_000_000, 0)

func newSession(t *testing.T, cfg Config) (*Session, *fakeConn, *recorder) {
	t.Helper()
	rec := &recorder{}
	cfg.Routes = map[string]Handler{"/t": rec}
	if cfg.CloseTimeout == 0 {
		cfg.CloseTimeout = time.Second
	}
	l := NewLoop(&cfg, &Stats{}, func(f func()) error { f(); return nil })
	c := &fakeConn{}
	s := new(Session)
	s.Init(c, l, t0)
	return s, c, rec
}

func open(t *testing.T, s *Session, c *fakeConn) {
	t.Helper()
	c.in = []byte(upgrade)
	if drop := s.HandleTraffic(t0); drop || s.State() != StateOpen {
		t.Fatalf("upgrade: drop=%v state=%v", drop, s.State())
	}
	if !bytes.HasPrefix(c.out.Bytes(), []byte("HTTP/1.1 101 ")) {
		t.Fatalf("response %q", c.out.Bytes())
	}
	c.out.Reset()
}

func clientFrame(op ws.OpCode, payload []byte) []byte {
	f := ws.NewFrame(op, true, append([]byte(nil), payload...))
	f = ws.MaskFrameInPlace(f)
	b, _ := ws.CompileFrame(f)
	return b
}

func closeBody(code ws.StatusCode) []byte {
	return binary.BigEndian.AppendUint16(nil, uint16(code))
}

// serverFrames splits what the session wrote into frames.
func serverFrames(t *testing.T, b []byte) []ws.Frame {
	t.Helper()
	var out []ws.Frame
	r := bytes.NewReader(b)
	for r.Len() > 0 {
		h, err := ws.ReadHeader(r)
		if err != nil {
			t.Fatalf("server bytes %q: %v", b, err)
		}
		p := make([]byte, h.Length)
		_, _ = r.Read(p)
		out = append(out, ws.Frame{Header: h, Payload: p})
	}
	return out
}

func TestPeerCloseIsAnsweredThenDropped(t *testing.T) {
	s, c, rec := newSession(t, Config{})
	open(t, s, c)
	c.in = append(clientFrame(ws.OpText, []byte("hi")), clientFrame(ws.OpClose, closeBody(4001))...)
	if drop := s.HandleTraffic(t0); !drop {
		t.Fatal("session not dropped after the peer's close")
	}
	f := serverFrames(t, c.out.Bytes())
	if len(f) != 2 || string(f[0].Payload) != "hi" || f[1].Header.OpCode != ws.OpClose {
		t.Fatalf("frames %+v", f)
	}
	if code := ws.StatusCode(binary.BigEndian.Uint16(f[1].Payload)); code != 4001 {
		t.Fatalf("close answered with %d, want the peer's 4001", code)
	}
	if len(rec.closed) != 0 {
		t.Fatal("handler told before the engine dropped the connection")
	}
	s.Closed()
	s.Closed()
	if len(rec.closed) != 1 || rec.closed[0] != ClosePeer {
		t.Fatalf("OnClose calls %v, want one ClosePeer", rec.closed)
	}
}

func TestServerCloseWaitsForTheAnswerOrTimesOut(t *testing.T) {
	for _, answer := range []bool{true, false} {
		s, c, rec := newSession(t, Config{CloseTimeout: time.Second})
		open(t, s, c)
		s.Close(CloseGoingAway, "bye")
		if !s.Flush() || s.State() != StateClosing {
			t.Fatalf("state %v after Close", s.State())
		}
		f := serverFrames(t, c.out.Bytes())
		if len(f) != 1 || f[0].Header.OpCode != ws.OpClose || binary.BigEndian.Uint16(f[0].Payload) != 1001 {
			t.Fatalf("frames %+v", f)
		}
		// Messages after our close are not handed to the handler.
		c.in = clientFrame(ws.OpText, []byte("late"))
		if s.HandleTraffic(t0) {
			t.Fatal("dropped on a data frame while closing")
		}
		if len(rec.messages) != 0 {
			t.Fatalf("handler got %q while closing", rec.messages)
		}
		if answer {
			c.in = clientFrame(ws.OpClose, closeBody(1001))
			if !s.HandleTraffic(t0) {
				t.Fatal("not dropped after the peer answered")
			}
		} else {
			if !s.Tick(time.Now().Add(2 * time.Second)) {
				t.Fatal("not dropped after the close timeout")
			}
		}
		s.Closed()
		if len(rec.closed) != 1 || rec.closed[0] != CloseGoingAway {
			t.Fatalf("OnClose %v, want going_away", rec.closed)
		}
	}
}

func TestTickDeadlines(t *testing.T) {
	cfg := Config{HandshakeTimeout: time.Second, PingInterval: 2 * time.Second, IdleTimeout: 5 * time.Second}

	s, c, _ := newSession(t, cfg)
	if s.Tick(t0.Add(999 * time.Millisecond)) {
		t.Fatal("handshake timeout fired early")
	}
	if !s.Tick(t0.Add(time.Second)) || !bytes.HasPrefix(c.out.Bytes(), []byte("HTTP/1.1 408 ")) {
		t.Fatalf("handshake timeout: %q", c.out.Bytes())
	}

	s, c, _ = newSession(t, cfg)
	open(t, s, c)
	if s.Tick(t0.Add(time.Second)) || c.out.Len() != 0 {
		t.Fatal("ping before the interval")
	}
	if s.Tick(t0.Add(2*time.Second)) || !bytes.Equal(c.out.Bytes(), []byte{0x89, 0}) {
		t.Fatalf("want one empty ping, got % x", c.out.Bytes())
	}
	c.out.Reset()
	if s.Tick(t0.Add(3*time.Second)) || c.out.Len() != 0 {
		t.Fatal("a second ping while one is outstanding")
	}
	if !s.Tick(t0.Add(5 * time.Second)) {
		t.Fatal("idle connection not dropped")
	}
	f := serverFrames(t, c.out.Bytes())
	if len(f) != 1 || binary.BigEndian.Uint16(f[0].Payload) != 1001 {
		t.Fatalf("idle close frames %+v", f)
	}
	if s.CloseReason() != CloseIdleTimeout {
		t.Fatalf("reason %v", s.CloseReason())
	}
}

func TestSlowConsumerAtTheWriteBufferLimit(t *testing.T) {
	s, c, _ := newSession(t, Config{WriteBufferLimit: 1000})
	open(t, s, c)
	// Nothing pending: even a message over the limit goes out.
	s.Send(ws.OpBinary, make([]byte, 4000))
	if !s.Flush() {
		t.Fatal("an idle connection was refused a large write")
	}
	c.out.Reset()
	c.pending = 900
	s.Send(ws.OpBinary, make([]byte, 200))
	if s.Flush() {
		t.Fatal("pending 900 + 202 bytes passed a 1000-byte limit")
	}
	f := serverFrames(t, c.out.Bytes())
	if len(f) != 1 || f[0].Header.OpCode != ws.OpClose || binary.BigEndian.Uint16(f[0].Payload) != 1008 {
		t.Fatalf("want only a 1008 close, got %+v", f)
	}
	if s.CloseReason() != CloseSlowConsumer || s.State() != StateClosed {
		t.Fatalf("reason %v state %v", s.CloseReason(), s.State())
	}
}

func TestProtocolErrorLingers(t *testing.T) {
	s, c, _ := newSession(t, Config{MaxMessageSize: 10})
	open(t, s, c)
	big := clientFrame(ws.OpBinary, make([]byte, 100))
	c.in = big[:20] // the header announces 100 bytes; only part arrives
	if s.HandleTraffic(t0) {
		t.Fatal("dropped at once; the session must linger to let the peer read its 1009")
	}
	f := serverFrames(t, c.out.Bytes())
	if len(f) != 1 || binary.BigEndian.Uint16(f[0].Payload) != 1009 {
		t.Fatalf("frames %+v", f)
	}
	c.out.Reset()
	c.in = big[20:]
	if s.HandleTraffic(t0) || c.out.Len() != 0 || len(c.in) != 0 {
		t.Fatalf("the rest must be read and discarded silently (out %q, left %d)", c.out.Bytes(), len(c.in))
	}
	if !s.Tick(time.Now().Add(2 * time.Second)) {
		t.Fatal("lingering session not dropped after the close timeout")
	}
}
