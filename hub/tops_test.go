package hub

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-ws/herald/broker"
	"github.com/herald-ws/herald/internal/workpool"
)

// topCountingBroker hides Memory's Nonblocking (so the hub uses its pool),
// counts top-only reads, and can hold the first one after it has read
// the top.
type topCountingBroker struct {
	broker.Broker
	tops atomic.Int32
	hold chan struct{} // nil: never hold
	read chan struct{}
	once sync.Once
}

func (b *topCountingBroker) Recover(ctx context.Context, ch string, since uint64, history bool) (broker.Recovery, error) {
	rec, err := b.Broker.Recover(ctx, ch, since, history)
	if !history {
		b.tops.Add(1)
		if b.hold != nil {
			b.once.Do(func() {
				b.read <- struct{}{}
				<-b.hold
			})
		}
	}
	return rec, err
}

// TestTopReadsCoalesceAndNeverJoinAReadInFlight: subscribes without a
// position that arrive while a top read runs share the next read, so 100
// subscribes make 2 broker reads, not 100; and a subscribe never takes a
// top read before it registered: the publication that reached the node
// between the first read and the later subscribes is below their acked
// offset (they are not told of a gap that is not there) and is delivered
// to the first subscriber only. Everyone then gets the next publication
// exactly once.
func TestTopReadsCoalesceAndNeverJoinAReadInFlight(t *testing.T) {
	mem := broker.NewMemory(broker.MemoryConfig{HistorySize: 100})
	cb := &topCountingBroker{Broker: mem, hold: make(chan struct{}), read: make(chan struct{})}
	h := New(Config{Broker: cb})
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	const n = 100
	fl, sessions, conns := recSessions(t, n, 64<<20)
	acks := make([]SubscribeResult, n)
	acked := make([]bool, n)
	subscribe := func(i int) {
		if h.Subscribe(sessions[i], "c", nil, func(r SubscribeResult) { acks[i], acked[i] = r, true }) == nil {
			t.Fatalf("subscribe %d refused", i)
		}
	}
	subscribe(0)
	<-cb.read // the first read has the top (0) and is held
	p1, err := mem.Publish(context.Background(), "c", []byte(`1`), broker.PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fl.run() // p1 reaches the loop: held back for the pending subscriber 0
	for i := 1; i < n; i++ {
		subscribe(i)
	}
	close(cb.hold)
	runUntil(t, fl, func() bool {
		for _, a := range acked {
			if !a {
				return false
			}
		}
		return true
	})
	if got := cb.tops.Load(); got != 2 {
		t.Errorf("%d subscribes made %d top reads, want 2 (the first, then one for all who came while it ran)", n, got)
	}
	if acks[0].Err != nil || acks[0].Offset >= p1.Offset {
		t.Fatalf("first subscribe acked %+v, want an offset below %d", acks[0], p1.Offset)
	}
	for i := 1; i < n; i++ {
		if acks[i].Err != nil || acks[i].Offset != p1.Offset {
			t.Fatalf("subscribe %d acked %+v, want offset %d: it took a read that began before it", i, acks[i], p1.Offset)
		}
	}
	p2, err := mem.Publish(context.Background(), "c", []byte(`2`), broker.PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	runUntil(t, fl, func() bool { return len(conns[n-1].messages(t)) >= 1 && len(conns[0].messages(t)) >= 2 })
	fl.run()
	for i, c := range conns {
		var got []uint64
		for _, m := range c.messages(t) {
			got = append(got, m.Offset)
		}
		want := []uint64{p2.Offset}
		if i == 0 {
			want = []uint64{p1.Offset, p2.Offset}
		}
		if len(got) != len(want) || got[0] != want[0] || got[len(got)-1] != want[len(want)-1] {
			t.Fatalf("subscriber %d got offsets %v, want %v", i, got, want)
		}
	}
}

// TestTopReadRefusedByAFullPool: when the pool refuses the read, the
// subscribe fails at once with ErrBusy and leaves nothing behind; the
// next one, with room in the pool, reads anew.
func TestTopReadRefusedByAFullPool(t *testing.T) {
	mem := broker.NewMemory(broker.MemoryConfig{HistorySize: 10})
	cb := &topCountingBroker{Broker: mem}
	pool := workpool.New(workpool.Config{Workers: 1, Queue: 1})
	defer pool.Close(time.Second)
	block := make(chan struct{})
	started := make(chan struct{})
	pool.Submit(func() { close(started); <-block })
	<-started
	pool.Submit(func() {}) // the queue is full
	h := New(Config{Broker: cb, Pool: pool})
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	fl, sessions, _ := recSessions(t, 2, 64<<20)
	var ack SubscribeResult
	if sub := h.Subscribe(sessions[0], "c", nil, func(r SubscribeResult) { ack = r }); sub != nil {
		t.Fatal("a subscribe the pool refused returned a subscription")
	}
	if ack.Err != ErrBusy {
		t.Fatalf("ack %+v, want ErrBusy", ack)
	}
	if got := h.Stats().Subscriptions; got != 0 {
		t.Fatalf("%d subscriptions left behind", got)
	}
	close(block)
	var ack2 SubscribeResult
	done := false
	for deadline := time.Now().Add(10 * time.Second); ; {
		// The pool drains its queue; retry until a submit is accepted.
		done = false
		if h.Subscribe(sessions[1], "c", nil, func(r SubscribeResult) { ack2, done = r, true }) != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the pool never took a read again")
		}
		time.Sleep(time.Millisecond)
	}
	runUntil(t, fl, func() bool { return done })
	if ack2.Err != nil {
		t.Fatalf("second subscribe: %v", ack2.Err)
	}
}

// runUntil runs fl's queued work until cond holds (bounded).
func runUntil(t *testing.T, fl *fakeLoop, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10 s")
		}
		if fl.run() == 0 {
			time.Sleep(time.Millisecond)
		}
	}
}

// topSubscribingBroker is a broker.TopSubscriber on Memory: SubscribeTop
// registers the interest, reads the top, and can publish right after the
// read (a publication racing the subscribe).
type topSubscribingBroker struct {
	topCountingBroker
	subscribeTops atomic.Int32
	after         func()
}

func (b *topSubscribingBroker) SubscribeTop(ch string) (uint64, bool, error) {
	b.subscribeTops.Add(1)
	if err := b.Broker.Subscribe(ch); err != nil {
		return 0, false, err
	}
	rec, err := b.Broker.Recover(context.Background(), ch, 0, false)
	if err != nil {
		return 0, false, err
	}
	if b.after != nil {
		b.after()
	}
	return rec.Top, true, nil
}

// TestTopFromTheSubscribeThatCreatedInterest: with a broker.TopSubscriber,
// the subscribe that subscribes the node takes its starting point from
// the broker's own read after registering the interest, and makes no
// second read; a publication right after that read is delivered once.
// A later subscribe, with the node subscribed already, reads the top.
func TestTopFromTheSubscribeThatCreatedInterest(t *testing.T) {
	mem := broker.NewMemory(broker.MemoryConfig{HistorySize: 100})
	tb := &topSubscribingBroker{topCountingBroker: topCountingBroker{Broker: mem}}
	p1, err := mem.Publish(context.Background(), "c", []byte(`1`), broker.PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var p2 broker.PublishResult
	tb.after = func() {
		tb.after = nil
		if p2, err = mem.Publish(context.Background(), "c", []byte(`2`), broker.PublishOptions{}); err != nil {
			t.Error(err)
		}
	}
	h := New(Config{Broker: tb})
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	fl, sessions, conns := recSessions(t, 2, 64<<20)
	var acks [2]SubscribeResult
	var acked [2]bool
	if h.Subscribe(sessions[0], "c", nil, func(r SubscribeResult) { acks[0], acked[0] = r, true }) == nil {
		t.Fatal("subscribe refused")
	}
	runUntil(t, fl, func() bool { return acked[0] && len(conns[0].messages(t)) >= 1 })
	if acks[0].Err != nil || acks[0].Offset != p1.Offset {
		t.Fatalf("ack %+v, want offset %d (the top the broker read)", acks[0], p1.Offset)
	}
	if n, m := tb.subscribeTops.Load(), tb.tops.Load(); n != 1 || m != 0 {
		t.Fatalf("%d SubscribeTop and %d top reads, want 1 and 0 (no second read)", n, m)
	}
	if h.Subscribe(sessions[1], "c", nil, func(r SubscribeResult) { acks[1], acked[1] = r, true }) == nil {
		t.Fatal("subscribe refused")
	}
	runUntil(t, fl, func() bool { return acked[1] })
	if acks[1].Err != nil || acks[1].Offset != p2.Offset {
		t.Fatalf("second ack %+v, want offset %d", acks[1], p2.Offset)
	}
	if n, m := tb.subscribeTops.Load(), tb.tops.Load(); n != 1 || m != 1 {
		t.Fatalf("%d SubscribeTop and %d top reads, want 1 and 1 (the node was subscribed)", n, m)
	}
	p3, err := mem.Publish(context.Background(), "c", []byte(`3`), broker.PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	runUntil(t, fl, func() bool { return len(conns[0].messages(t)) >= 2 && len(conns[1].messages(t)) >= 1 })
	fl.run()
	for i, want := range [][]uint64{{p2.Offset, p3.Offset}, {p3.Offset}} {
		var got []uint64
		for _, m := range conns[i].messages(t) {
			got = append(got, m.Offset)
		}
		if len(got) != len(want) || got[0] != want[0] || got[len(got)-1] != want[len(want)-1] {
			t.Fatalf("subscriber %d got %v, want %v", i, got, want)
		}
	}
}
