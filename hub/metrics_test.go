package hub

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/herald-ws/herald/broker"
	"github.com/herald-ws/herald/session"
)

func histogram(t *testing.T, h prometheus.Histogram) *dto.Histogram {
	t.Helper()
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram()
}

// liveHub subscribes every session to channel and makes the
// subscriptions live (the memory broker is called on the loop).
func liveHub(t *testing.T, fl *fakeLoop, sessions []*session.Session, channels ...string) *Hub {
	t.Helper()
	h := New(Config{Broker: broker.NewMemory(broker.MemoryConfig{})})
	for _, s := range sessions {
		for _, c := range channels {
			h.Subscribe(s, c, nil, func(SubscribeResult) {})
		}
	}
	h.Close() // the memory broker is called on the loop: the subscribes are done
	fl.run()
	return h
}

// TestFanOutMetrics: one observation of each histogram per publication per
// loop that wrote it, none for a loop that wrote nothing, and a latency
// measured from Publication.Time.
func TestFanOutMetrics(t *testing.T) {
	fl, sessions, _ := openSessions(t, 50)
	h := liveHub(t, fl, sessions, "c")
	m := h.Metrics()

	const age = 30 * time.Millisecond
	base := topOf(h, "c")
	for i := range 4 {
		h.Deliver(broker.Publication{Channel: "c", Offset: base + uint64(i+1), Data: []byte(`1`), Time: time.Now().Add(-age)})
		fl.run()
	}
	lat, fan := histogram(t, m.Latency), histogram(t, m.FanOut)
	if lat.GetSampleCount() != 4 || fan.GetSampleCount() != 4 {
		t.Fatalf("after 4 publications to 50 subscribers on one loop: %d latency and %d fan-out observations, want 4 each (one per publication per loop)", lat.GetSampleCount(), fan.GetSampleCount())
	}
	if got := lat.GetSampleSum() / 4; got < age.Seconds() || got > 10 {
		t.Fatalf("mean latency %.4fs for publications %v old", got, age)
	}
	if fan.GetSampleSum() <= 0 {
		t.Fatalf("fan-out durations sum to %v", fan.GetSampleSum())
	}

	// Already delivered (offset not above the subscribers' position): the
	// loop writes nothing and observes nothing.
	h.Deliver(broker.Publication{Channel: "c", Offset: base + 2, Data: []byte(`1`), Time: time.Now()})
	fl.run()
	// No Time (a broker that does not stamp publications): fan-out only.
	h.Deliver(broker.Publication{Channel: "c", Offset: base + 10, Data: []byte(`1`)})
	fl.run()
	lat, fan = histogram(t, m.Latency), histogram(t, m.FanOut)
	if lat.GetSampleCount() != 4 || fan.GetSampleCount() != 5 {
		t.Fatalf("latency %d, fan-out %d observations; want 4 and 5", lat.GetSampleCount(), fan.GetSampleCount())
	}
	// No subscriber on the channel: nothing observed.
	h.Deliver(broker.Publication{Channel: "other", Offset: 1, Data: []byte(`1`), Time: time.Now()})
	fl.run()
	if histogram(t, m.FanOut).GetSampleCount() != 5 {
		t.Fatal("a publication without subscribers was observed")
	}
}

// TestFanOutMetricsAllocateNothing: observing adds no allocation to a
// fan-out.
func TestFanOutMetricsAllocateNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items: allocations are counted in the non-race pass (make allocs)")
	}
	fl, sessions, _ := openSessions(t, 10)
	h := liveHub(t, fl, sessions, "c")
	now := time.Now()
	off := topOf(h, "c")
	data := []byte(`1`)
	a := testing.AllocsPerRun(500, func() {
		off++
		h.Deliver(broker.Publication{Channel: "c", Offset: off, Data: data, Time: now})
		fl.run()
	})
	if a != 0 {
		t.Fatalf("a publication's delivery allocates %.1f times", a)
	}
	if histogram(t, h.Metrics().Latency).GetSampleCount() == 0 {
		t.Fatal("nothing observed")
	}
}

func TestTopChannels(t *testing.T) {
	fl, sessions, _ := openSessions(t, 6)
	h := New(Config{Broker: broker.NewMemory(broker.MemoryConfig{})})
	// Channel "cK" gets K subscribers; "tie-a" and "tie-b" two each.
	subs := map[string][]*Subscription{}
	sub := func(ch string, n int) {
		for i := range n {
			subs[ch] = append(subs[ch], h.Subscribe(sessions[i], ch, nil, func(SubscribeResult) {}))
		}
	}
	for k := 1; k <= 5; k++ {
		sub(fmt.Sprintf("c%d", k), k)
	}
	sub("tie-b", 2)
	sub("tie-a", 2)
	h.Close()
	fl.run()

	type cc = ChannelCount
	for _, tc := range []struct {
		n    int
		want []cc
	}{
		{0, nil},
		{-1, nil},
		{1, []cc{{"c5", 5}}},
		{3, []cc{{"c5", 5}, {"c4", 4}, {"c3", 3}}},
		{6, []cc{{"c5", 5}, {"c4", 4}, {"c3", 3}, {"c2", 2}, {"tie-a", 2}, {"tie-b", 2}}},
		{100, []cc{{"c5", 5}, {"c4", 4}, {"c3", 3}, {"c2", 2}, {"tie-a", 2}, {"tie-b", 2}, {"c1", 1}}},
	} {
		if got := h.TopChannels(tc.n); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("TopChannels(%d) = %v, want %v", tc.n, got, tc.want)
		}
	}

	// Unsubscribing moves a channel down; the last one leaving drops it.
	for _, s := range subs["c5"][:4] {
		h.Unsubscribe(s)
	}
	h.Unsubscribe(subs["c1"][0])
	want := []cc{{"c4", 4}, {"c3", 3}, {"c2", 2}, {"tie-a", 2}, {"tie-b", 2}, {"c5", 1}}
	if got := h.TopChannels(100); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after unsubscribes TopChannels = %v, want %v", got, want)
	}
}

// BenchmarkObserveDrain is what the metrics add to each drain of a loop's
// inbox: two histogram observations.
func BenchmarkObserveDrain(b *testing.B) {
	m := newMetrics()
	start := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		m.observeDrain(start, start, 10, 2)
	}
}
