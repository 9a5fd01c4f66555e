package hub

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-ws/herald/broker"
	"github.com/herald-ws/herald/internal/workpool"
)

// pinBroker hides Memory's Nonblocking; every top read of "hot" (up to
// more) has one more subscribe of "hot" arrive while it runs, the first
// read waits for release, and the hot reads done when "cold" is read are
// recorded.
type pinBroker struct {
	broker.Broker
	h       *Hub
	joins   func()
	hot     atomic.Int32
	coldAt  atomic.Int32
	first   chan struct{}
	release chan struct{}
	more    int32
}

func (b *pinBroker) Recover(ctx context.Context, ch string, since uint64, history bool) (broker.Recovery, error) {
	switch ch {
	case "hot":
		n := b.hot.Add(1)
		if n == 1 {
			b.first <- struct{}{}
			<-b.release
		}
		if n <= b.more {
			b.joins() // a subscribe arrives while this read runs
		}
	case "cold":
		b.coldAt.Store(b.hot.Load() + 1)
	}
	return b.Broker.Recover(ctx, ch, since, history)
}

// TestTopReadsDoNotPinAWorker: a channel that gets a subscribe during
// every top read must not keep a pool worker to itself: the other
// channels' reads queued meanwhile run after its current read, not after
// the subscribe storm ends. (Fails on the old code: topReadLoop looped on
// its worker and the cold channel was read only after all 100 hot reads.)
func TestTopReadsDoNotPinAWorker(t *testing.T) {
	mem := broker.NewMemory(broker.MemoryConfig{HistorySize: 10})
	pb := &pinBroker{Broker: mem, first: make(chan struct{}), release: make(chan struct{}), more: 100}
	pool := workpool.New(workpool.Config{Workers: 1, Queue: 64})
	defer pool.Close(time.Second)
	h := New(Config{Broker: pb, Pool: pool})
	pb.h = h
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	fl, sessions, _ := recSessions(t, 3, 64<<20)
	var joined, answered atomic.Int32
	pb.joins = func() {
		joined.Add(1)
		h.readTop(sessions[1], "hot", func(broker.Recovery, error) { answered.Add(1) })
	}
	hotAcked, coldAcked := false, false
	if h.Subscribe(sessions[0], "hot", nil, func(r SubscribeResult) { hotAcked = r.Err == nil }) == nil {
		t.Fatal("hot subscribe refused")
	}
	<-pb.first // the hot read holds the only worker
	if h.Subscribe(sessions[2], "cold", nil, func(r SubscribeResult) { coldAcked = r.Err == nil }) == nil {
		t.Fatal("cold subscribe refused")
	}
	close(pb.release)
	runUntil(t, fl, func() bool {
		return hotAcked && coldAcked && answered.Load() == joined.Load() && joined.Load() == pb.more
	})
	if at := pb.coldAt.Load(); at > pb.more/2 {
		t.Fatalf("the cold channel was read after %d hot reads: the hot channel kept the worker", at-1)
	}
}

// TestTopReadNextBatchRefusedByAFullPool: when the next read of a channel
// finds the pool full, its subscribes fail with ErrBusy (none is left
// waiting) and the channel's entry is dropped, so a later subscribe reads
// anew.
func TestTopReadNextBatchRefusedByAFullPool(t *testing.T) {
	mem := broker.NewMemory(broker.MemoryConfig{HistorySize: 10})
	pb := &pinBroker{Broker: mem, first: make(chan struct{}), release: make(chan struct{}), more: 1}
	pool := workpool.New(workpool.Config{Workers: 1, Queue: 1})
	defer pool.Close(time.Second)
	h := New(Config{Broker: pb, Pool: pool})
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	fl, sessions, _ := recSessions(t, 3, 64<<20)
	block := make(chan struct{})
	var waiterErr atomic.Value
	pb.joins = func() {
		h.readTop(sessions[1], "hot", func(_ broker.Recovery, err error) { waiterErr.Store(err) })
		if !pool.Submit(func() { <-block }) { // the queue is now full
			t.Error("could not fill the queue")
		}
	}
	var first SubscribeResult
	firstDone := false
	if h.Subscribe(sessions[0], "hot", nil, func(r SubscribeResult) { first, firstDone = r, true }) == nil {
		t.Fatal("subscribe refused")
	}
	<-pb.first
	close(pb.release)
	runUntil(t, fl, func() bool { return firstDone && waiterErr.Load() != nil })
	close(block)
	if first.Err != nil {
		t.Fatalf("first subscribe: %v", first.Err)
	}
	if err := waiterErr.Load().(error); err != ErrBusy {
		t.Fatalf("waiter got %v, want ErrBusy", err)
	}
	h.tops.mu.Lock()
	left := len(h.tops.m)
	h.tops.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d channels left in the top-read map", left)
	}
	var again SubscribeResult
	done := false
	for deadline := time.Now().Add(10 * time.Second); ; {
		done = false
		if h.Subscribe(sessions[2], "hot", nil, func(r SubscribeResult) { again, done = r, true }) != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the pool never took a read again")
		}
		time.Sleep(time.Millisecond)
	}
	runUntil(t, fl, func() bool { return done })
	if again.Err != nil {
		t.Fatalf("later subscribe: %v", again.Err)
	}
}
