package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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
	r.waitFor(t, "g", 3)
	after := publish(t, pub, "g", "after", "").Offset
	got := r.waitFor(t, "g", 4)
	if len(got) != 4 || got[0].Offset != offs[0] || got[1].Offset != offs[1] ||
		!got[2].Gap || got[2].Offset != offs[9] || got[2].Data != nil ||
		got[3].Gap || got[3].Offset != after {
		t.Fatalf("deliveries %v; want %d, %d, gap..%d, %d", describe(got), offs[0], offs[1], offs[9], after)
	}
	if b.Stats().Gaps != 1 {
		t.Fatalf("stats %+v, want one gap", b.Stats())
	}
}

// history returns the channel's stored publications after since.
func history(t *testing.T, b *natsbroker.Broker, channel string, since uint64) []broker.Publication {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := b.Recover(ctx, channel, since, true)
	if err != nil {
		t.Fatal(err)
	}
	return r.Publications
}

// TestIdempotentPublish: a key is per channel; a repeat within the window
// stores nothing and returns the first offset with Duplicate set.
func TestIdempotentPublish(t *testing.T) {
	ns := startNATS(t)
	b := startBroker(t, ns.url(), natsbroker.Config{DuplicateWindow: time.Minute}, nil)
	other := startBroker(t, ns.url(), natsbroker.Config{DuplicateWindow: time.Minute}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := jetstreamOf(t, ns).Stream(ctx, "HERALD")
	if err != nil || stream.CachedInfo().Config.Duplicates != time.Minute {
		t.Fatalf("stream %v (%v): want Duplicates = the configured window", stream, err)
	}
	base := publish(t, b, "idem.a", "base", "").Offset
	first := publish(t, b, "idem.a", "1", "k1")
	steps := []struct {
		name      string
		via       *natsbroker.Broker
		channel   string
		key       string
		duplicate bool // else a new offset
	}{
		{"same key, same channel", b, "idem.a", "k1", true},
		{"same key from another node", other, "idem.a", "k1", true},
		{"same key, other channel", b, "idem.b", "k1", false},
		{"other key", b, "idem.a", "k2", false},
		{"no key", b, "idem.a", "", false},
		{"no key again", b, "idem.a", "", false},
		{"key that looks like channel and key joined", b, "idem", ".ak1", false},
		{"binary key", b, "idem.a", "\x00\r\n:|", false},
		{"binary key again", b, "idem.a", "\x00\r\n:|", true},
	}
	seen := map[uint64]bool{base: true, first.Offset: true}
	stored := map[string]int{"idem.a": 2}
	firstOf := map[string]uint64{"idem.a|k1": first.Offset}
	for _, s := range steps {
		res := publish(t, s.via, s.channel, s.name, s.key)
		if res.Duplicate != s.duplicate {
			t.Fatalf("%s: %+v, want Duplicate %v", s.name, res, s.duplicate)
		}
		id := s.channel + "|" + s.key
		if s.duplicate {
			if res.Offset != firstOf[id] {
				t.Fatalf("%s: offset %d, want the first publish's %d", s.name, res.Offset, firstOf[id])
			}
			continue
		}
		if seen[res.Offset] {
			t.Fatalf("%s: offset %d given twice", s.name, res.Offset)
		}
		seen[res.Offset] = true
		firstOf[id] = res.Offset
		stored[s.channel]++
	}
	for c, n := range stored {
		if got := history(t, b, c, 0); len(got) != n {
			t.Fatalf("%s holds %d publications %v, want %d", c, len(got), describe(got), n)
		}
	}
}

// TestPublishOutcomeUnknown: the server stores a publish but its ack never
// reaches the node (held in a proxy until the context ends, or the
// connection cut while waiting): the error is ErrUnknownOutcome, not
// ErrUnavailable. Once the node is through again, the retry with the same
// key returns the stored offset with Duplicate set, and history holds the
// publication once.
func TestPublishOutcomeUnknown(t *testing.T) {
	ns := startNATS(t)
	px := startProxy(t, ns.srv.Addr().String())
	b := startBroker(t, px.url(), natsbroker.Config{}, nil)
	reader := startBroker(t, ns.url(), natsbroker.Config{}, nil)
	faults := []struct {
		name    string
		timeout time.Duration
		during  func() // runs while the publish waits for its ack
		after   func()
	}{
		{"ack held past the deadline", 500 * time.Millisecond, func() {}, px.release},
		{"connection cut while waiting", 3 * time.Second,
			func() { time.Sleep(200 * time.Millisecond); px.cut() },
			func() { px.release(); px.restore() }},
	}
	for i, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			channel, key := fmt.Sprint("u", i), fmt.Sprint("retry-", i)
			since := publish(t, b, channel, "before", "").Offset
			px.holdReplies()
			ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
			go f.during()
			_, err := b.Publish(ctx, channel, []byte("once"), broker.PublishOptions{IdempotencyKey: key})
			cancel()
			if !errors.Is(err, broker.ErrUnknownOutcome) || errors.Is(err, broker.ErrUnavailable) {
				t.Fatalf("publish: %v, want ErrUnknownOutcome", err)
			}
			stored := history(t, reader, channel, since)
			if len(stored) != 1 || string(stored[0].Data) != "once" {
				t.Fatalf("history after the lost ack %v, want the publication stored", describe(stored))
			}
			f.after()
			deadline := time.Now().Add(10 * time.Second)
			for b.Ready() != nil && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			res := publish(t, b, channel, "once", key)
			if !res.Duplicate || res.Offset != stored[0].Offset {
				t.Fatalf("retry %+v, want Duplicate with offset %d", res, stored[0].Offset)
			}
			if got := history(t, reader, channel, since); len(got) != 1 {
				t.Fatalf("history after the retry %v, want the publication once", describe(got))
			}
		})
	}
}

// TestPublishUnavailable: ErrUnavailable (not ErrUnknownOutcome) exactly
// when nothing can have been stored.
func TestPublishUnavailable(t *testing.T) {
	ns := startNATS(t)
	b := startBroker(t, ns.url(), natsbroker.Config{}, nil)
	publish(t, b, "v", "warm", "")
	cases := []struct {
		name  string
		setup func(t *testing.T) context.Context
	}{
		{"context already ended", func(t *testing.T) context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx
		}},
		{"stream deleted", func(t *testing.T) context.Context {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			t.Cleanup(cancel)
			js := jetstreamOf(t, ns)
			if err := js.DeleteStream(ctx, "HERALD"); err != nil {
				t.Fatal(err)
			}
			return ctx
		}},
		{"not connected", func(t *testing.T) context.Context {
			ns.stop()
			deadline := time.Now().Add(10 * time.Second)
			for b.Ready() == nil && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			t.Cleanup(cancel)
			return ctx
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := c.setup(t)
			_, err := b.Publish(ctx, "v", []byte("x"), broker.PublishOptions{IdempotencyKey: "k"})
			if !errors.Is(err, broker.ErrUnavailable) || errors.Is(err, broker.ErrUnknownOutcome) {
				t.Fatalf("publish: %v, want ErrUnavailable", err)
			}
			if c.name == "stream deleted" {
				// The broker notices and creates the stream again.
				publish(t, b, "v", "again", "")
			}
		})
	}
}

func jetstreamOf(t *testing.T, ns *natsServer) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(ns.url())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// TestRecreatedStreamRestartsDelivery: the stream is deleted and created
// again (by another node's publish) while a node is subscribed. Sequences
// restart from 1, below what the node delivered; it notices, delivers a
// Gap (its subscribers recover from the new history) and then delivers the
// new stream's publications instead of discarding them as old.
func TestRecreatedStreamRestartsDelivery(t *testing.T) {
	ns := startNATS(t)
	r := &recorder{}
	b := startBroker(t, ns.url(), natsbroker.Config{GapCheckInterval: 50 * time.Millisecond}, r)
	pub := startBroker(t, ns.url(), natsbroker.Config{}, nil)
	if err := b.Subscribe("re"); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		publish(t, pub, "re", fmt.Sprint(i), "")
	}
	r.waitFor(t, "re", 5)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := jetstreamOf(t, ns).DeleteStream(ctx, "HERALD"); err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(ctx, "re", []byte("lost"), broker.PublishOptions{}); !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("publish without a stream: %v, want ErrUnavailable", err)
	}
	first := publish(t, pub, "re", "new-1", "") // creates the stream again
	if first.Offset != 1 {
		t.Fatalf("first offset of the new stream %d, want 1", first.Offset)
	}
	got := r.waitFor(t, "re", 6)
	gap := got[5]
	if !gap.Gap || gap.Offset > first.Offset {
		t.Fatalf("deliveries %v, want a gap through at most %d after the old ones", describe(got), first.Offset)
	}
	second := publish(t, pub, "re", "new-2", "")
	// After the gap: the new publications it does not cover, once each.
	var want []uint64
	for _, off := range []uint64{first.Offset, second.Offset} {
		if off > gap.Offset {
			want = append(want, off)
		}
	}
	r.waitFor(t, "re", 6+len(want))
	time.Sleep(200 * time.Millisecond)
	got = r.of("re")
	var after []uint64
	for _, p := range got[6:] {
		after = append(after, p.Offset)
	}
	if fmt.Sprint(after) != fmt.Sprint(want) {
		t.Fatalf("deliveries %v, want %v after the gap", describe(got), want)
	}
}
