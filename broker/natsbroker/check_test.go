package natsbroker

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/herald-ws/herald/broker"
)

// TestCheckVisitsOnlyFlaggedChannelsAndWatchesAnEpisode: the periodic
// check costs what is flagged, not every channel of the shard (a node
// with a channel per user has hundreds of thousands), and still finds the
// drops nats.go does not report: it reports the first drop of a
// slow-consumer episode only, so a watched channel's counters are read on
// every check until a message is queued with no drop in between. The
// shard's queue holds one message and its goroutine is held inside the
// first delivery, so that drops happen for real; the test runs the checks
// itself (the ticker is an hour).
func TestCheckVisitsOnlyFlaggedChannelsAndWatchesAnEpisode(t *testing.T) {
	srv, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	defer srv.Shutdown()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	b, err := New(Config{URLs: srv.ClientURL(), DeliveryShards: 1, ShardQueue: 1, GapCheckInterval: time.Hour, MemoryStore: true, HistorySize: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	got := make(chan uint64, 64)
	release := make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	defer unblock() // before Close, which waits for the shard goroutine
	var first atomic.Bool
	if err := b.Start(func(p broker.Publication) {
		if p.Channel != "hot" {
			return
		}
		if p.Gap {
			t.Errorf("gap through %d", p.Offset)
		}
		got <- p.Offset
		if first.CompareAndSwap(false, true) {
			<-release // the shard goroutine waits here; its queue fills
		}
	}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		if err := b.Subscribe(fmt.Sprintf("idle%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Subscribe("hot"); err != nil {
		t.Fatal(err)
	}
	s := b.shards[0]
	s.mu.Lock()
	st := s.chans[livePrefix+"hot"]
	s.mu.Unlock()

	// The first connect flags every channel it finds (whatever was
	// published meanwhile never arrived); one check clears them.
	s.checkSuspects()
	s.checkSuspects()
	s.mu.Lock()
	flagged := len(s.check)
	s.mu.Unlock()
	if s.polls != 0 || flagged != 0 {
		t.Fatalf("nothing flagged: %d counters read, %d channels to check", s.polls, flagged)
	}

	publish := func(n int) []uint64 {
		var offs []uint64
		for i := 0; i < n; i++ {
			r, err := b.Publish(context.Background(), "hot", []byte(`1`), broker.PublishOptions{})
			if err != nil {
				t.Fatal(err)
			}
			offs = append(offs, r.Offset)
		}
		return offs
	}
	dropped := func(atLeast int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			s.mu.Lock()
			d, _ := st.sub.Dropped()
			s.mu.Unlock()
			if d >= atLeast {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("dropped %d, want at least %d", d, atLeast)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	var delivered []uint64
	take := func(n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			select {
			case o := <-got:
				delivered = append(delivered, o)
			case <-time.After(10 * time.Second):
				t.Fatalf("delivered %v, waiting for %d more", delivered, n-i)
			}
		}
	}

	// m1 holds the shard goroutine, m2 fills the queue, m3-m5 are dropped:
	// nats.go reports the episode once, and the error handler flags it.
	offs := publish(5)
	take(1)
	dropped(3)
	waitFlagged := time.Now().Add(10 * time.Second)
	for {
		s.mu.Lock()
		w := st.watch
		s.mu.Unlock()
		if w {
			break
		}
		if time.Now().After(waitFlagged) {
			t.Fatal("the slow-consumer report never flagged the channel")
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.checkSuspects() // repairs m2-m5 from the stream
	take(4)
	if s.polls != 1 {
		t.Fatalf("%d counters read, want 1 (the flagged channel only)", s.polls)
	}

	// The same episode goes on: m6-m8 are dropped and not reported. The
	// watch finds them on the next check.
	offs = append(offs, publish(3)...)
	dropped(6)
	s.checkSuspects()
	take(3)

	// The shard goes on (m2, already repaired, is skipped) and m9 is
	// queued with no drop: the episode is over.
	unblock()
	offs = append(offs, publish(1)...)
	take(1)
	s.checkSuspects()
	s.mu.Lock()
	watching, pending := st.watch, len(s.check)
	s.mu.Unlock()
	if watching || pending != 0 {
		t.Fatalf("after the episode: watch %v, %d channels to check", watching, pending)
	}
	polls := s.polls
	s.checkSuspects()
	if s.polls != polls {
		t.Fatalf("a channel out of its episode is still read: %d -> %d", polls, s.polls)
	}
	if fmt.Sprint(delivered) != fmt.Sprint(offs) {
		t.Fatalf("delivered %v, published %v", delivered, offs)
	}
	select {
	case o := <-got:
		t.Fatalf("delivered %d again", o)
	case <-time.After(100 * time.Millisecond):
	}
}
