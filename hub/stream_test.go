package hub

import (
	"bytes"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/herald-ws/herald/broker"
	"github.com/herald-ws/herald/codec"
	"github.com/herald-ws/herald/session"
)

// sseHandler is a minimal session.StreamHandler: "200" and nothing else.
type sseHandler struct{ nopHandler }

func (sseHandler) AppendHead(dst []byte, _ *session.Session, _ *codec.Request) []byte {
	return append(dst, "HTTP/1.1 200 OK\r\n\r\n"...)
}
func (sseHandler) Heartbeat() []byte { return []byte(": hb\n\n") }

// positions is a stream session's Value for several channels (see
// EventStream), without allocating.
type positions struct {
	chans []string
	pos   []uint64
}

func (p *positions) AppendEventID(dst []byte, channel string, offset uint64) ([]byte, bool) {
	for i, c := range p.chans {
		if c == channel {
			p.pos[i] = offset
		}
	}
	if len(p.chans) < 2 {
		return dst, false
	}
	for i, c := range p.chans {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, c...)
		dst = append(dst, ':')
		dst = strconv.AppendUint(dst, p.pos[i], 10)
	}
	return dst, true
}

// streamConn records what is written to it, or with discard only counts it.
type streamConn struct {
	fakeConn
	out     []byte
	discard bool
}

func (c *streamConn) Write(p []byte) (int, error) {
	if c.discard {
		c.written += len(p)
		return len(p), nil
	}
	c.out = append(c.out, p...)
	return len(p), nil
}

// openStreams returns n open stream sessions on one fake loop, each with
// a positions Value over chans.
func openStreams(tb testing.TB, n int, chans []string) (*fakeLoop, []*session.Session, []*streamConn) {
	tb.Helper()
	fl := &fakeLoop{}
	cfg := &session.Config{Routes: map[string]session.Handler{"/sse": sseHandler{}}, WriteBufferLimit: 1 << 20}
	loop := session.NewLoop(cfg, &session.Stats{}, fl.exec)
	sessions := make([]*session.Session, n)
	conns := make([]*streamConn, n)
	for i := range sessions {
		c := &streamConn{fakeConn: fakeConn{in: []byte("GET /sse HTTP/1.1\r\nHost: x\r\n\r\n")}}
		s := new(session.Session)
		s.Init(c, loop, time.Now())
		if s.HandleTraffic(time.Now()); s.State() != session.StateOpen || !s.Stream() {
			tb.Fatalf("stream %d did not open", i)
		}
		s.Value = &positions{chans: chans, pos: make([]uint64, len(chans))}
		c.out = c.out[:0]
		sessions[i], conns[i] = s, c
	}
	return fl, sessions, conns
}

// Stream sessions get each publication as one Server-Sent Event: with one
// channel the event encoded once for all, with several each its own id
// carrying every channel's position; and neither allocates per
// subscriber.
func TestStreamSessionsGetEventsWithoutAllocating(t *testing.T) {
	for _, chans := range [][]string{{"c"}, {"c", "d"}} {
		t.Run(fmt.Sprint(chans), func(t *testing.T) {
			fl, sessions, conns := openStreams(t, 50, chans)
			h := New(Config{Broker: broker.NewMemory(broker.MemoryConfig{})})
			for _, s := range sessions {
				for _, ch := range chans {
					h.Subscribe(s, ch, nil, func(SubscribeResult) {})
				}
			}
			h.Close()
			fl.run()
			off := topOf(h, "c")
			h.Deliver(broker.Publication{Channel: "c", Offset: off + 1, Data: []byte("{\"a\":\n1}")})
			fl.run()
			id := fmt.Sprintf("c:%d", off+1)
			if len(chans) == 2 {
				id += ",d:0"
			}
			want := fmt.Sprintf("id: %s\nevent: message\ndata: {\"op\":\"message\",\"channel\":\"c\",\"offset\":%d,\"data\":{\"a\":\ndata: 1}}\n\n", id, off+1)
			for i, c := range conns {
				if string(c.out) != want {
					t.Fatalf("stream %d got\n%q\nwant\n%q", i, c.out, want)
				}
			}
			if raceEnabled {
				return // the race detector makes sync.Pool drop items
			}
			data := []byte(`{"n":1}`)
			a := testing.AllocsPerRun(100, func() {
				for _, c := range conns {
					c.out = c.out[:0] // the recording must not allocate either
				}
				off++
				h.Deliver(broker.Publication{Channel: "c", Offset: off + 1, Data: data})
				fl.run()
			})
			if a > 0 {
				t.Fatalf("%.1f allocations per publication to %d streams; want none", a, len(sessions))
			}
			for _, c := range conns {
				if !bytes.HasSuffix(c.out, []byte("\"data\":{\"n\":1}}\n\n")) {
					t.Fatalf("last event %q", c.out[max(0, len(c.out)-80):])
				}
			}
		})
	}
}

// BenchmarkFanOutSSE is BenchmarkFanOut for stream sessions of one
// channel (the shared event) and of two (an id each).
func BenchmarkFanOutSSE(b *testing.B) {
	for _, chans := range [][]string{{"bench"}, {"bench", "other"}} {
		b.Run(fmt.Sprintf("channels=%d/subscribers=10000", len(chans)), func(b *testing.B) {
			const n = 10000
			fl, sessions, conns := openStreams(b, n, chans)
			h := New(Config{Broker: broker.NewMemory(broker.MemoryConfig{})})
			for _, s := range sessions {
				for _, ch := range chans {
					h.Subscribe(s, ch, nil, func(SubscribeResult) {})
				}
			}
			h.Close()
			fl.run()
			for _, c := range conns {
				c.out, c.discard = nil, true
			}
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
