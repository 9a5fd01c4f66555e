package cluster

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/herald-ws/herald/broker"
	"github.com/herald-ws/herald/broker/natsbroker"
)

// recorder is a DeliverFunc that keeps what it is handed and can stall,
// the way a hub whose Deliver falls behind would.
type recorder struct {
	mu      sync.Mutex
	pubs    []broker.Publication
	stall   chan struct{} // non-nil: deliveries wait until it is closed
	stalled chan struct{} // receives once when a delivery starts waiting
}

func (r *recorder) deliver(p broker.Publication) {
	r.mu.Lock()
	stall := r.stall
	r.mu.Unlock()
	if stall != nil {
		select {
		case r.stalled <- struct{}{}:
		default:
		}
		<-stall
	}
	r.mu.Lock()
	r.pubs = append(r.pubs, p)
	r.mu.Unlock()
}

func (r *recorder) hold() {
	r.mu.Lock()
	r.stall, r.stalled = make(chan struct{}), make(chan struct{}, 1)
	r.mu.Unlock()
}

func (r *recorder) release() {
	r.mu.Lock()
	if r.stall != nil {
		close(r.stall)
		r.stall = nil
	}
	r.mu.Unlock()
}

// of returns what was delivered for channel.
func (r *recorder) of(channel string) []broker.Publication {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []broker.Publication
	for _, p := range r.pubs {
		if p.Channel == channel {
			out = append(out, p)
		}
	}
	return out
}

func (r *recorder) waitFor(t *testing.T, channel string, n int) []broker.Publication {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := r.of(channel)
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d of %d deliveries: %v", channel, len(got), n, describe(got))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func describe(ps []broker.Publication) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		if p.Gap {
			out[i] = fmt.Sprintf("gap..%d", p.Offset)
		} else {
			out[i] = fmt.Sprintf("%d:%s", p.Offset, p.Data)
		}
	}
	return out
}

// startBroker starts a natsbroker on url delivering to r.
func startBroker(t *testing.T, url string, cfg natsbroker.Config, r *recorder) *natsbroker.Broker {
	t.Helper()
	cfg.URLs, cfg.Name = url, t.Name()
	if cfg.HistorySize == 0 {
		cfg.HistorySize = 100
	}
	b, err := natsbroker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	deliver := func(broker.Publication) {}
	if r != nil {
		deliver = r.deliver
	}
	if err := b.Start(deliver); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if r != nil {
			r.release()
		}
		_ = b.Close()
	})
	return b
}

func publish(t *testing.T, b *natsbroker.Broker, channel, data string, key string) broker.PublishResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := b.Publish(ctx, channel, []byte(data), broker.PublishOptions{IdempotencyKey: key})
	if err != nil {
		t.Fatalf("publish %s to %s: %v", data, channel, err)
	}
	return res
}

// wantExactly checks that got holds exactly the publications want (offset
// and data), in order, with no gap.
func wantExactly(t *testing.T, channel string, got, want []broker.Publication) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d deliveries %v, want %v", channel, len(got), describe(got), describe(want))
	}
	for i, p := range got {
		if p.Gap || p.Offset != want[i].Offset || string(p.Data) != string(want[i].Data) {
			t.Fatalf("%s: delivery %d of %v, want %v", channel, i, describe(got), describe(want))
		}
	}
}

// TestStalledDeliveryLosesNothing stalls the hub's Deliver while two
// channels on one shard with a queue of 4 receive 60 publications: nats.go
// drops most of them as a slow consumer. Once Deliver proceeds every
// publication arrives exactly once, in order, without a gap signal,
// including the tail that no later message reveals.
func TestStalledDeliveryLosesNothing(t *testing.T) {
	ns := startNATS(t)
	r := &recorder{}
	b := startBroker(t, ns.url(), natsbroker.Config{DeliveryShards: 1, ShardQueue: 4, GapCheckInterval: 50 * time.Millisecond}, r)
	pub := startBroker(t, ns.url(), natsbroker.Config{}, nil)
	for _, c := range []string{"x.one", "x.two"} {
		if err := b.Subscribe(c); err != nil {
			t.Fatal(err)
		}
	}
	r.hold()
	want := map[string][]broker.Publication{}
	for i := range 60 {
		c := []string{"x.one", "x.two"}[i%2]
		res := publish(t, pub, c, fmt.Sprint(i), "")
		want[c] = append(want[c], broker.Publication{Offset: res.Offset, Data: []byte(fmt.Sprint(i))})
		if i == 0 {
			<-r.stalled // the shard is now inside Deliver; the rest queue or drop
		}
	}
	r.release()
	for c, w := range want {
		got := r.waitFor(t, c, len(w))
		wantExactly(t, c, got, w)
	}
	if b.Stats().Repaired == 0 {
		t.Fatalf("stats %+v: nothing was dropped, so nothing was tested", b.Stats())
	}
	time.Sleep(200 * time.Millisecond)
	for c, w := range want {
		wantExactly(t, c, r.of(c), w)
	}
}

// TestUnrepairableGapIsSignalled: with a history of 3 per channel, a stall
// long enough that the dropped messages have left the stream cannot be
// repaired. The node delivers a Gap through the last lost offset, after
// everything it delivered before and before anything after.
func TestUnrepairableGapIsSignalled(t *testing.T) {
	ns := startNATS(t)
	r := &recorder{}
	b := startBroker(t, ns.url(), natsbroker.Config{HistorySize: 3, DeliveryShards: 1, ShardQueue: 1, GapCheckInterval: 50 * time.Millisecond}, r)
	pub := startBroker(t, ns.url(), natsbroker.Config{HistorySize: 3}, nil)
	publish(t, pub, "g", "before", "") // covered by history at subscribe: not live
	if err := b.Subscribe("g"); err != nil {
		t.Fatal(err)
	}
	r.hold()
	var offs []uint64
	for i := range 10 {
		offs = append(offs, publish(t, pub, "g", fmt.Sprint(i), "").Offset)
		if i == 0 {
			<-r.stalled
		}
	}
	// Deliver holds offs[0], the queue offs[1]; offs[2..] were dropped and
	// offs[2..6] have been pushed out of the 3-message history.
	time.Sleep(100 * time.Millisecond)
	r.release()
	got := r.waitFor(t, "g", 3)
	after := publish(t, pub, "g", "after", "").Offset
	got = r.waitFor(t, "g", 4)
	if len(got) != 4 || got[0].Offset != offs[0] || got[1].Offset != offs[1] ||
		!got[2].Gap || got[2].Offset != offs[9] || got[2].Data != nil ||
		got[3].Gap || got[3].Offset != after {
		t.Fatalf("deliveries %v; want %d, %d, gap..%d, %d", describe(got), offs[0], offs[1], offs[9], after)
	}
	if b.Stats().Gaps != 1 {
		t.Fatalf("stats %+v, want one gap", b.Stats())
	}
}
