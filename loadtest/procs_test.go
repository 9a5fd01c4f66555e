package loadtest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// TestProcsPush runs push in two worker processes (this test binary,
// re-executed) and checks the merged accounting is exact.
func TestProcsPush(t *testing.T) {
	n := startHerald(t)
	var progress syncBuffer
	r := runOK(t, Config{
		Scenario:      "push",
		URL:           wsURL(n, "/ws"),
		Conns:         40,
		Duration:      time.Second,
		SourceIPs:     ips(t, "127.0.0.2-127.0.0.5"),
		Procs:         2,
		WorkerArgs:    workerArgs(),
		Push:          PushConfig{APIURL: apiURL(n), Channels: 2, Rate: 20},
		Progress:      &progress,
		progressEvery: 100 * time.Millisecond,
	})
	p := r.Push
	if r.Procs != 2 || r.Opened != 40 || r.Connect.Count != 40 || p.Subscribers != 40 || p.Publications < 15 || p.PublishErrs != 0 {
		t.Fatalf("procs %d opened %d connect times %d subscribers %d publications %d (%d failed)", r.Procs, r.Opened, r.Connect.Count, p.Subscribers, p.Publications, p.PublishErrs)
	}
	want := int64(20 * p.Publications)
	if p.Expected != want || p.Delivered != want || p.Lost != 0 || p.Duplicates != 0 || p.OutOfOrder != 0 || p.Latency.Count != want || p.LastDelivery.Count != int64(p.Publications) {
		t.Fatalf("push %+v: want %d delivered of %d, none lost", p, want, want)
	}
	if got := n.Stats().Deliveries; got != want {
		t.Errorf("server delivered %d, workers counted %d", got, want)
	}
	if !strings.Contains(progress.String(), "open      40") {
		t.Errorf("merged progress never showed 40 open:\n%s", progress.String())
	}
}

// TestProcsConnectSpread runs connect in three workers against two nodes:
// the round-robin over URLs is by run-wide connection number.
func TestProcsConnectSpread(t *testing.T) {
	a, b := startHerald(t), startHerald(t)
	r := runOK(t, Config{
		Scenario:   "connect",
		URL:        wsURL(a, "/ws") + "," + wsURL(b, "/ws"),
		Conns:      31,
		Duration:   200 * time.Millisecond,
		Settle:     50 * time.Millisecond,
		SourceIPs:  ips(t, "127.0.0.2-127.0.0.4"),
		Procs:      3,
		WorkerArgs: workerArgs(),
	})
	if r.Opened != 31 || r.Failures != 0 || r.Connect.Count != 31 || r.ConnectRate <= 0 {
		t.Fatalf("opened %d failed %d connect times %d rate %v", r.Opened, r.Failures, r.Connect.Count, r.ConnectRate)
	}
	if ga, gb := a.Stats().Upgrades, b.Stats().Upgrades; ga != 16 || gb != 15 {
		t.Errorf("upgrades %d and %d, want 16 and 15", ga, gb)
	}
}

func TestProcsEcho(t *testing.T) {
	n := startHerald(t)
	r := runOK(t, Config{
		Scenario:   "echo",
		URL:        wsURL(n, "/echo"),
		Conns:      6,
		Duration:   300 * time.Millisecond,
		Procs:      2,
		WorkerArgs: workerArgs(),
	})
	if r.Opened != 6 || r.Messages == 0 || r.RTT.Count != r.Messages {
		t.Fatalf("opened %d messages %d rtt count %d", r.Opened, r.Messages, r.RTT.Count)
	}
}

func TestProcsChurn(t *testing.T) {
	n := startHerald(t)
	r := runOK(t, Config{
		Scenario:   "churn",
		URL:        wsURL(n, "/ws"),
		Conns:      20,
		Duration:   time.Second,
		Procs:      2,
		WorkerArgs: workerArgs(),
		Churn:      ChurnConfig{Rate: 40},
		Push:       PushConfig{APIURL: apiURL(n), Rate: 10},
	})
	c, p := r.Churn, r.Push
	if c.Stable != 10 || c.Pool != 10 || c.Connects < 20 || c.Failures != 0 || c.Disconnects != c.Connects {
		t.Fatalf("churn %+v", c)
	}
	if got := n.Stats().Upgrades; got != 20+c.Connects {
		t.Errorf("server saw %d upgrades, want %d", got, 20+c.Connects)
	}
	if want := int64(10 * p.Publications); p.Expected != want || p.Delivered != want || p.Lost != 0 {
		t.Fatalf("push %+v", p)
	}
}

func TestProcsWorkerFails(t *testing.T) {
	start := time.Now()
	_, err := Run(context.Background(), Config{Scenario: "connect", URL: "ws://127.0.0.1:1/", Conns: 2, Duration: time.Second, Procs: 2, WorkerArgs: []string{"/bin/false"}})
	if !errors.Is(err, ErrWorker) {
		t.Fatalf("err = %v, want ErrWorker", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v to notice", d)
	}
}

// serveWorker runs an assignment in this process with pipes for stdin and
// stdout, as a worker process would.
func serveWorker(t *testing.T, a *Assignment) (stdin *io.PipeWriter, lines <-chan string, done <-chan error) {
	t.Helper()
	b, _ := json.Marshal(a)
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		in := bufio.NewReader(inR)
		a, err := ReadAssignment(in)
		if err == nil {
			err = a.Serve(context.Background(), in, outW)
		}
		outW.Close()
		errc <- err
	}()
	lc := make(chan string, 16)
	go func() {
		defer close(lc)
		sc := bufio.NewScanner(outR)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			lc <- sc.Text()
		}
	}()
	go func() { _, _ = inW.Write(append(b, '\n')) }()
	return inW, lc, errc
}

func nextLine(t *testing.T, lines <-chan string) string {
	t.Helper()
	select {
	case l := <-lines:
		return l
	case <-time.After(10 * time.Second):
		t.Fatal("no line from the worker")
	}
	return ""
}

func TestWorkerExitsWhenParentGoes(t *testing.T) {
	n := startHerald(t)
	cfg := Config{Scenario: "connect", URL: wsURL(n, "/ws"), Conns: 4, Duration: time.Minute}
	stdin, lines, done := serveWorker(t, &Assignment{Config: cfg, Offset: 0, Stride: 1, Deadline: time.Now().Add(time.Minute)})
	if l := nextLine(t, lines); l != "ready 4" {
		t.Fatalf("first line %q, want ready 4", l)
	}
	stdin.Write([]byte("go\n"))
	stdin.Close() // the parent goes away
	select {
	case err := <-done:
		if !errors.Is(err, ErrParentGone) {
			t.Fatalf("Serve = %v, want ErrParentGone", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("worker still running 10 s after its parent went away")
	}
}

func TestWorkerDeadline(t *testing.T) {
	n := startHerald(t)
	cfg := Config{Scenario: "push", URL: wsURL(n, "/ws"), Conns: 2, Duration: time.Minute, Push: PushConfig{APIURL: apiURL(n)}}
	start := time.Now()
	_, lines, done := serveWorker(t, &Assignment{Config: cfg, Offset: 0, Stride: 1, Deadline: time.Now().Add(500 * time.Millisecond)})
	if l := nextLine(t, lines); l != "ready 2" {
		t.Fatalf("first line %q, want ready 2", l)
	}
	// Never told go or stop: the deadline ends it, and it still reports.
	if l := nextLine(t, lines); !strings.HasPrefix(l, "result {") {
		t.Fatalf("line %q, want a result", l)
	}
	if err := <-done; !errors.Is(err, ErrDeadline) {
		t.Fatalf("Serve = %v, want ErrDeadline", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestReadAssignmentRejects(t *testing.T) {
	for _, in := range []string{"", "not json\n", `{"offset":2,"stride":2,"deadline":"2030-01-01T00:00:00Z"}` + "\n", `{"config":{"Scenario":"connect","URL":"ws://x:1/","Conns":0},"stride":1,"deadline":"2030-01-01T00:00:00Z"}` + "\n"} {
		if _, err := ReadAssignment(bufio.NewReader(strings.NewReader(in))); err == nil {
			t.Errorf("ReadAssignment(%q): no error", in)
		}
	}
}
