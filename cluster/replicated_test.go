package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-ws/herald/broker/natsbroker"
	"github.com/herald-ws/herald/internal/testutil"
	"github.com/herald-ws/herald/server"
)

// maxResume bounds the time from killing the stream leader to the first
// publication acknowledged after it, on every node. NATS's Raft elects a
// new leader once a follower has heard nothing for its election timeout
// (4 to 9 s, random); the rest is Herald's -broker-timeout and retry.
const maxResume = 20 * time.Second

// ackedPub is a publication the API acknowledged.
type ackedPub struct {
	key    string
	offset uint64
}

// keyedPublisher publishes to one channel through one node at a steady
// rate, each publication with its own idempotency key, and retries a
// publication with the same key until the API acknowledges it.
type keyedPublisher struct {
	node    *server.Node
	name    string
	channel string

	mu       sync.Mutex
	acked    []ackedPub
	dups     int         // acknowledgements that said duplicate
	lastAck  time.Time   // when the last acknowledgement came
	ackTimes []time.Time // when each acknowledgement came
	tried    []time.Time // when the attempt each acknowledgement answered was sent
	failures int
}

func (p *keyedPublisher) run(stop <-chan struct{}, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for seq := 0; ; seq++ {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		key := fmt.Sprintf("%s-%d", p.name, seq)
		body := map[string]any{"channel": p.channel, "data": map[string]string{"k": key}, "idempotency_key": key}
		for {
			sent := time.Now()
			status, out, err := testutil.APIRequest(p.node, http.MethodPost, "/api/publish", "", body)
			var r struct {
				Offset    *uint64 `json:"offset"`
				Duplicate bool    `json:"duplicate"`
			}
			if err == nil && status == http.StatusOK && json.Unmarshal(out, &r) == nil && r.Offset != nil {
				p.mu.Lock()
				p.acked = append(p.acked, ackedPub{key, *r.Offset})
				p.lastAck = time.Now()
				p.ackTimes = append(p.ackTimes, p.lastAck)
				p.tried = append(p.tried, sent)
				if r.Duplicate {
					p.dups++
				}
				p.mu.Unlock()
				break
			}
			// 503 (nothing stored) or 504 (outcome unknown): the same key
			// again, which the stream answers with the first offset if
			// the first attempt was stored after all.
			p.mu.Lock()
			p.failures++
			p.mu.Unlock()
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func (p *keyedPublisher) snapshot() []ackedPub {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]ackedPub(nil), p.acked...)
}

// resumedAfter is how long after t the first acknowledgement of an
// attempt sent after t came (an attempt sent before may have been stored,
// and acknowledged, by the old leader just before it died).
func (p *keyedPublisher) resumedAfter(t time.Time) (time.Duration, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, sent := range p.tried {
		if sent.After(t) {
			return p.ackTimes[i].Sub(t), true
		}
	}
	return 0, false
}

// resumingSubscriber is a client that stays subscribed to a channel on one
// node: when its connection is closed (a resync, 1012) it reconnects and
// subscribes again with since = the last offset it received.
type resumingSubscriber struct {
	node    *server.Node
	channel string

	mu       sync.Mutex
	got      []ackedPub // every message received, in order (key from its data)
	resumes  int
	problems []string
	done     chan struct{}
}

func startResumingSubscriber(t *testing.T, n *server.Node, channel string, stop <-chan struct{}) *resumingSubscriber {
	t.Helper()
	s := &resumingSubscriber{node: n, channel: channel, done: make(chan struct{})}
	ready := make(chan struct{})
	go s.run(stop, ready)
	select {
	case <-ready:
	case <-time.After(20 * time.Second):
		t.Fatal("subscriber never subscribed")
	}
	return s
}

func (s *resumingSubscriber) problem(format string, a ...any) {
	s.mu.Lock()
	s.problems = append(s.problems, fmt.Sprintf(format, a...))
	s.mu.Unlock()
}

func (s *resumingSubscriber) run(stop <-chan struct{}, ready chan struct{}) {
	defer close(s.done)
	var since *uint64
	first := true
	for {
		select {
		case <-stop:
			return
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := testutil.DialWSContext(ctx, testutil.WSURL(s.node, ""), nil, nil)
		cancel()
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		s.session(c, since, stop, func() {
			if first {
				first = false
				close(ready)
			}
		})
		_ = c.Conn.Close()
		s.mu.Lock()
		if n := len(s.got); n > 0 {
			last := s.got[n-1].offset
			since = &last
		}
		s.resumes++
		s.mu.Unlock()
	}
}

// session subscribes on c and reads until the connection ends or stop.
func (s *resumingSubscriber) session(c *testutil.WSClient, since *uint64, stop <-chan struct{}, subscribed func()) {
	req := map[string]any{"op": "subscribe", "channel": s.channel, "id": 1}
	if since != nil {
		req["since"] = *since
	}
	if err := c.SendJSON(req); err != nil {
		return
	}
	ack, err := c.Next(10 * time.Second)
	switch {
	case err != nil:
		return
	case ack.Op == "error":
		time.Sleep(100 * time.Millisecond) // unavailable during an election: again
		return
	case ack.Op != "ack":
		s.problem("subscribe answered %s", ack.Raw)
		return
	case since != nil && (ack.Recovered == nil || !*ack.Recovered):
		s.problem("resubscribe with since %d: %s, want recovered:true", *since, ack.Raw)
	}
	subscribed()
	for {
		m, err := c.Next(200 * time.Millisecond)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			select {
			case <-stop:
				return
			default:
				continue
			}
		}
		if err != nil {
			return // closed (a resync) or broken: resume
		}
		if m.Op != "message" || m.Channel != s.channel {
			s.problem("unexpected frame %s", m.Raw)
			continue
		}
		var d struct {
			K string `json:"k"`
		}
		if err := json.Unmarshal(m.Data, &d); err != nil {
			s.problem("message data %s: %v", m.Raw, err)
		}
		s.mu.Lock()
		s.got = append(s.got, ackedPub{d.K, m.Offset})
		s.mu.Unlock()
	}
}

func (s *resumingSubscriber) received() []ackedPub {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ackedPub(nil), s.got...)
}

// TestReplicatedStreamSurvivesNATSServerKills runs three NATS servers (each
// its own process, JetStream on disk with sync_interval: always), Herald's
// stream with three replicas, and three Herald nodes each connected to a
// different server first. Publishers on every node publish at a steady
// rate, each publication with its own idempotency key, retrying on 503 and
// 504. The stream leader is killed with SIGKILL and restarted, then a
// follower. Afterwards: every acknowledged publication is in the history a
// client reads with since (recovered:true), and in the stream exactly once under its own offset (retries across the leader change
// produced no duplicates; five keys stored under the old leader and
// retried through other nodes under the new one are answered with their
// first offsets), and every subscriber, on every node, received
// every acknowledged publication exactly once and in offset order,
// reconnecting with since when the node made it resync. The time from the
// leader's death to the next acknowledgement on every node is measured and
// bounded by maxResume.
func TestReplicatedStreamSurvivesNATSServerKills(t *testing.T) {
	if testing.Short() {
		t.Skip("kills NATS servers; -short")
	}
	nc := startNATSCluster(t, 3)
	js := nc.jetstream()
	const channel = "replicated"
	var nodes []*server.Node
	for i := range 3 {
		b, err := natsbroker.New(natsbroker.Config{
			URLs: nc.urls(i), Replicas: 3, HistorySize: 100_000, HistoryTTL: time.Hour, Name: fmt.Sprint(t.Name(), i),
		})
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, testutil.StartNode(t, testutil.NodeOptions{Broker: b, HistorySize: 100_000}))
	}
	for _, n := range nodes {
		waitReady(t, n, true, 30*time.Second)
	}
	stop := make(chan struct{})
	stopped := false
	stopAll := func() {
		if !stopped {
			stopped = true
			close(stop)
		}
	}
	t.Cleanup(stopAll)

	var subs []*resumingSubscriber
	for i := range 6 {
		subs = append(subs, startResumingSubscriber(t, nodes[i%3], channel, stop))
	}
	pubStop := make(chan struct{})
	var pubs []*keyedPublisher
	var pubWG sync.WaitGroup
	for i, n := range nodes {
		p := &keyedPublisher{node: n, name: fmt.Sprint("node", i), channel: channel}
		pubs = append(pubs, p)
		pubWG.Add(1)
		go func() {
			defer pubWG.Done()
			p.run(pubStop, 25*time.Millisecond)
		}()
	}

	leaderOf := func() int {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			leader, current, err := streamState(js, "HERALD")
			if err == nil && current && nc.index(leader) >= 0 {
				return nc.index(leader)
			}
			if time.Now().After(deadline) {
				t.Fatalf("stream never had a leader with every replica current (leader %q, err %v)", leader, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitAcks := func(n int) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for _, p := range pubs {
			start := p.snapshot()
			for {
				now := p.snapshot()
				if len(now) >= len(start)+n {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: no progress (%d acknowledged)", p.name, len(now))
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}

	// publishKeyed publishes key through n until the API acknowledges it.
	publishKeyed := func(n *server.Node, key string) (uint64, bool) {
		t.Helper()
		body := map[string]any{"channel": channel, "data": map[string]string{"k": key}, "idempotency_key": key}
		deadline := time.Now().Add(30 * time.Second)
		for {
			status, out, err := testutil.APIRequest(n, http.MethodPost, "/api/publish", "", body)
			var r struct {
				Offset    *uint64 `json:"offset"`
				Duplicate bool    `json:"duplicate"`
			}
			if err == nil && status == http.StatusOK && json.Unmarshal(out, &r) == nil && r.Offset != nil {
				return *r.Offset, r.Duplicate
			}
			if time.Now().After(deadline) {
				t.Fatalf("publish %s: %d %s %v", key, status, out, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	waitAcks(10)
	// Keys stored under the old leader, retried under the new one below.
	var early []ackedPub
	for i := range 5 {
		key := fmt.Sprint("early-", i)
		off, _ := publishKeyed(nodes[0], key)
		early = append(early, ackedPub{key, off})
	}
	// The stream leader dies without a word.
	leader := leaderOf()
	killed := time.Now()
	nc.kill(leader)
	t.Logf("killed stream leader %s", nc.members[leader].cfg.Name)
	waitAcks(10)
	var resume time.Duration
	for _, p := range pubs {
		d, ok := p.resumedAfter(killed)
		if !ok {
			t.Fatalf("%s: no attempt sent after the kill was acknowledged", p.name)
		}
		t.Logf("%s: first acknowledgement %v after the leader was killed", p.name, d.Round(time.Millisecond))
		resume = max(resume, d)
	}
	if resume > maxResume {
		t.Fatalf("publishing resumed %v after the stream leader was killed, want within %v", resume, maxResume)
	}
	// The new leader knows the keys the old one stored: retries through
	// the other nodes are answered with the first offsets, nothing stored
	// twice.
	for i, e := range early {
		off, dup := publishKeyed(nodes[1+i%2], e.key)
		if !dup || off != e.offset {
			t.Fatalf("retry of %s after the leader change: offset %d duplicate %v, want the first offset %d as a duplicate", e.key, off, dup, e.offset)
		}
	}
	nc.start(leader)
	_ = leaderOf() // the restarted server caught up
	waitAcks(10)

	// Then a follower.
	killedLeader := leader
	leader = leaderOf()
	follower := (leader + 1) % 3
	if follower == killedLeader { // a server that has not been killed yet
		follower = (leader + 2) % 3
	}
	nc.kill(follower)
	t.Logf("killed follower %s", nc.members[follower].cfg.Name)
	waitAcks(10)
	nc.start(follower)
	_ = leaderOf()
	waitAcks(10)
	if g := runtime.NumGoroutine(); g > 8000 {
		t.Fatalf("%d goroutines at full load, want at most 8,000 (the -race limit is 8,128)", g)
	} else {
		t.Logf("%d goroutines at full load", g)
	}
	close(pubStop)
	pubWG.Wait()

	// Every acknowledged publication is in the stream once, at its offset.
	acked := append([]ackedPub(nil), early...)
	dups, failures := 0, 0
	for _, p := range pubs {
		a := p.snapshot()
		acked = append(acked, a...)
		dups += p.dups
		failures += p.failures
	}
	sort.Slice(acked, func(i, j int) bool { return acked[i].offset < acked[j].offset })
	for i := 1; i < len(acked); i++ {
		if acked[i].offset == acked[i-1].offset {
			t.Fatalf("publications %s and %s acknowledged with the same offset %d", acked[i-1].key, acked[i].key, acked[i].offset)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := js.Stream(ctx, "HERALD")
	if err != nil {
		t.Fatal(err)
	}
	subject := "herald.ch." + channel
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	if n := info.State.Subjects[subject]; n != uint64(len(acked)) {
		t.Fatalf("the stream holds %d publications of the channel, %d were acknowledged (%d retries answered as duplicates): a retry was stored twice, or something unacknowledged was stored", n, len(acked), dups)
	}
	for _, a := range acked {
		m, err := stream.GetMsg(ctx, a.offset)
		if err != nil {
			t.Fatalf("acknowledged %s at offset %d: %v", a.key, a.offset, err)
		}
		var d struct {
			K string `json:"k"`
		}
		if json.Unmarshal(m.Data, &d) != nil || d.K != a.key || m.Subject != subject {
			t.Fatalf("offset %d holds %s %s, acknowledged for %s", a.offset, m.Subject, m.Data, a.key)
		}
	}

	// And in the history a client reads through Herald, on any node.
	since := acked[0].offset - 1
	h, hack := listen(t, nodes[2], channel, &since)
	if hack.Recovered == nil || !*hack.Recovered {
		t.Fatalf("history subscribe ack %s: want recovered:true", hack.Raw)
	}
	for k, m := range h.waitCount(t, len(acked), 30*time.Second)[:len(acked)] {
		if m.Offset != acked[k].offset {
			t.Fatalf("history message %d = %s, want offset %d (%s)", k, m.Raw, acked[k].offset, acked[k].key)
		}
	}

	// Every subscriber received every acknowledged publication once, in
	// order.
	for _, s := range subs {
		deadline := time.Now().Add(30 * time.Second)
		for len(s.received()) < len(acked) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
	}
	time.Sleep(300 * time.Millisecond) // stragglers and duplicates would show now
	stopAll()
	for i, s := range subs {
		<-s.done
		got := s.received()
		s.mu.Lock()
		problems, resumes := s.problems, s.resumes
		s.mu.Unlock()
		for _, p := range problems {
			t.Errorf("subscriber %d: %s", i, p)
		}
		if len(got) != len(acked) {
			t.Fatalf("subscriber %d (node %d) received %d publications, %d were acknowledged", i, i%3, len(got), len(acked))
		}
		for k := range got {
			if got[k] != acked[k] {
				t.Fatalf("subscriber %d (node %d) message %d = %s@%d, want %s@%d (every acknowledged publication once, in offset order)", i, i%3, k, got[k].key, got[k].offset, acked[k].key, acked[k].offset)
			}
		}
		t.Logf("subscriber %d: %d publications, %d resumes", i, len(got), resumes-1)
	}
	t.Logf("%d publications acknowledged, %d failed attempts retried, %d retries answered as duplicates; resume after leader loss %v", len(acked), failures, dups, resume.Round(time.Millisecond))
}
