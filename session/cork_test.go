package session

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"

	"github.com/herald-ws/herald/codec"
)

// countingConn counts the writes a session makes.
type countingConn struct {
	*fakeConn
	writes int
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes++
	return c.fakeConn.Write(p)
}

// corkedPair opens two sessions of one loop, each on a counting conn.
func corkedPair(t *testing.T, cfg Config) (s [2]*Session, c [2]*countingConn) {
	t.Helper()
	rec := &recorder{}
	cfg.Routes = map[string]Handler{"/t": rec}
	l := NewLoop(&cfg, &Stats{}, func(f func()) error { f(); return nil })
	for i := range s {
		fc := newFakeConn(t)
		c[i] = &countingConn{fakeConn: fc}
		s[i] = new(Session)
		s[i].Init(c[i], l, t0)
		fc.in = []byte(upgrade)
		if s[i].HandleTraffic(t0) || s[i].State() != StateOpen {
			t.Fatal("upgrade failed")
		}
		fc.resetOut()
		c[i].writes = 0
	}
	return s, c
}

func textFrame(msg string) []byte { return codec.AppendFrame(nil, ws.OpText, []byte(msg)) }

// TestCorkedSessionsWriteOncePerUncork: many frames queued for several
// sessions of one loop, interleaved, reach each session's socket with one
// write per session, complete and in order.
func TestCorkedSessionsWriteOncePerUncork(t *testing.T) {
	s, c := corkedPair(t, Config{WriteBufferLimit: 1 << 20})
	for i := range s {
		if !s[i].Cork() {
			t.Fatal("Cork refused an open session")
		}
		if s[i].Cork() {
			t.Fatal("Cork of a corked session must report false (the caller would uncork twice)")
		}
	}
	const n = 200
	for k := 0; k < n; k++ {
		for i := range s {
			s[i].SendFrame(textFrame(fmt.Sprintf("s%d m%d", i, k)))
		}
		s[0].Send(ws.OpBinary, []byte{byte(k)})
	}
	for i := range s {
		if c[i].writes != 0 {
			t.Fatalf("session %d wrote %d times before Uncork", i, c[i].writes)
		}
		if !s[i].Uncork() {
			t.Fatal("Uncork failed on a live socket")
		}
		if c[i].writes != 1 {
			t.Fatalf("session %d: %d writes for %d frames, want 1", i, c[i].writes, n)
		}
		if s[i].Backlog() != 0 {
			t.Fatalf("session %d kept a %d-byte buffer after the kernel took everything", i, s[i].Backlog())
		}
	}
	msgs, writes := s[0].loop.Gathered()
	if msgs != 3*n || writes != 2 {
		t.Fatalf("Gathered = %d messages, %d writes; want %d, 2", msgs, writes, 3*n)
	}
	for i := range s {
		frames := serverFrames(t, c[i].out())
		k := 0
		for _, f := range frames {
			if f.Header.OpCode == ws.OpBinary {
				if i != 0 || f.Payload[0] != byte(k-1) {
					t.Fatalf("session %d: unexpected binary frame %v after %d texts", i, f.Payload, k)
				}
				continue
			}
			if want := fmt.Sprintf("s%d m%d", i, k); string(f.Payload) != want {
				t.Fatalf("session %d frame %d = %q, want %q", i, k, f.Payload, want)
			}
			k++
		}
		if k != n {
			t.Fatalf("session %d got %d text frames, want %d", i, k, n)
		}
	}
	// Uncorked, a session sends through the loop's buffer again.
	s[1].SendFrame(textFrame("after"))
	if !s[1].Flush() || c[1].writes != 2 {
		t.Fatalf("after Uncork: %d writes", c[1].writes)
	}
}

// TestCorkGatherIsBounded: a corked session never holds more than
// GatherLimit plus one frame; past it, it writes and goes on gathering.
func TestCorkGatherIsBounded(t *testing.T) {
	s, c := corkedPair(t, Config{})
	s[0].Cork()
	frame := textFrame(string(bytes.Repeat([]byte("y"), 1000)))
	total := 0
	for k := 0; k < 300; k++ {
		s[0].SendFrame(frame)
		total += len(frame)
		if b := s[0].Backlog(); b > GatherLimit+len(frame) {
			t.Fatalf("gathered %d bytes, bound %d", b, GatherLimit+len(frame))
		}
		c[0].out() // the peer keeps reading
	}
	s[0].Uncork()
	if want := total/GatherLimit + 1; c[0].writes < want-1 || c[0].writes > want+1 {
		t.Fatalf("%d writes for %d bytes, want about %d", c[0].writes, total, want)
	}
	if got := len(serverFrames(t, c[0].out())); got != 300 {
		t.Fatalf("peer got %d frames, want 300", got)
	}
}

// TestCorkedSlowConsumer: a corked session whose socket is full keeps
// gathering behind its backlog until the write-buffer limit, then is
// closed with 1008 "slow consumer", which the peer reads after a prefix of
// the messages, in order.
func TestCorkedSlowConsumer(t *testing.T) {
	const limit = 32 << 10
	s, c := corkedPair(t, Config{WriteBufferLimit: limit})
	_ = unix.SetsockoptInt(c[0].fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<10)
	frame := func(k int) []byte { return textFrame(fmt.Sprintf("%04d%s", k, bytes.Repeat([]byte("z"), 996))) }
	k := 0
	for ; s[0].State() == StateOpen && k < 10_000; k++ {
		s[0].Cork()
		s[0].SendFrame(frame(k))
		if k%10 == 9 {
			if !s[0].Uncork() {
				t.Fatal("Uncork failed")
			}
			if s[0].State() == StateOpen && !s[0].Behind() && s[0].Backlog() > 0 {
				t.Fatal("bytes left over without being behind")
			}
		}
	}
	s[0].Uncork()
	if s[0].CloseReason() != CloseSlowConsumer {
		t.Fatalf("after %d frames: reason %v", k, s[0].CloseReason())
	}
	for i := 0; s[0].Backlog() > 0 && i < 10_000; i++ {
		c[0].out()
		s[0].OnWritable()
	}
	frames := serverFrames(t, c[0].out())
	last := frames[len(frames)-1]
	if code, reason := ws.ParseCloseFrameData(last.Payload); last.Header.OpCode != ws.OpClose || code != 1008 || reason != "slow consumer" {
		t.Fatalf("last frame %v %d %q", last.Header.OpCode, code, reason)
	}
	for i, f := range frames[:len(frames)-1] {
		if want := fmt.Sprintf("%04d", i); string(f.Payload[:4]) != want {
			t.Fatalf("frame %d is message %q: not an in-order prefix", i, f.Payload[:4])
		}
	}
	if len(frames)-1 >= k {
		t.Fatal("every message was delivered: the backlog was not dropped")
	}
}

// TestAbortWhileCorked: what a session gathered is dropped when it is
// aborted; its close frame goes out alone, and Uncork does nothing more.
func TestAbortWhileCorked(t *testing.T) {
	s, c := corkedPair(t, Config{})
	s[0].Cork()
	for k := 0; k < 10; k++ {
		s[0].SendFrame(textFrame("dropped"))
	}
	s[0].Abort(CloseSlowConsumer)
	writes := c[0].writes
	if !s[0].Uncork() || c[0].writes != writes {
		t.Fatalf("Uncork after Abort wrote (%d -> %d writes)", writes, c[0].writes)
	}
	frames := serverFrames(t, c[0].out())
	if len(frames) != 1 || frames[0].Header.OpCode != ws.OpClose {
		t.Fatalf("peer got %d frames (first %v), want the close frame alone", len(frames), frames[0].Header.OpCode)
	}
}
