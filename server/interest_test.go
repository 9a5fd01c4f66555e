package server_test

import (
	"sync"
	"testing"
	"time"

	"github.com/herald-ws/herald/broker"
	"github.com/herald-ws/herald/internal/testutil"
)

// slowInterest is a memory broker whose Subscribe takes a while, like a
// clustered broker's round trip, and which records the node's interest.
type slowInterest struct {
	*broker.Memory
	delay    time.Duration
	mu       sync.Mutex
	interest map[string]bool
}

func (b *slowInterest) Subscribe(channel string) error {
	time.Sleep(b.delay)
	if err := b.Memory.Subscribe(channel); err != nil {
		return err
	}
	b.mu.Lock()
	b.interest[channel] = true
	b.mu.Unlock()
	return nil
}

func (b *slowInterest) Unsubscribe(channel string) error {
	if err := b.Memory.Unsubscribe(channel); err != nil {
		return err
	}
	b.mu.Lock()
	b.interest[channel] = false
	b.mu.Unlock()
	return nil
}

func (b *slowInterest) interested(channel string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.interest[channel]
}

// waitInterest waits for the broker's interest in channel to become want.
func waitInterest(t *testing.T, b *slowInterest, channel string, want bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for b.interested(channel) != want {
		if time.Now().After(deadline) {
			t.Fatalf("the broker's interest in %s stayed %v", channel, !want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestBrokerInterestSettles: when the last subscriber leaves while the
// broker is still registering the node's interest, the interest is
// withdrawn once the registration completes; it must not be left behind
// (a clustered node would keep receiving the channel, and the memory
// broker could never forget it).
func TestBrokerInterestSettles(t *testing.T) {
	t.Parallel()
	b := &slowInterest{
		Memory:   broker.NewMemory(broker.MemoryConfig{HistorySize: 100}),
		delay:    200 * time.Millisecond,
		interest: map[string]bool{},
	}
	n := testutil.StartNode(t, testutil.NodeOptions{Broker: b})
	c := testutil.DialWS(t, n, "", nil)

	// The unsubscribe lands while the broker is still in Subscribe.
	if _, err := c.Conn.Write(frames(t,
		`{"op":"subscribe","channel":"brief","id":1}`,
		`{"op":"unsubscribe","channel":"brief","id":2}`,
	)); err != nil {
		t.Fatal(err)
	}
	replies := map[string]testutil.Msg{}
	for range 2 {
		m := c.Read()
		replies[string(m.ID)] = m
	}
	if replies["2"].Op != "ack" {
		t.Fatalf("unsubscribe reply %s, want ack", replies["2"].Raw)
	}
	waitInterest(t, b, "brief", false)
	// Give a late reconcile the time to (wrongly) restore it.
	time.Sleep(3 * b.delay)
	if b.interested("brief") {
		t.Fatal("the node kept its broker interest in a channel nobody here subscribes to")
	}
	if st := testutil.Stats(t, n, ""); st["channels"] != 0 || st["subscriptions"] != 0 {
		t.Fatalf("stats %v: want no channel and no subscription", st)
	}

	// The channel still works normally afterwards.
	top := c.Subscribe("brief", 3)
	waitInterest(t, b, "brief", true)
	off := testutil.Publish(t, n, "brief", `"hello"`)
	if off != top+1 {
		t.Fatalf("offset %d, want %d", off, top+1)
	}
	wantRaw(t, c.Read(), messageFrame("brief", off, `"hello"`))
	c.Send(`{"op":"unsubscribe","channel":"brief","id":4}`)
	c.ExpectAck(4)
	waitInterest(t, b, "brief", false)

	// Flapping: subscribe, unsubscribe, subscribe in one write ends
	// subscribed, with the interest registered and messages flowing.
	if _, err := c.Conn.Write(frames(t,
		`{"op":"subscribe","channel":"brief","id":5}`,
		`{"op":"unsubscribe","channel":"brief","id":6}`,
		`{"op":"subscribe","channel":"brief","id":7}`,
	)); err != nil {
		t.Fatal(err)
	}
	replies = map[string]testutil.Msg{}
	for range 3 {
		m := c.Read()
		replies[string(m.ID)] = m
	}
	if replies["6"].Op != "ack" || replies["7"].Op != "ack" {
		t.Fatalf("replies %v, want the unsubscribe and the second subscribe acked", replies)
	}
	waitInterest(t, b, "brief", true)
	off = testutil.Publish(t, n, "brief", `"again"`)
	wantRaw(t, c.Read(), messageFrame("brief", off, `"again"`))
	fence(t, n, c, "brief")
	if st := testutil.Stats(t, n, ""); st["channels"] != 1 || st["subscriptions"] != 1 {
		t.Fatalf("stats %v: want one channel and one subscription", st)
	}
}
