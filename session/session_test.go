package session

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"

	"github.com/herald-ws/herald/codec"
)

// fakeConn is a Conn whose inbound side is a byte slice (in is what the
// peer sent) and whose outbound side is a real non-blocking socket pair, so
// the session's own writes meet a real kernel buffer: out() reads what the
// session wrote so far from the peer's end.
type fakeConn struct {
	in     []byte
	fd     int // the session's end
	peer   int // the test's end
	got    bytes.Buffer
	closed bool
}

func newFakeConn(t *testing.T) *fakeConn {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	return &fakeConn{fd: fds[0], peer: fds[1]}
}

func (c *fakeConn) Peek(int) ([]byte, error) { return c.in, nil }
func (c *fakeConn) Discard(n int) (int, error) {
	c.in = c.in[n:]
	return n, nil
}
func (c *fakeConn) Close() error { c.closed = true; return nil }
func (c *fakeConn) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := unix.Write(c.fd, p[n:])
		if err == unix.EAGAIN {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		n += m
	}
	return n, nil
}
func (c *fakeConn) Fd() int { return c.fd }

// out reads everything the session's writes put in the socket so far and
// returns all bytes read since the last reset.
func (c *fakeConn) out() []byte {
	var buf [64 << 10]byte
	for {
		n, err := unix.Read(c.peer, buf[:])
		if n <= 0 || err != nil {
			return c.got.Bytes()
		}
		c.got.Write(buf[:n])
	}
}

func (c *fakeConn) resetOut() {
	c.out()
	c.got.Reset()
}

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
	c := newFakeConn(t)
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
	if !bytes.HasPrefix(c.out(), []byte("HTTP/1.1 101 ")) {
		t.Fatalf("response %q", c.out())
	}
	c.resetOut()
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
	f := serverFrames(t, c.out())
	if len(f) != 2 || string(f[0].Payload) != "hi" || f[1].Header.OpCode != ws.OpClose {
		t.Fatalf("frames %+v", f)
	}
	if code := ws.StatusCode(binary.BigEndian.Uint16(f[1].Payload)); code != 4001 {
		t.Fatalf("close answered with %d, want the peer's 4001", code)
	}
	if len(rec.closed) != 0 {
		t.Fatal("handler told before the engine dropped the connection")
	}
	s.OnConnClosed()
	s.OnConnClosed()
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
		f := serverFrames(t, c.out())
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
		s.OnConnClosed()
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
	if !s.Tick(t0.Add(time.Second)) || !bytes.HasPrefix(c.out(), []byte("HTTP/1.1 408 ")) {
		t.Fatalf("handshake timeout: %q", c.out())
	}

	s, c, _ = newSession(t, cfg)
	open(t, s, c)
	if s.Tick(t0.Add(time.Second)) || len(c.out()) != 0 {
		t.Fatal("ping before the interval")
	}
	if s.Tick(t0.Add(2*time.Second)) || !bytes.Equal(c.out(), []byte{0x89, 0}) {
		t.Fatalf("want one empty ping, got % x", c.out())
	}
	c.resetOut()
	if s.Tick(t0.Add(3*time.Second)) || len(c.out()) != 0 {
		t.Fatal("a second ping while one is outstanding")
	}
	if !s.Tick(t0.Add(5 * time.Second)) {
		t.Fatal("idle connection not dropped")
	}
	f := serverFrames(t, c.out())
	if len(f) != 1 || binary.BigEndian.Uint16(f[0].Payload) != 1001 {
		t.Fatalf("idle close frames %+v", f)
	}
	if s.CloseReason() != CloseIdleTimeout {
		t.Fatalf("reason %v", s.CloseReason())
	}
}

// TestSlowConsumerGetsItsCloseFrameAlone fills a real socket buffer: once
// the backlog would pass the limit, the backlog is dropped, the frame the
// kernel has part of is finished, and the 1008 close follows it directly;
// then the write side is shut down and the session lingers.
func TestSlowConsumerGetsItsCloseFrameAlone(t *testing.T) {
	const limit = 64 << 10
	s, c, _ := newSession(t, Config{WriteBufferLimit: limit})
	_ = unix.SetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 8<<10)
	open(t, s, c)
	// Nothing pending: even a message over the limit is accepted.
	s.Send(ws.OpBinary, make([]byte, 2*limit))
	if !s.Flush() || s.State() != StateOpen || s.Backlog() == 0 {
		t.Fatalf("an idle connection was refused a large write (state %v, backlog %d)", s.State(), s.Backlog())
	}
	for i := 0; s.Backlog() > 0 && i < 1000; i++ { // the reader takes it all, then stops reading
		c.out()
		s.OnWritable()
	}
	if s.Backlog() != 0 {
		t.Fatal("backlog never drained")
	}
	msg := make([]byte, 3000)
	sent := 0
	for s.State() == StateOpen && sent < 1000 {
		for i := range msg {
			msg[i] = byte(sent)
		}
		s.Send(ws.OpBinary, msg)
		if !s.Flush() {
			t.Fatal("Flush failed on a live socket")
		}
		sent++
	}
	if s.CloseReason() != CloseSlowConsumer || s.State() != StateClosing {
		t.Fatalf("after %d messages: reason %v state %v", sent, s.CloseReason(), s.State())
	}
	if b := s.Backlog(); b > 3010+16 {
		t.Fatalf("backlog after the trip is %d bytes; want at most the rest of one frame and the close frame", b)
	}
	// The peer reads everything now: the session writes as the socket drains.
	for i := 0; s.Backlog() > 0 && i < 1000; i++ {
		c.out()
		if s.OnWritable() {
			t.Fatal("dropped while lingering")
		}
	}
	all := c.out()
	frames := serverFrames(t, all)
	last := frames[len(frames)-1]
	if last.Header.OpCode != ws.OpClose {
		t.Fatalf("last frame %v, want close", last.Header.OpCode)
	}
	code, reason := ws.ParseCloseFrameData(last.Payload)
	if code != 1008 || reason != "slow consumer" {
		t.Fatalf("close %d %q", code, reason)
	}
	for _, f := range frames[:len(frames)-1] {
		if f.Header.OpCode != ws.OpBinary {
			t.Fatalf("frame %v before the close", f.Header.OpCode)
		}
	}
	if len(frames)-1 >= sent {
		t.Fatalf("all %d messages delivered before the close; the backlog was not dropped", sent)
	}
	// FIN after the close frame: the peer reads EOF.
	var b [1]byte
	if n, err := unix.Read(c.peer, b[:]); n != 0 || err != nil {
		t.Fatalf("read after the close frame: n=%d err=%v, want EOF", n, err)
	}
	if !s.Tick(time.Now().Add(2 * time.Second)) {
		t.Fatal("lingering slow consumer not dropped after the close timeout")
	}
}

// TestAbortSlowConsumerSkipsTheBacklog: a handler giving up on a session
// (the hub with a recovering subscriber too far behind) gets the same
// close: 1008 "slow consumer" right after the partial frame.
func TestAbortSlowConsumerSkipsTheBacklog(t *testing.T) {
	s, c, _ := newSession(t, Config{WriteBufferLimit: 1 << 30})
	_ = unix.SetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 8<<10)
	open(t, s, c)
	for i := 0; i < 100; i++ {
		s.Send(ws.OpText, bytes.Repeat([]byte("x"), 5000))
		s.Flush()
	}
	before := s.Backlog()
	s.Abort(CloseSlowConsumer)
	if s.State() != StateClosing || s.Backlog() >= before || c.closed {
		t.Fatalf("state %v backlog %d (was %d) closed %v", s.State(), s.Backlog(), before, c.closed)
	}
	for i := 0; s.Backlog() > 0 && i < 1000; i++ {
		c.out()
		s.OnWritable()
	}
	frames := serverFrames(t, c.out())
	code, reason := ws.ParseCloseFrameData(frames[len(frames)-1].Payload)
	if code != 1008 || reason != "slow consumer" || len(frames) > 60 {
		t.Fatalf("%d frames, last close %d %q", len(frames), code, reason)
	}
}

func TestUnitEnd(t *testing.T) {
	f := func(n int) []byte { return codec.AppendFrame(nil, ws.OpBinary, make([]byte, n)) }
	var b []byte
	b = append(b, "HTTP/1.1 101 x\r\n\r\n"...) // 18 bytes
	http := len(b)
	b = append(b, f(10)...)    // 12 bytes: [18,30)
	b = append(b, f(300)...)   // 304 bytes: [30,334)
	b = append(b, f(70000)...) // 70010 bytes: [334,70344)
	b = append(b, f(0)...)     // [70344,70346)
	for _, tc := range []struct{ n, want int }{
		{0, http}, {5, http}, {http, http}, {http + 1, 30}, {29, 30}, {30, 30},
		{31, 334}, {333, 334}, {334, 334}, {335, 70344}, {70343, 70344}, {70345, 70346},
	} {
		if got := unitEnd(b, http, tc.n); got != tc.want {
			t.Errorf("unitEnd(n=%d) = %d, want %d", tc.n, got, tc.want)
		}
	}
	// Advancing through the backlog keeps partial on frame boundaries.
	bl := &backlog{}
	bl.push(b[1:])
	bl.partial = http - 1
	for _, step := range []struct{ n, partial int }{{5, 12}, {12, 0}, {1, 11}, {11, 0}, {1, 303}, {303, 0}, {70000, 10}} {
		if bl.advance(step.n) {
			t.Fatal("empty too early")
		}
		if bl.partial != step.partial {
			t.Fatalf("after %d: partial %d, want %d", step.n, bl.partial, step.partial)
		}
	}
	if !bl.advance(12) {
		t.Fatal("not empty at the end")
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
	f := serverFrames(t, c.out())
	if len(f) != 1 || binary.BigEndian.Uint16(f[0].Payload) != 1009 {
		t.Fatalf("frames %+v", f)
	}
	c.resetOut()
	c.in = big[20:]
	if s.HandleTraffic(t0) || len(c.out()) != 0 || len(c.in) != 0 {
		t.Fatalf("the rest must be read and discarded silently (out %q, left %d)", c.out(), len(c.in))
	}
	if !s.Tick(time.Now().Add(2 * time.Second)) {
		t.Fatal("lingering session not dropped after the close timeout")
	}
}
