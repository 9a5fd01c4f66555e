package hub

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/herald-ws/herald/broker"
	"github.com/herald-ws/herald/session"
)

// peekConn reports, at each write, what every session of the loop holds.
type peekConn struct {
	fakeConn
	peek func()
}

func (c *peekConn) Write(p []byte) (int, error) { c.peek(); return len(p), nil }

// TestReplayInDrainKeepsTheGatherBudget: a gap note recovered inline
// (memory broker) replays history into sessions the drain has corked; the
// replayed bytes are not counted against DrainGatherBudget.
func TestReplayInDrainKeepsTheGatherBudget(t *testing.T) {
	const subs = 100
	mem := broker.NewMemory(broker.MemoryConfig{HistorySize: 1000})
	h := New(Config{Broker: mem, InboxPublications: 1})
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	fl := &fakeLoop{}
	cfg := &session.Config{Routes: map[string]session.Handler{"/ws": nopHandler{}}, WriteBufferLimit: 64 << 20}
	loop := session.NewLoop(cfg, &session.Stats{}, fl.exec)
	sessions := make([]*session.Session, subs)
	maxHeld := 0
	peek := func() {
		sum := 0
		for _, s := range sessions {
			if s != nil {
				sum += s.Backlog()
			}
		}
		maxHeld = max(maxHeld, sum)
	}
	for i := range sessions {
		c := &peekConn{fakeConn: fakeConn{in: []byte(upgradeRequest)}, peek: func() {}}
		s := new(session.Session)
		s.Init(c, loop, time.Now())
		s.HandleTraffic(time.Now())
		c.peek = peek
		sessions[i] = s
		h.Subscribe(s, "big", nil, func(SubscribeResult) {})
	}
	fl.run()
	data := []byte(`"` + string(bytes.Repeat([]byte("y"), 1000)) + `"`)
	for range 60 { // one queued, 59 overflow (one gap note)
		if _, err := mem.Publish(context.Background(), "big", data, broker.PublishOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	maxHeld = 0
	fl.run()
	t.Logf("overflows %d; most held by corked sessions at once: %d bytes (budget %d)", h.Stats().Overflows, maxHeld, DrainGatherBudget)
	if maxHeld > DrainGatherBudget+64<<10 {
		t.Fatalf("corked sessions held %d bytes at once, past DrainGatherBudget %d", maxHeld, DrainGatherBudget)
	}
}
