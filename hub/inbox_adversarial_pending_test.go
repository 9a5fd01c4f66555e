package hub

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-ws/herald/broker"
)

// blockingBroker hides Memory's Nonblocking (so the hub uses its pool) and
// lets the test hold a Recover after it has read the history.
type blockingBroker struct {
	broker.Broker
	hold chan struct{}
	read chan struct{}
	on   atomic.Bool
}

func (b *blockingBroker) Recover(ctx context.Context, ch string, since uint64, history bool) (broker.Recovery, error) {
	rec, err := b.Broker.Recover(ctx, ch, since, history)
	if b.on.CompareAndSwap(true, false) {
		b.read <- struct{}{}
		<-b.hold
	}
	return rec, err
}

// TestOverflowWhilePendingIsRecovered: a publication dropped by a full
// inbox while the subscriber is pending (its history already read) is
// never sent: the gap note skips pending subscribers.
func TestOverflowWhilePendingIsRecovered(t *testing.T) {
	mem := broker.NewMemory(broker.MemoryConfig{HistorySize: 100})
	bb := &blockingBroker{Broker: mem}
	h := New(Config{Broker: bb, InboxPublications: 1})
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	fl, sessions, conns := recSessions(t, 1, 64<<20)
	res, _ := mem.Publish(context.Background(), "c", []byte(`0`), broker.PublishOptions{})
	since := res.Offset
	bb.hold, bb.read = make(chan struct{}), make(chan struct{})
	bb.on.Store(true)
	var ack SubscribeResult
	h.Subscribe(sessions[0], "c", &since, func(r SubscribeResult) { ack = r })
	<-bb.read // history read: nothing after since
	var offs []uint64
	for range 2 { // the first fills the inbox (bound 1), the second overflows
		r, err := mem.Publish(context.Background(), "c", []byte(`1`), broker.PublishOptions{})
		if err != nil {
			t.Fatal(err)
		}
		offs = append(offs, r.Offset)
	}
	close(bb.hold)
	time.Sleep(50 * time.Millisecond) // finishSubscribe queued behind the drain
	fl.run()
	fl.run()
	r, _ := mem.Publish(context.Background(), "c", []byte(`1`), broker.PublishOptions{})
	offs = append(offs, r.Offset)
	for range 5 {
		fl.run()
		time.Sleep(10 * time.Millisecond)
	}
	if ack.Err != nil || !ack.Recovered {
		t.Fatalf("ack %+v", ack)
	}
	var got []uint64
	for _, m := range conns[0].messages(t) {
		got = append(got, m.Offset-since)
	}
	t.Logf("published (rel) %v %v %v; overflows=%d; client got %v", offs[0]-since, offs[1]-since, offs[2]-since, h.Stats().Overflows, got)
	if len(got) != 3 {
		t.Fatalf("client got %d of 3 publications, with a recovered:true ack: silent hole", len(got))
	}
}
