package server_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/herald-ws/herald/broker"
	"github.com/herald-ws/herald/internal/testutil"
	"github.com/herald-ws/herald/session"
)

// A since above the channel's top (a reset store, a clock step, a bogus
// value) is answered with recovered:false and the current offset, and
// every later publication is delivered. Old code: the subscription was
// positioned at since and silently skipped every publication up to it.
func TestSinceAboveTopIsNotRecoveredAndMissesNothing(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{})
	top := testutil.Publish(t, n, "reset", "0")
	c := testutil.DialWS(t, n, "", nil)
	c.Send(fmt.Sprintf(`{"op":"subscribe","channel":"reset","since":%d,"id":1}`, top+1000))
	wantRaw(t, c.Read(), fmt.Sprintf(`{"op":"ack","id":1,"offset":%d,"recovered":false}`, top))
	for i := 1; i <= 3; i++ {
		off := testutil.Publish(t, n, "reset", fmt.Sprint(i))
		wantRaw(t, c.Read(), messageFrame("reset", off, fmt.Sprint(i)))
	}
}

// A subscribe refused because the worker pool is full leaves nothing
// behind: the retry succeeds (old code: "already subscribed", and the
// dead entry counted against -max-channels-per-conn), and the storm ends
// with every subscription live.
func TestSubscribeStormRefusalsLeaveNothingBehind(t *testing.T) {
	t.Parallel()
	const conns, perConn = 10, 1000
	b := testutil.SlowBroker{Broker: broker.NewMemory(broker.MemoryConfig{HistorySize: 8}), Delay: 50 * time.Microsecond}
	n := testutil.StartNode(t, testutil.NodeOptions{Broker: b, Workers: 2, WorkQueue: 128, MaxChannelsPerConn: perConn})
	res, closeAll, err := testutil.SubscribeStorm(n, conns, perConn, 200)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll()
	t.Logf("storm: %d acked in %d rounds, first-round refusals %v", res.Acked, res.Rounds, res.Refused)
	if res.Refused["unavailable"] == 0 {
		t.Fatal("no subscribe was refused: the test did not fill the worker pool")
	}
	if len(res.Problems) > 0 || len(res.Unknown) > 0 {
		t.Fatalf("refusals a retry cannot fix: %d (first %q); unknown replies %d", len(res.Problems), first(res.Problems), len(res.Unknown))
	}
	if res.Acked != conns*perConn {
		t.Fatalf("%d subscriptions acked, want %d", res.Acked, conns*perConn)
	}
	if got := n.Hub().Stats().Subscriptions; got != conns*perConn {
		t.Fatalf("hub holds %d subscriptions, want %d", got, conns*perConn)
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// gapBroker is the memory broker with a hole punched in live delivery:
// publications published with lose are stored in history but never
// delivered, as a cluster node whose NATS subscription dropped them.
type gapBroker struct {
	*broker.Memory
	mu      sync.Mutex
	lose    bool
	deliver broker.DeliverFunc
}

func (b *gapBroker) Start(deliver broker.DeliverFunc) error {
	b.deliver = deliver
	return b.Memory.Start(func(p broker.Publication) {
		b.mu.Lock()
		lose := b.lose
		b.mu.Unlock()
		if !lose {
			deliver(p)
		}
	})
}

func (b *gapBroker) publishLost(t *testing.T, channel string, k int) uint64 {
	t.Helper()
	b.mu.Lock()
	b.lose = true
	b.mu.Unlock()
	defer func() { b.mu.Lock(); b.lose = false; b.mu.Unlock() }()
	var last uint64
	for i := 0; i < k; i++ {
		r, err := b.Publish(context.Background(), channel, []byte(fmt.Sprintf(`"lost-%d"`, i)), broker.PublishOptions{})
		if err != nil {
			t.Fatal(err)
		}
		last = r.Offset
	}
	return last
}

// A gap the broker reports makes every local subscriber of the channel
// recover the lost publications from history, in order, exactly once.
func TestBrokerGapIsRepairedFromHistory(t *testing.T) {
	t.Parallel()
	b := &gapBroker{Memory: broker.NewMemory(broker.MemoryConfig{HistorySize: 100})}
	n := testutil.StartNode(t, testutil.NodeOptions{Broker: b, Options: testutil.Options{Loops: 2}})
	clients := make([]*testutil.WSClient, 6)
	for i := range clients {
		clients[i] = testutil.DialWS(t, n, "", nil)
		clients[i].Subscribe("gappy", 1)
	}
	before := testutil.Publish(t, n, "gappy", `"before"`)
	lastLost := b.publishLost(t, "gappy", 3)
	b.deliver(broker.Publication{Channel: "gappy", Offset: lastLost, Gap: true})
	after := testutil.Publish(t, n, "gappy", `"after"`)
	for _, c := range clients {
		wantRaw(t, c.Read(), messageFrame("gappy", before, `"before"`))
		for i := 0; i < 3; i++ {
			wantRaw(t, c.Read(), messageFrame("gappy", before+1+uint64(i), fmt.Sprintf(`"lost-%d"`, i)))
		}
		wantRaw(t, c.Read(), messageFrame("gappy", after, `"after"`))
	}
	if g := n.Hub().Stats().Gaps; g != 1 {
		t.Fatalf("gaps counted %d, want 1", g)
	}
}

// A gap that history no longer covers closes the subscribers with 1012,
// so they reconnect and learn from the subscribe ack that they missed
// messages, instead of staying connected over a silent hole.
func TestBrokerGapPastHistoryClosesWith1012(t *testing.T) {
	t.Parallel()
	b := &gapBroker{Memory: broker.NewMemory(broker.MemoryConfig{HistorySize: 2})}
	n := testutil.StartNode(t, testutil.NodeOptions{Broker: b, HistorySize: 2})
	c := testutil.DialWS(t, n, "", nil)
	c.Subscribe("gappy", 1)
	lastLost := b.publishLost(t, "gappy", 5)
	b.deliver(broker.Publication{Channel: "gappy", Offset: lastLost, Gap: true})
	if code := c.ExpectClose(); code != session.StatusServiceRestart {
		t.Fatalf("close code %d, want 1012", code)
	}
}

// What one subscription to its own, empty channel costs the node: the
// hub's registry, the broker's channel and the connection's entry. At
// most 300 B (old code: ~9 KB, the preallocated history ring).
func TestEmptyChannelSubscriptionCost(t *testing.T) {
	const conns, perConn = 100, 100
	n := testutil.StartNode(t, testutil.NodeOptions{MaxChannelsPerConn: perConn, HistorySize: 100})
	clients := make([]*testutil.WSClient, conns)
	for i := range clients {
		clients[i] = testutil.DialWS(t, n, "", nil)
		// What a connection costs once it has spoken (its read buffer,
		// its reply scratch) is the connection's, not its subscriptions'.
		clients[i].Send(`{"op":"ping","id":1}`)
		clients[i].Expect("pong")
	}
	time.Sleep(50 * time.Millisecond)
	before := heapAlloc()
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < perConn; j++ {
				c.Send(fmt.Sprintf(`{"op":"subscribe","channel":"cost-%d-%d","id":%d}`, i, j, j))
				c.ExpectAck(j)
			}
		}()
	}
	wg.Wait()
	per := float64(heapAlloc()-before) / (conns * perConn)
	t.Logf("one subscription to an empty channel: %.0f B of heap", per)
	if per > 300 {
		t.Fatalf("a subscription to an empty channel costs %.0f B, want at most 300", per)
	}
}

func heapAlloc() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}
