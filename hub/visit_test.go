package hub

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/herald-ws/herald/broker"
	"github.com/herald-ws/herald/session"
)

// runWhile drains fl on a goroutine until stop is closed, standing in for
// the event loop that Visit waits for.
func runWhile(fl *fakeLoop, stop chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				fl.run()
				return
			default:
				fl.run()
			}
		}
	}()
	return &wg
}

// TestVisitMayUnsubscribe: Visit calls visit once for every live
// subscription even when visit unsubscribes some of them, and the ones it
// kept are exactly the others.
func TestVisitMayUnsubscribe(t *testing.T) {
	fl, sessions, _ := openSessions(t, 101)
	h := New(Config{Broker: broker.NewMemory(broker.MemoryConfig{})})
	defer h.Close()
	index := map[*session.Session]int{}
	for i, s := range sessions {
		index[s] = i
		h.Subscribe(s, "c", nil, func(SubscribeResult) {})
	}
	fl.run()
	seen := make([]int, len(sessions))
	stop := make(chan struct{})
	wg := runWhile(fl, stop)
	err := h.Visit(context.Background(), "c", func(sub *Subscription) {
		i := index[sub.Session()]
		seen[i]++
		if i%2 == 0 {
			h.Unsubscribe(sub)
		}
	})
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range seen {
		if n != 1 {
			t.Fatalf("subscription %d visited %d times", i, n)
		}
	}
	if got := h.Subscribers("c"); got != 50 {
		t.Fatalf("%d subscribers left, want the 50 odd ones", got)
	}
	var left []int
	stop = make(chan struct{})
	wg = runWhile(fl, stop)
	_ = h.Visit(context.Background(), "c", func(sub *Subscription) { left = append(left, index[sub.Session()]) })
	close(stop)
	wg.Wait()
	for _, i := range left {
		if i%2 == 0 {
			t.Fatalf("unsubscribed %d visited again", i)
		}
	}
	if len(left) != 50 {
		t.Fatalf("second visit saw %d", len(left))
	}
}

// TestNotifySkipsRecoveringSubscribers: a notification reaches the live
// subscribers of the channel, not one whose history is still being read
// (it would see the frame ahead of its ack), nor another channel's.
func TestNotifySkipsRecoveringSubscribers(t *testing.T) {
	fl, sessions, conns := openSessions(t, 3)
	h := New(Config{Broker: broker.NewMemory(broker.MemoryConfig{})})
	defer h.Close()
	h.Subscribe(sessions[0], "c", nil, func(SubscribeResult) {})
	h.Subscribe(sessions[2], "other", nil, func(SubscribeResult) {})
	fl.run()
	pending := h.loopSubsOf("c", sessions[1].Loop())
	sub := &Subscription{sess: sessions[1], ls: pending, pending: true, slot: int32(len(pending.list))}
	pending.list = append(pending.list, sub)
	before := [3]int{conns[0].written, conns[1].written, conns[2].written}
	h.Notify("c", []byte(`{"op":"join"}`), nil)
	fl.run()
	if conns[0].written == before[0] {
		t.Fatal("the live subscriber got nothing")
	}
	if conns[1].written != before[1] || conns[2].written != before[2] {
		t.Fatal("a recovering subscriber or another channel's got the notification")
	}
}

// BenchmarkNotify10k is one presence join or leave on a channel of 10,000
// local subscribers on one loop: the frame is built once and written to
// each.
func BenchmarkNotify10k(b *testing.B) {
	const n = 10_000
	fl, sessions, conns := openSessions(b, n)
	h := New(Config{Broker: broker.NewMemory(broker.MemoryConfig{})})
	defer h.Close()
	for _, s := range sessions {
		h.Subscribe(s, "room", nil, func(SubscribeResult) {})
	}
	fl.run()
	payload := []byte(`{"op":"join","channel":"room","user":"42","conn":"9f86d081-2s"}`)
	var frames atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		h.Notify("room", payload, nil)
		frames.Add(int64(fl.run()))
	}
	b.StopTimer()
	if conns[n-1].written == 0 {
		b.Fatal("last subscriber received nothing")
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/delivery")
}
