package cluster

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/herald-ws/herald/broker/natsbroker"
	"github.com/herald-ws/herald/internal/testutil"
	"github.com/herald-ws/herald/server"
)

// natsServer is an embedded nats-server with JetStream on disk, restartable
// on the same port and store.
type natsServer struct {
	t     *testing.T
	port  int
	store string
	srv   *natsserver.Server
}

func startNATS(t *testing.T) *natsServer {
	t.Helper()
	n := &natsServer{t: t, port: -1, store: t.TempDir()}
	n.start()
	t.Cleanup(n.stop)
	return n
}

func (n *natsServer) start() {
	n.t.Helper()
	var err error
	for range 50 { // the port may linger briefly after a restart
		opts := &natsserver.Options{Host: "127.0.0.1", Port: n.port, JetStream: true, StoreDir: n.store, NoLog: true, NoSigs: true}
		n.srv, err = natsserver.NewServer(opts)
		if err == nil {
			go n.srv.Start()
			if n.srv.ReadyForConnections(5 * time.Second) {
				n.port = n.srv.Addr().(*net.TCPAddr).Port
				return
			}
			n.srv.Shutdown()
			err = fmt.Errorf("nats-server not ready")
		}
		time.Sleep(100 * time.Millisecond)
	}
	n.t.Fatalf("nats-server: %v", err)
}

func (n *natsServer) stop() {
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
		n.srv = nil
	}
}

func (n *natsServer) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.port) }

// startNode starts a Herald node on the NATS broker.
func startNode(t *testing.T, ns *natsServer, history int) *server.Node {
	t.Helper()
	b, err := natsbroker.New(natsbroker.Config{URLs: ns.url(), HistorySize: history, HistoryTTL: time.Hour, Name: t.Name()})
	if err != nil {
		t.Fatalf("natsbroker: %v", err)
	}
	return testutil.StartNode(t, testutil.NodeOptions{Broker: b, HistorySize: history})
}

// subscriber reads one client's messages in the background.
type subscriber struct {
	c    *testutil.WSClient
	mu   sync.Mutex
	msgs []testutil.Msg
	err  error
	done chan struct{}
}

func listen(t *testing.T, n *server.Node, channel string, since *uint64) (*subscriber, testutil.Msg) {
	t.Helper()
	c := testutil.DialWS(t, n, "", nil)
	req := map[string]any{"op": "subscribe", "channel": channel, "id": 1}
	if since != nil {
		req["since"] = *since
	}
	c.Send(req)
	ack := c.ExpectAck(1)
	s := &subscriber{c: c, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			m, err := c.Next(30 * time.Second)
			s.mu.Lock()
			if err != nil {
				s.err = err
				s.mu.Unlock()
				return
			}
			s.msgs = append(s.msgs, m)
			s.mu.Unlock()
		}
	}()
	return s, ack
}

func (s *subscriber) messages() []testutil.Msg {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]testutil.Msg(nil), s.msgs...)
}

// waitCount waits until s holds n messages.
func (s *subscriber) waitCount(t *testing.T, n int, within time.Duration) []testutil.Msg {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		m := s.messages()
		if len(m) >= n {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("received %d of %d messages (last error %v)", len(m), n, s.err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitReady(t *testing.T, n *server.Node, want bool, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for (n.Ready() == nil) != want {
		if time.Now().After(deadline) {
			t.Fatalf("node readiness never became %v (%v)", want, n.Ready())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestThreeNodesDeliverEveryPublication spreads subscribers over three
// nodes and publishes on all of them at once: every subscriber receives
// every publication exactly once, in offset order, and a publication has
// the same offset everywhere.
func TestThreeNodesDeliverEveryPublication(t *testing.T) {
	ns := startNATS(t)
	nodes := []*server.Node{startNode(t, ns, 100), startNode(t, ns, 100), startNode(t, ns, 100)}
	var subs []*subscriber
	for i := range 30 {
		s, _ := listen(t, nodes[i%3], "news", nil)
		subs = append(subs, s)
	}
	const perNode = 20
	offsets := make(chan uint64, 3*perNode)
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range perNode {
				off, err := testutil.PublishKey(n, "", "news", map[string]any{"node": i, "n": j})
				if err != nil {
					t.Errorf("publish on node %d: %v", i, err)
					return
				}
				offsets <- off
			}
		}()
	}
	wg.Wait()
	close(offsets)
	var acked []uint64
	for off := range offsets {
		acked = append(acked, off)
	}
	sort.Slice(acked, func(i, j int) bool { return acked[i] < acked[j] })
	for i, s := range subs {
		got := s.waitCount(t, len(acked), 20*time.Second)
		if len(got) != len(acked) {
			t.Fatalf("subscriber %d got %d messages, want %d", i, len(got), len(acked))
		}
		for k, m := range got {
			if m.Op != "message" || m.Channel != "news" || m.Offset != acked[k] {
				t.Fatalf("subscriber %d message %d = %s, want offset %d (acked offsets in order)", i, k, m.Raw, acked[k])
			}
		}
	}
	// No stragglers or duplicates arrive later.
	time.Sleep(300 * time.Millisecond)
	for i, s := range subs {
		if n := len(s.messages()); n != len(acked) {
			t.Fatalf("subscriber %d ended with %d messages, want %d", i, n, len(acked))
		}
	}
}

// TestRecoverOnAnotherNode: a client on node A disconnects, messages are
// published on node B, and it reconnects to node C with since: it receives
// exactly what it missed, then live messages.
func TestRecoverOnAnotherNode(t *testing.T) {
	ns := startNATS(t)
	a, b, c := startNode(t, ns, 100), startNode(t, ns, 100), startNode(t, ns, 100)
	first := testutil.Publish(t, b, "orders", map[string]int{"n": 0})
	s, _ := listen(t, a, "orders", nil)
	seen := testutil.Publish(t, b, "orders", map[string]int{"n": 1})
	got := s.waitCount(t, 1, 10*time.Second)
	if got[0].Offset != seen || seen <= first {
		t.Fatalf("live message offset %d, want %d", got[0].Offset, seen)
	}
	_ = s.c.Conn.Close()
	<-s.done

	var missed []uint64
	for i := range 20 {
		missed = append(missed, testutil.Publish(t, b, "orders", map[string]int{"n": 2 + i}))
	}
	r, ack := listen(t, c, "orders", &seen)
	if ack.Recovered == nil || !*ack.Recovered {
		t.Fatalf("subscribe ack %s: want recovered:true", ack.Raw)
	}
	live := testutil.Publish(t, a, "orders", map[string]int{"n": 99})
	want := append(missed, live)
	got = r.waitCount(t, len(want), 10*time.Second)
	for i, m := range got {
		if i >= len(want) || m.Offset != want[i] {
			t.Fatalf("after reconnect got %d messages; message %d = %s, want offsets %v", len(got), i, m.Raw, want)
		}
	}
}

// TestRecoveredFalsePastHistory: with a history of 5 per channel, missing
// 10 messages is reported.
func TestRecoveredFalsePastHistory(t *testing.T) {
	ns := startNATS(t)
	a, b := startNode(t, ns, 5), startNode(t, ns, 5)
	seen := testutil.Publish(t, a, "tiny", 0)
	for i := range 10 {
		testutil.Publish(t, a, "tiny", i+1)
	}
	r, ack := listen(t, b, "tiny", &seen)
	if ack.Recovered == nil || *ack.Recovered {
		t.Fatalf("subscribe ack %s: want recovered:false", ack.Raw)
	}
	got := r.waitCount(t, 5, 10*time.Second)
	if len(got) != 5 {
		t.Fatalf("got %d retained messages, want the 5 the history holds", len(got))
	}
}

// TestNATSOutage stops NATS mid-test: nodes keep serving local
// connections, /readyz and publishes answer 503, and when NATS returns the
// nodes reconnect and resubscribe by themselves; nothing the API
// acknowledged is missing from history.
func TestNATSOutage(t *testing.T) {
	ns := startNATS(t)
	a, b := startNode(t, ns, 1000), startNode(t, ns, 1000)
	s, subAck := listen(t, a, "alerts", nil)
	var acked []uint64
	for i := range 5 {
		acked = append(acked, testutil.Publish(t, b, "alerts", i))
	}
	s.waitCount(t, 5, 10*time.Second)

	ns.stop()
	waitReady(t, a, false, 10*time.Second)
	waitReady(t, b, false, 10*time.Second)
	status, body, err := testutil.APIRequest(b, http.MethodGet, "/readyz", "", nil)
	if err != nil || status != http.StatusServiceUnavailable {
		t.Fatalf("/readyz during the outage = %d %s %v, want 503", status, body, err)
	}
	status, body, err = testutil.APIRequest(b, http.MethodPost, "/api/publish", "", map[string]any{"channel": "alerts", "data": 1})
	if err != nil || status != http.StatusServiceUnavailable {
		t.Fatalf("publish during the outage = %d %s %v, want 503", status, body, err)
	}
	// Local connections are still served.
	s2 := testutil.DialWS(t, a, "", nil)
	s2.Send(`{"op":"ping","id":7}`)
	if m := s2.Expect("pong"); string(m.ID) != "7" {
		t.Fatalf("pong %s", m.Raw)
	}

	ns.start()
	waitReady(t, a, true, 20*time.Second)
	waitReady(t, b, true, 20*time.Second)
	var after []uint64
	deadline := time.Now().Add(20 * time.Second)
	for len(after) < 5 {
		off, err := testutil.PublishKey(b, "", "alerts", 100+len(after))
		if err != nil {
			if time.Now().After(deadline) {
				t.Fatalf("publish after NATS came back: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		after = append(after, off)
	}
	// The subscriber on node a was resubscribed without doing anything.
	got := s.waitCount(t, 10, 20*time.Second)
	for i, m := range got[5:] {
		if m.Offset != after[i] {
			t.Fatalf("after the outage message %d = %s, want offset %d", i, m.Raw, after[i])
		}
	}
	// Everything acknowledged is in history.
	since := subAck.Offset
	r, ack := listen(t, b, "alerts", &since)
	if ack.Recovered == nil || !*ack.Recovered {
		t.Fatalf("recovery ack %s: want recovered:true", ack.Raw)
	}
	all := append(acked, after...)
	hist := r.waitCount(t, len(all), 10*time.Second)
	for i, m := range hist[:len(all)] {
		if m.Offset != all[i] {
			t.Fatalf("history message %d = %s, want offset %d", i, m.Raw, all[i])
		}
	}
	_ = context.Background
}

// TestInterestFollowsLocalSubscribers: a node holds a NATS subscription for
// a channel only while it has local subscribers of it.
func TestInterestFollowsLocalSubscribers(t *testing.T) {
	ns := startNATS(t)
	a := startNode(t, ns, 10)
	base := ns.srv.NumSubscriptions()
	waitSubs := func(want uint32) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for ns.srv.NumSubscriptions() != want {
			if time.Now().After(deadline) {
				t.Fatalf("NATS holds %d subscriptions, want %d", ns.srv.NumSubscriptions(), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	c1 := testutil.DialWS(t, a, "", nil)
	c1.Send(`{"op":"subscribe","channel":"interest","id":1}`)
	c1.ExpectAck(1)
	waitSubs(base + 1)
	c2 := testutil.DialWS(t, a, "", nil)
	c2.Send(`{"op":"subscribe","channel":"interest","id":1}`)
	c2.ExpectAck(1)
	waitSubs(base + 1) // one NATS subscription per channel per node, not per client
	c1.Send(`{"op":"unsubscribe","channel":"interest","id":2}`)
	c1.ExpectAck(2)
	waitSubs(base + 1)
	_ = c2.Conn.Close() // the last local subscriber leaves by disconnecting
	waitSubs(base)
}

// TestRecoveredFalseAfterHistoryExpired: once every message of a channel
// has expired, a client whose since points into that lost history is told
// it missed messages.
func TestRecoveredFalseAfterHistoryExpired(t *testing.T) {
	ns := startNATS(t)
	b, err := natsbroker.New(natsbroker.Config{URLs: ns.url(), HistorySize: 100, HistoryTTL: time.Second, Name: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	n := testutil.StartNode(t, testutil.NodeOptions{Broker: b})
	since := testutil.Publish(t, n, "short", 1)
	for i := range 3 {
		testutil.Publish(t, n, "short", i+2)
	}
	time.Sleep(2500 * time.Millisecond) // past the stream's MaxAge
	_, ack := listen(t, n, "short", &since)
	if ack.Recovered == nil || *ack.Recovered {
		t.Fatalf("subscribe ack %s: want recovered:false after the history expired", ack.Raw)
	}
}
