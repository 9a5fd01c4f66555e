package loadtest

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

func TestConnectScenario(t *testing.T) {
	n := startHerald(t)
	r := runOK(t, Config{
		Scenario:  "connect",
		URL:       wsURL(n, "/ws"),
		Conns:     60,
		Duration:  300 * time.Millisecond,
		Settle:    100 * time.Millisecond,
		ServerPID: os.Getpid(), // the server runs in this process
	})
	if r.Opened != 60 || r.Failures != 0 || r.Connect.Count != 60 {
		t.Fatalf("opened %d, failed %d, %d connect times; want 60, 0, 60", r.Opened, r.Failures, r.Connect.Count)
	}
	if got := n.Stats().Upgrades; got != 60 {
		t.Errorf("server saw %d upgrades, want 60", got)
	}
	if r.Server == nil || r.Server.PID != os.Getpid() {
		t.Errorf("server usage %+v, want a sample of pid %d", r.Server, os.Getpid())
	}
	if r.ConnectRate <= 0 {
		t.Errorf("connect rate %v", r.ConnectRate)
	}
}

func TestEchoScenario(t *testing.T) {
	n := startHerald(t)
	r := runOK(t, Config{
		Scenario: "echo",
		URL:      wsURL(n, "/echo"),
		Conns:    8,
		InFlight: 2,
		Size:     32,
		Duration: 400 * time.Millisecond,
	})
	if r.Opened != 8 || r.Messages == 0 || r.RTT == nil || r.RTT.Count != r.Messages {
		t.Fatalf("opened %d, %d messages, rtt %+v: want 8 connections and one round trip per message", r.Opened, r.Messages, r.RTT)
	}
}

func TestEchoNoConnection(t *testing.T) {
	// A port nothing listens on: every dial is refused at once.
	r, err := Run(context.Background(), Config{Scenario: "echo", URL: "ws://127.0.0.1:1/echo", Conns: 3, Duration: time.Second, DialTimeout: time.Second})
	if !errors.Is(err, ErrNoConnections) {
		t.Fatalf("err = %v, want ErrNoConnections", err)
	}
	if r == nil || r.Failures != 3 || r.ErrorCount != 3 || len(r.Errors) == 0 {
		t.Fatalf("result %+v: want 3 failures with their error", r)
	}
}

// TestPushScenario checks the delivery accounting against a real node:
// every acknowledged publication reaches every subscriber of its channel.
func TestPushScenario(t *testing.T) {
	n := startHerald(t)
	r := runOK(t, Config{
		Scenario: "push",
		URL:      wsURL(n, "/ws"),
		Conns:    30,
		Duration: time.Second,
		Push:     PushConfig{APIURL: apiURL(n), Channels: 3, Rate: 20},
	})
	p := r.Push
	if p == nil {
		t.Fatal("no push result")
	}
	if p.Subscribers != 30 || p.Publications < 15 || p.PublishErrs != 0 {
		t.Fatalf("%d subscribers, %d publications (%d failed); want 30, >= 15, 0", p.Subscribers, p.Publications, p.PublishErrs)
	}
	want := int64(10 * p.Publications) // 10 subscribers per channel
	if p.Expected != want || p.Delivered != want || p.Lost != 0 || p.Duplicates != 0 || p.OutOfOrder != 0 {
		t.Fatalf("expected %d delivered %d lost %d dup %d ooo %d; want %d, %d, 0, 0, 0", p.Expected, p.Delivered, p.Lost, p.Duplicates, p.OutOfOrder, want, want)
	}
	if p.Latency.Count != want || p.LastDelivery.Count != int64(p.Publications) || r.Messages != want {
		t.Fatalf("latency count %d, last-delivery count %d, messages %d; want %d, %d, %d", p.Latency.Count, p.LastDelivery.Count, r.Messages, want, p.Publications, want)
	}
	if got := n.Stats().Deliveries; got != want {
		t.Errorf("server delivered %d, generator counted %d", got, want)
	}
}

// TestPushInBatches publishes through POST /api/batch (-pub-batch): the
// same accounting, every publication delivered once, batches spanning
// channels.
func TestPushInBatches(t *testing.T) {
	n := startHerald(t)
	r := runOK(t, Config{
		Scenario: "push",
		URL:      wsURL(n, "/ws"),
		Conns:    30,
		Duration: time.Second,
		Push:     PushConfig{APIURL: apiURL(n), Channels: 3, Rate: 40, Batch: 7},
	})
	p := r.Push
	if p.Subscribers != 30 || p.Publications < 28 || p.PublishErrs != 0 || r.Params.Batch != 7 {
		t.Fatalf("%d subscribers, %d publications (%d failed), batch %d; want 30, >= 28, 0, 7", p.Subscribers, p.Publications, p.PublishErrs, r.Params.Batch)
	}
	want := int64(10 * p.Publications)
	if p.Expected != want || p.Delivered != want || p.Lost != 0 || p.Duplicates != 0 || p.OutOfOrder != 0 || p.LastDelivery.Count != int64(p.Publications) {
		t.Fatalf("push %+v: want %d delivered, none lost", p, want)
	}
	if got := n.Stats().Publications; got != int64(p.Publications) {
		t.Errorf("server stored %d publications, the generator counted %d", got, p.Publications)
	}
	resp, err := http.Get(apiURL(n) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	m, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(m), `herald_api_requests_total{code="200",endpoint="/api/batch"}`) || strings.Contains(string(m), `endpoint="/api/publish"`) {
		t.Errorf("the publications did not go through /api/batch alone:\n%s", grepLines(string(m), "herald_api_requests_total"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestPushDetectsLoss runs push against a server that skips one
// publication for one subscriber.
func TestPushDetectsLoss(t *testing.T) {
	f := startFakePush(t, &fakePush{dropSeq: 3, dropSub: 1, dupSeq: -1, dupSub: -1})
	r := runOK(t, Config{
		Scenario: "push",
		URL:      f.wsURL(),
		Conns:    4,
		Duration: 500 * time.Millisecond,
		Push:     PushConfig{APIURL: f.apiURL(), Rate: 20},
	})
	p := r.Push
	if p.Publications < 5 {
		t.Fatalf("only %d publications", p.Publications)
	}
	if p.Lost != 1 || p.Duplicates != 0 || p.OutOfOrder != 0 || p.Delivered != p.Expected-1 {
		t.Fatalf("lost %d dup %d ooo %d delivered %d of %d; want exactly one lost", p.Lost, p.Duplicates, p.OutOfOrder, p.Delivered, p.Expected)
	}
	ths, _ := ParseThresholds("lost=0")
	if r.CheckThresholds(ths) {
		t.Error("lost=0 holds on a run that lost a message")
	}
}

// TestPushDetectsDuplicate runs push against a server that sends one
// publication twice to one subscriber.
func TestPushDetectsDuplicate(t *testing.T) {
	f := startFakePush(t, &fakePush{dropSeq: -1, dropSub: -1, dupSeq: 2, dupSub: 0})
	r := runOK(t, Config{
		Scenario: "push",
		URL:      f.wsURL(),
		Conns:    4,
		Duration: 500 * time.Millisecond,
		Push:     PushConfig{APIURL: f.apiURL(), Rate: 20},
	})
	p := r.Push
	if p.Duplicates != 1 || p.Lost != 0 || p.OutOfOrder != 0 || p.Delivered != p.Expected {
		t.Fatalf("dup %d lost %d ooo %d delivered %d of %d; want exactly one duplicate", p.Duplicates, p.Lost, p.OutOfOrder, p.Delivered, p.Expected)
	}
}

func TestChurnScenario(t *testing.T) {
	n := startHerald(t)
	r := runOK(t, Config{
		Scenario: "churn",
		URL:      wsURL(n, "/ws"),
		Conns:    20,
		Duration: time.Second,
		Churn:    ChurnConfig{Rate: 40, Stable: 0.5},
		Push:     PushConfig{APIURL: apiURL(n), Rate: 10},
	})
	c := r.Churn
	if c == nil || r.Push == nil {
		t.Fatalf("churn %+v push %+v: want both", c, r.Push)
	}
	if c.Stable != 10 || c.Pool != 10 || c.Failures != 0 || c.Connects < 20 {
		t.Fatalf("churn %+v: want 10 stable, 10 churned, no failure, >= 20 connects", c)
	}
	// The pool never runs dry, so every replacement closed one.
	if c.Disconnects != c.Connects || c.Connect.Count != c.Connects {
		t.Fatalf("%d connects, %d disconnects, %d connect times: want equal", c.Connects, c.Disconnects, c.Connect.Count)
	}
	if got := n.Stats().Upgrades; got != 20+c.Connects {
		t.Errorf("server saw %d upgrades, want %d", got, 20+c.Connects)
	}
	p := r.Push
	if want := int64(10 * p.Publications); p.Subscribers != 10 || p.Expected != want || p.Delivered != want || p.Lost != 0 || p.Duplicates != 0 {
		t.Fatalf("push %+v: want the 10 stable subscribers to get all %d publications", p, p.Publications)
	}
}

func TestChurnWithoutSubscribe(t *testing.T) {
	n := startHerald(t)
	r := runOK(t, Config{
		Scenario: "churn",
		URL:      wsURL(n, "/echo"),
		Conns:    10,
		Duration: 500 * time.Millisecond,
		Churn:    ChurnConfig{Rate: 20},
		Push:     PushConfig{Rate: 10}, // nothing to publish to: /echo
	})
	if r.Push != nil {
		t.Errorf("push result %+v on /echo", r.Push)
	}
	if c := r.Churn; c == nil || c.Connects == 0 || c.Failures != 0 || c.Stable != 5 {
		t.Fatalf("churn %+v", c)
	}
	if got := n.Stats().Upgrades; got != 10+r.Churn.Connects {
		t.Errorf("server saw %d upgrades, want %d", got, 10+r.Churn.Connects)
	}
}

func TestURLListRoundRobin(t *testing.T) {
	a, b := startHerald(t), startHerald(t)
	r := runOK(t, Config{
		Scenario: "connect",
		URL:      wsURL(a, "/ws") + "," + wsURL(b, "/ws"),
		Conns:    21,
		Duration: 100 * time.Millisecond,
		Settle:   10 * time.Millisecond,
	})
	if r.Opened != 21 {
		t.Fatalf("opened %d", r.Opened)
	}
	if ga, gb := a.Stats().Upgrades, b.Stats().Upgrades; ga != 11 || gb != 10 {
		t.Errorf("upgrades %d and %d, want 11 and 10", ga, gb)
	}
}

func TestPublisherRoundRobin(t *testing.T) {
	a, b := startHerald(t), startHerald(t)
	// Subscribers on node a only; publications alternate between the
	// nodes, and (no cluster) only a's reach them.
	r, err := Run(context.Background(), Config{
		Scenario: "push",
		URL:      wsURL(a, "/ws"),
		Conns:    2,
		Duration: 500 * time.Millisecond,
		Push:     PushConfig{APIURL: apiURL(a) + "," + apiURL(b), Rate: 20},
	})
	if err != nil {
		t.Fatal(err)
	}
	// Publication seq goes to endpoint seq%2: the odd ones to b.
	p := r.Push
	if onB := int64(p.Publications / 2); p.PublishErrs != 0 || p.Lost != 2*onB || p.Delivered != 2*(int64(p.Publications)-onB) {
		t.Fatalf("%d publications (%d failed), lost %d, delivered %d: want the %d made on b lost at both subscribers", p.Publications, p.PublishErrs, p.Lost, p.Delivered, onB)
	}
}

func TestProgressLine(t *testing.T) {
	n := startHerald(t)
	var buf syncBuffer
	runOK(t, Config{
		Scenario:      "echo",
		URL:           wsURL(n, "/echo"),
		Conns:         5,
		Duration:      500 * time.Millisecond,
		Progress:      &buf,
		progressEvery: 50 * time.Millisecond,
	})
	out := buf.String()
	if !strings.Contains(out, "open       5") || !strings.Contains(out, "msgs/s") || !strings.Contains(out, "p99") {
		t.Fatalf("progress output %q", out)
	}
}

// TestDeadlineStopsRun gives runs far longer than their context allows:
// they must stop within a bounded time and say the deadline passed.
func TestDeadlineStopsRun(t *testing.T) {
	n := startHerald(t)
	for _, cfg := range []Config{
		{Scenario: "push", URL: wsURL(n, "/ws"), Conns: 4, Duration: time.Minute, Push: PushConfig{APIURL: apiURL(n), Rate: 10}},
		{Scenario: "churn", URL: wsURL(n, "/ws"), Conns: 4, Duration: time.Minute, Churn: ChurnConfig{Rate: 10}},
		{Scenario: "echo", URL: wsURL(n, "/echo"), Conns: 4, Duration: time.Minute, Procs: 2, WorkerArgs: workerArgs()},
	} {
		ctx, cancel := context.WithTimeoutCause(context.Background(), 700*time.Millisecond, ErrDeadline)
		start := time.Now()
		_, err := Run(ctx, cfg)
		cancel()
		if !errors.Is(err, ErrDeadline) {
			t.Errorf("%s procs %d: err = %v, want ErrDeadline", cfg.Scenario, cfg.Procs, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s procs %d: took %v after a 700ms deadline", cfg.Scenario, cfg.Procs, d)
		}
	}
}
