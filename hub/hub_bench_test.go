package hub

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/herald-ws/herald/broker"
	"github.com/herald-ws/herald/codec"
	"github.com/herald-ws/herald/session"
)

// fakeConn is a session.Conn that swallows writes, for measuring the
// fan-out path without sockets.
type fakeConn struct {
	in      []byte
	written int
}

func (c *fakeConn) Peek(int) ([]byte, error)    { return c.in, nil }
func (c *fakeConn) Discard(n int) (int, error)  { c.in = c.in[n:]; return n, nil }
func (c *fakeConn) Write(p []byte) (int, error) { c.written += len(p); return len(p), nil }
func (c *fakeConn) OutboundBuffered() int       { return 0 }
func (c *fakeConn) Close() error                { return nil }
func (c *fakeConn) Fd() int                     { return -1 }

type nopHandler struct{}

func (nopHandler) Authorize(*session.Session, *codec.Request) (int, string) { return 0, "" }
func (nopHandler) OnOpen(*session.Session)                                  {}
func (nopHandler) OnMessage(*session.Session, ws.OpCode, []byte)            {}
func (nopHandler) OnClose(*session.Session, session.CloseReason)            {}

// fakeLoop queues Exec'd functions; run drains them on the caller's
// goroutine, standing in for an event loop.
type fakeLoop struct {
	mu    sync.Mutex
	queue []func()
	spare []func()
}

func (l *fakeLoop) exec(f func()) error {
	l.mu.Lock()
	l.queue = append(l.queue, f)
	l.mu.Unlock()
	return nil
}

func (l *fakeLoop) run() int {
	l.mu.Lock()
	q := l.queue
	l.queue = l.spare[:0]
	l.mu.Unlock()
	for _, f := range q {
		f()
	}
	clear(q)
	l.spare = q
	return len(q)
}

const upgradeRequest = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

// openSessions returns n open sessions on one fake loop.
func openSessions(tb testing.TB, n int) (*fakeLoop, []*session.Session, []*fakeConn) {
	tb.Helper()
	fl := &fakeLoop{}
	cfg := &session.Config{Routes: map[string]session.Handler{"/ws": nopHandler{}}, WriteBufferLimit: 1 << 20}
	loop := session.NewLoop(cfg, &session.Stats{}, fl.exec)
	sessions := make([]*session.Session, n)
	conns := make([]*fakeConn, n)
	for i := range sessions {
		c := &fakeConn{in: []byte(upgradeRequest)}
		s := new(session.Session)
		s.Init(c, loop, time.Now())
		if s.HandleTraffic(time.Now()); s.State() != session.StateOpen {
			tb.Fatalf("session %d did not open", i)
		}
		sessions[i], conns[i] = s, c
	}
	return fl, sessions, conns
}

// BenchmarkFanOut delivers one publication to N subscribers on one loop.
// allocs/op is per publication: it must not grow with N (zero per
// subscriber).
func BenchmarkFanOut(b *testing.B) {
	for _, n := range []int{1, 1000, 10000} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			fl, sessions, conns := openSessions(b, n)
			h := New(Config{Broker: broker.NewMemory(broker.MemoryConfig{})})
			for _, s := range sessions {
				h.Subscribe(s, "bench", nil, func(SubscribeResult) {})
			}
			h.Close() // the memory broker is called on the loop: the subscribes are done
			fl.run()
			data := []byte(`{"title":"breaking","body":"a short push notification payload"}`)
			base := topOf(h, "bench")
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				h.Deliver(broker.Publication{Channel: "bench", Offset: base + uint64(i+1), Data: data})
				fl.run()
			}
			b.StopTimer()
			if conns[n-1].written == 0 {
				b.Fatal("last subscriber received nothing")
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/delivery")
		})
	}
}

// TestFanOutAllocationsDoNotGrowWithSubscribers is the proof the benchmark
// reports: allocations per publication are the same for 10 and 2,000
// subscribers.
func TestFanOutAllocationsDoNotGrowWithSubscribers(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items: allocations are counted in the non-race pass (make allocs)")
	}
	allocs := func(n int) float64 {
		fl, sessions, conns := openSessions(t, n)
		h := New(Config{Broker: broker.NewMemory(broker.MemoryConfig{})})
		for _, s := range sessions {
			h.Subscribe(s, "c", nil, func(SubscribeResult) {})
		}
		h.Close() // the memory broker is called on the loop: the subscribes are done
		fl.run()
		data := []byte(`{"n":1}`)
		off := topOf(h, "c")
		a := testing.AllocsPerRun(200, func() {
			off++
			h.Deliver(broker.Publication{Channel: "c", Offset: off, Data: data})
			fl.run()
		})
		for i, c := range conns {
			if c.written == 0 {
				t.Fatalf("subscriber %d of %d received nothing", i, n)
			}
		}
		return a
	}
	small, large := allocs(10), allocs(2000)
	if large > small {
		t.Fatalf("allocations per publication grew from %.1f (10 subscribers) to %.1f (2,000 subscribers)", small, large)
	}
	if small > 0 {
		t.Fatalf("%.1f allocations per publication; want none (the inbox, its drain task and the frames are reused)", small)
	}
}

// topOf is the offset the subscribers of channel were positioned at when
// they subscribed (the broker's top): publications must come after it.
func topOf(h *Hub, channel string) uint64 {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.channels[channel].loops[0].list[0].last
}
