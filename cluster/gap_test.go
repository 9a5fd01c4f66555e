package cluster

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/herald-ws/herald/broker"
	"github.com/herald-ws/herald/broker/natsbroker"
	"github.com/herald-ws/herald/internal/testutil"
)

// TestNoGapAfterNATSReconnect cuts one node's NATS connection while another
// node keeps publishing: the stream stores those messages but the cut node
// never receives them live. After it reconnects, its subscribers receive
// every publication exactly once, in order: on a channel that goes on
// publishing (the next message reveals the hole) and on one that publishes
// nothing more (the post-reconnect check finds it).
func TestNoGapAfterNATSReconnect(t *testing.T) {
	ns := startNATS(t)
	px := startProxy(t, ns.srv.Addr().String())
	ba, err := natsbroker.New(natsbroker.Config{URLs: px.url(), HistorySize: 100, HistoryTTL: time.Hour, Name: t.Name() + "-a"})
	if err != nil {
		t.Fatal(err)
	}
	a := testutil.StartNode(t, testutil.NodeOptions{Broker: ba, HistorySize: 100})
	b := startNode(t, ns, 100)

	busy1, _ := listen(t, a, "busy", nil)
	busy2, _ := listen(t, a, "busy", nil)
	quiet, _ := listen(t, a, "quiet", nil)
	var wantBusy, wantQuiet []uint64
	for i := range 3 {
		wantBusy = append(wantBusy, testutil.Publish(t, b, "busy", i))
		wantQuiet = append(wantQuiet, testutil.Publish(t, b, "quiet", i))
	}
	busy1.waitCount(t, 3, 10*time.Second)
	busy2.waitCount(t, 3, 10*time.Second)
	quiet.waitCount(t, 3, 10*time.Second)

	px.cut()
	waitReady(t, a, false, 10*time.Second)
	for i := range 10 {
		wantBusy = append(wantBusy, testutil.Publish(t, b, "busy", 100+i))
		if i < 5 {
			wantQuiet = append(wantQuiet, testutil.Publish(t, b, "quiet", 100+i))
		}
	}
	px.restore()
	waitReady(t, a, true, 20*time.Second)
	wantBusy = append(wantBusy, testutil.Publish(t, b, "busy", 999))

	check := func(name string, s *subscriber, want []uint64) {
		t.Helper()
		got := s.waitCount(t, len(want), 20*time.Second)
		for i, m := range got {
			if i >= len(want) || m.Op != "message" || m.Offset != want[i] {
				t.Fatalf("%s: message %d = %s, want offsets %v", name, i, m.Raw, want)
			}
		}
	}
	check("busy subscriber 1", busy1, wantBusy)
	check("busy subscriber 2", busy2, wantBusy)
	check("quiet subscriber", quiet, wantQuiet)
	time.Sleep(300 * time.Millisecond) // no duplicates arrive later
	for name, s := range map[string]*subscriber{"busy1": busy1, "busy2": busy2, "quiet": quiet} {
		want := len(wantBusy)
		if name == "quiet" {
			want = len(wantQuiet)
		}
		if n := len(s.messages()); n != want {
			t.Fatalf("%s ended with %d messages, want %d", name, n, want)
		}
	}
	// The operator sees the reconnect.
	if _, body, err := testutil.APIRequest(a, http.MethodGet, "/metrics", "", nil); err != nil || !regexp.MustCompile(`(?m)^herald_broker_reconnects_total [1-9]`).Match(body) {
		t.Fatalf("herald_broker_reconnects_total after a reconnect: err %v, metrics:\n%s", err, grepLines(body, "herald_broker_reconnects_total"))
	}
}

func grepLines(b []byte, sub string) string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// stallingBroker stalls the hub's Deliver on demand, as a hub that falls
// behind (encoding, compressing, a slow loop) would.
type stallingBroker struct {
	*natsbroker.Broker
	gate recorder // only its stall machinery is used
}

func (s *stallingBroker) Start(deliver broker.DeliverFunc) error {
	return s.Broker.Start(func(p broker.Publication) {
		s.gate.mu.Lock()
		stall := s.gate.stall
		s.gate.mu.Unlock()
		if stall != nil {
			select {
			case s.gate.stalled <- struct{}{}:
			default:
			}
			<-stall
		}
		deliver(p)
	})
}

// TestStalledHubLosesNothing: node A's delivery shard (queue of 8) is
// stalled inside the hub's Deliver while node B publishes 200 messages to
// two channels, so nats.go drops most of them. Once Deliver proceeds, every
// WebSocket subscriber on A receives every publication exactly once, in
// order.
func TestStalledHubLosesNothing(t *testing.T) {
	ns := startNATS(t)
	nb, err := natsbroker.New(natsbroker.Config{URLs: ns.url(), HistorySize: 1000, HistoryTTL: time.Hour, Name: t.Name() + "-a",
		DeliveryShards: 1, ShardQueue: 8, GapCheckInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	sb := &stallingBroker{Broker: nb}
	a := testutil.StartNode(t, testutil.NodeOptions{Broker: sb, HistorySize: 1000})
	t.Cleanup(sb.gate.release) // before the node's cleanup closes the broker
	b := startNode(t, ns, 1000)

	channels := []string{"stall.one", "stall.two"}
	subs := map[string][]*subscriber{}
	for _, c := range channels {
		for range 3 {
			s, _ := listen(t, a, c, nil)
			subs[c] = append(subs[c], s)
		}
	}
	sb.gate.hold()
	want := map[string][]uint64{}
	for i := range 200 {
		c := channels[i%2]
		want[c] = append(want[c], testutil.Publish(t, b, c, i))
		if i == 0 {
			<-sb.gate.stalled
		}
	}
	sb.gate.release()
	released := time.Now()
	for _, c := range channels {
		for i, s := range subs[c] {
			got := s.waitCount(t, len(want[c]), 30*time.Second)
			for k, m := range got {
				if k >= len(want[c]) || m.Op != "message" || m.Offset != want[c][k] {
					t.Fatalf("%s subscriber %d: message %d = %s, want offset %d", c, i, k, m.Raw, want[c][min(k, len(want[c])-1)])
				}
			}
		}
	}
	if nb.Stats().Repaired == 0 {
		t.Fatalf("stats %+v: nothing was dropped, so nothing was tested", nb.Stats())
	}
	t.Logf("caught up %v after the stall ended; %+v", time.Since(released), nb.Stats())
	time.Sleep(300 * time.Millisecond)
	for _, c := range channels {
		for i, s := range subs[c] {
			if n := len(s.messages()); n != len(want[c]) {
				t.Fatalf("%s subscriber %d ended with %d messages, want %d", c, i, n, len(want[c]))
			}
		}
	}
}
