package server_test

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/herald-ws/herald/internal/testutil"
	"github.com/herald-ws/herald/server"
)

// presenceBenchSubscribers is the size of the channel the presence
// benchmark measures: as close to 10,000 as a process with 20,000 file
// descriptors holds with both ends of every connection in it.
const presenceBenchSubscribers = 9_900

func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// subscribeAll subscribes every client to channel, one after the other.
func subscribeAll(b *testing.B, clients []*testutil.WSClient, channel string) {
	b.Helper()
	for _, c := range clients {
		if err := c.SendJSON(map[string]any{"op": "subscribe", "channel": channel, "id": 1}); err != nil {
			b.Fatal(err)
		}
		for {
			m, err := c.Next(10 * time.Second)
			if err != nil {
				b.Fatal(err)
			}
			if m.Op == "ack" {
				break
			}
			if m.Op == "error" {
				b.Fatalf("subscribe: %s", m.Raw)
			}
		}
	}
}

// BenchmarkPresence10k measures, on one node with 9,900 connections
// subscribed to one presence channel: what presence adds to the heap per
// member (a subscription to the presence channel minus one to a plain
// channel), GET /api/presence_stats and GET /api/presence latency, and
// publish-to-receive latency on the presence channel beside a plain one
// with as many subscribers. Run with -benchtime 1x: its setup is the
// measurement.
func BenchmarkPresence10k(b *testing.B) {
	n := testutil.StartNode(b, testutil.NodeOptions{PresenceChannels: []string{"room:*"}, MaxChannelsPerConn: 4, HistorySize: 10})
	clients := dial(b, n, presenceBenchSubscribers)
	subscribeAll(b, clients, "plain:1")
	h1 := liveHeap()
	subscribeAll(b, clients, "room:1")
	h2 := liveHeap()
	subscribeAll(b, clients, "plain:2")
	h3 := liveHeap()
	plain := float64(int64(h3)-int64(h2)) / presenceBenchSubscribers
	present := float64(int64(h2)-int64(h1)) / presenceBenchSubscribers
	b.ReportMetric(present, "B/presence-sub")
	b.ReportMetric(plain, "B/plain-sub")
	b.ReportMetric(present-plain, "B/member")
	b.ReportMetric(timeAPI(b, n, "/api/presence_stats?channel=room:1", 200), "ns/presence_stats")
	b.ReportMetric(timeAPI(b, n, "/api/presence?channel=room:1", 5), "ns/presence")
	reader := testutil.DialWS(b, n, "", nil)
	for i, ch := range []string{"room:1", "plain:1"} {
		reader.Send(fmt.Sprintf(`{"op":"subscribe","channel":%q,"id":%d}`, ch, i+1))
		reader.ExpectAck(i + 1)
	}
	for _, ch := range []string{"room:1", "plain:1"} {
		var total time.Duration
		const pubs = 20
		for i := range pubs {
			start := time.Now()
			testutil.Publish(b, n, ch, i)
			reader.ExpectMessage(ch)
			total += time.Since(start)
		}
		b.ReportMetric(float64(total.Nanoseconds())/pubs, "ns/publish-to-receive-"+ch[:len(ch)-2])
	}
}

func dial(b *testing.B, n *server.Node, count int) []*testutil.WSClient {
	b.Helper()
	out := make([]*testutil.WSClient, count)
	for i := range out {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := testutil.DialWSContext(ctx, testutil.WSURL(n, ""), nil, nil)
		cancel()
		if err != nil {
			b.Fatalf("dial %d: %v", i, err)
		}
		out[i] = c
	}
	b.Cleanup(func() {
		for _, c := range out {
			_ = c.Conn.Close()
		}
	})
	return out
}

// timeAPI is the mean latency of rounds GETs of path.
func timeAPI(b *testing.B, n *server.Node, path string, rounds int) float64 {
	b.Helper()
	start := time.Now()
	for range rounds {
		status, body, err := testutil.APIRequest(n, http.MethodGet, path, "", nil)
		if err != nil || status != http.StatusOK {
			b.Fatalf("%s: %d %s %v", path, status, body, err)
		}
	}
	return float64(time.Since(start).Nanoseconds()) / float64(rounds)
}

// BenchmarkPresenceJoinLeaveBroadcast compares, in one run, the
// publish-to-last-subscriber latency of a channel whose members were told
// of every join (-presence-join-leave on) with the same channel on a node
// without it. Every member reads everything (joins included), so the
// latency is to the last of them. 2,000 members: filling a join/leave
// channel of N sends N²/2 join frames, 50 million at 10,000, which this
// machine does not send in a benchmark's time (README, Presence).
func BenchmarkPresenceJoinLeaveBroadcast(b *testing.B) {
	const members, pubs = 2000, 20
	for _, joinLeave := range []bool{false, true} {
		n := testutil.StartNode(b, testutil.NodeOptions{PresenceChannels: []string{"room:*"}, PresenceJoinLeave: joinLeave, HistorySize: 10})
		clients := dial(b, n, members)
		subscribeAll(b, clients, "room:1")
		// Drain the joins each member was sent after its own ack.
		fence := testutil.Publish(b, n, "room:1", `"fence"`)
		readUntil := func(c *testutil.WSClient, off uint64) {
			for {
				m, err := c.Next(30 * time.Second)
				if err != nil {
					b.Fatal(err)
				}
				if m.Op == "message" && m.Offset >= off {
					return
				}
			}
		}
		for _, c := range clients {
			readUntil(c, fence)
		}
		var total time.Duration
		for range pubs {
			start := time.Now()
			off := testutil.Publish(b, n, "room:1", 1)
			for _, c := range clients {
				readUntil(c, off)
			}
			total += time.Since(start)
		}
		name := "off"
		if joinLeave {
			name = "on"
		}
		b.ReportMetric(float64(total.Microseconds())/pubs/1000, "ms/publish-to-last-joinleave-"+name)
		for _, c := range clients {
			_ = c.Conn.Close()
		}
		n.Stop()
	}
}
