//go:build soak

package soak

import (
	"testing"
	"time"

	"github.com/herald-ws/herald/broker"
	"github.com/herald-ws/herald/internal/testutil"
)

// TestSoakSubscribeStorm: 100,000 subscribes pipelined over 20 connections
// into a node whose worker pool is small and whose broker is slow. Every
// subscription ends live or cleanly refused as unavailable, and retrying
// the refused ones brings every one of them in; nothing refused is left
// behind to block a retry or count against the per-connection limit.
func TestSoakSubscribeStorm(t *testing.T) {
	const conns, perConn = 20, 5000
	b := testutil.SlowBroker{Broker: broker.NewMemory(broker.MemoryConfig{HistorySize: 8}), Delay: 10 * time.Microsecond}
	n := testutil.StartNode(t, testutil.NodeOptions{Broker: b, Workers: 4, WorkQueue: 16384, MaxChannelsPerConn: perConn})
	res, closeAll, err := testutil.SubscribeStorm(n, conns, perConn, 500)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll()
	t.Logf("storm: %d acked in %d rounds, first-round refusals %v", res.Acked, res.Rounds, res.Refused)
	if len(res.Problems) > 0 || len(res.Unknown) > 0 {
		t.Fatalf("%d refusals a retry cannot fix, %d unknown replies", len(res.Problems), len(res.Unknown))
	}
	if res.Acked != conns*perConn {
		t.Fatalf("%d acked, want %d", res.Acked, conns*perConn)
	}
	if got := n.Hub().Stats().Subscriptions; got != conns*perConn {
		t.Fatalf("hub holds %d subscriptions, want %d", got, conns*perConn)
	}
}
