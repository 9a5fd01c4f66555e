package loadtest

import (
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

func ips(t *testing.T, s string) []net.IP {
	t.Helper()
	out, err := ParseIPRange(s)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestParseIPRange(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{in: "", want: nil},
		{in: "127.0.0.2", want: []string{"127.0.0.2"}},
		{in: "127.0.0.2-127.0.0.4", want: []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}},
		{in: " 127.0.0.9 , 127.0.0.1-127.0.0.2 ", want: []string{"127.0.0.9", "127.0.0.1", "127.0.0.2"}},
		{in: "127.0.0.255-127.0.1.1", want: []string{"127.0.0.255", "127.0.1.0", "127.0.1.1"}},
		{in: "127.0.0.4-127.0.0.2", wantErr: true},
		{in: "127.0.0.1-", wantErr: true},
		{in: "localhost", wantErr: true},
		{in: "::1", wantErr: true},
		{in: "10.0.0.0-10.2.0.0", wantErr: true}, // more than 65,537 addresses
	}
	for _, tt := range tests {
		got, err := ParseIPRange(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseIPRange(%q) error %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		var s []string
		for _, ip := range got {
			if len(ip) != net.IPv4len {
				t.Errorf("ParseIPRange(%q): %v is not 4 bytes", tt.in, ip)
			}
			s = append(s, ip.String())
		}
		if !slices.Equal(s, tt.want) {
			t.Errorf("ParseIPRange(%q) = %v, want %v", tt.in, s, tt.want)
		}
	}
}

func TestPartitionIPs(t *testing.T) {
	all := ips(t, "127.0.0.2-127.0.0.254") // 253 addresses
	for _, n := range []int{1, 2, 3, 7, 253} {
		parts, err := PartitionIPs(all, n)
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		if len(parts) != n {
			t.Fatalf("n=%d: %d parts", n, len(parts))
		}
		seen := map[string]int{}
		lo, hi := len(all), 0
		for i, p := range parts {
			lo, hi = min(lo, len(p)), max(hi, len(p))
			for _, ip := range p {
				if j, dup := seen[ip.String()]; dup {
					t.Fatalf("n=%d: %v in parts %d and %d", n, ip, j, i)
				}
				seen[ip.String()] = i
			}
			// Appending to one part must not write into the next.
			if cap(p) != len(p) {
				t.Fatalf("n=%d: part %d has spare capacity", n, i)
			}
		}
		if len(seen) != len(all) || hi-lo > 1 {
			t.Fatalf("n=%d: %d addresses covered of %d, part sizes %d..%d", n, len(seen), len(all), lo, hi)
		}
	}
	if parts, err := PartitionIPs(nil, 3); err != nil || len(parts) != 3 || parts[0] != nil {
		t.Fatalf("no addresses: %v %v", parts, err)
	}
	if _, err := PartitionIPs(all[:2], 3); err == nil {
		t.Fatal("2 addresses over 3 processes: no error")
	}
}

// TestAssignments checks how a run is split over worker processes: every
// connection once, each address in one worker only, rates shared out.
func TestAssignments(t *testing.T) {
	cfg := Config{Scenario: "churn", URL: "ws://127.0.0.1:1/ws,ws://127.0.0.1:2/ws", Conns: 50000, Rate: 5, Duration: time.Second,
		SourceIPs: ips(t, "127.0.0.2-127.0.0.254"), Procs: 3, ServerPID: 42, Churn: ChurnConfig{Rate: 300}}
	if err := cfg.defaults(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	as, err := assignments(cfg, deadline, true)
	if err != nil {
		t.Fatal(err)
	}
	conns, rate := 0, 0
	owner := map[string]int{}
	global := map[int]bool{}
	for i, a := range as {
		c := a.Config
		conns += c.Conns
		rate += c.Rate
		if a.Offset != i || a.Stride != 3 || !a.Deadline.Equal(deadline) || !a.Progress {
			t.Errorf("worker %d: offset %d stride %d deadline %v progress %v", i, a.Offset, a.Stride, a.Deadline, a.Progress)
		}
		if c.Procs != 1 || c.ServerPID != 0 || c.Churn.Rate != 100 {
			t.Errorf("worker %d: procs %d server pid %d churn rate %v", i, c.Procs, c.ServerPID, c.Churn.Rate)
		}
		for _, ip := range c.SourceIPs {
			if j, ok := owner[ip.String()]; ok {
				t.Fatalf("%v shared by workers %d and %d", ip, j, i)
			}
			owner[ip.String()] = i
		}
		sh := share{Offset: a.Offset, Stride: a.Stride}
		for k := range c.Conns {
			g := sh.global(k)
			if global[g] || g >= cfg.Conns {
				t.Fatalf("worker %d: connection %d maps to %d twice or out of range", i, k, g)
			}
			global[g] = true
		}
	}
	if conns != 50000 || len(global) != 50000 || rate != 5 || len(owner) != 253 {
		t.Fatalf("conns %d (%d distinct), rate %d, %d addresses: want 50000, 5, 253", conns, len(global), rate, len(owner))
	}
}

func TestConfigDefaultsAndURLs(t *testing.T) {
	cfg := Config{Scenario: "push", URL: "ws://127.0.0.1:8080/ws, ws://127.0.0.1:9090/ws,ws://127.0.0.1:8080/ws", Conns: 3, Duration: time.Second}
	if err := cfg.defaults(); err != nil {
		t.Fatal(err)
	}
	if len(cfg.urls) != 3 || cfg.Push.APIURL != "http://127.0.0.1:8081,http://127.0.0.1:9091" {
		t.Fatalf("urls %v, api %q", cfg.urls, cfg.Push.APIURL)
	}
	sh := share{Offset: 1, Stride: 2} // connections 1, 3, 5 ...
	if got := cfg.urlOf(sh, 0).Port(); got != "9090" {
		t.Errorf("connection 1 goes to port %s, want 9090", got)
	}
	if got := cfg.urlOf(sh, 1).Port(); got != "8080" {
		t.Errorf("connection 3 goes to port %s, want 8080", got)
	}
	bad := []Config{
		{Scenario: "connect", URL: "http://127.0.0.1:1/", Conns: 1, Duration: time.Second},
		{Scenario: "connect", URL: ",", Conns: 1, Duration: time.Second},
		{Scenario: "connect", URL: "ws://127.0.0.1:1/", Conns: 2, Procs: 3, Duration: time.Second},
		{Scenario: "connect", URL: "ws://127.0.0.1:1/", Conns: 9, Procs: 3, SourceIPs: make([]net.IP, 2), Duration: time.Second},
		{Scenario: "churn", URL: "ws://127.0.0.1:1/ws", Conns: 9, Duration: time.Second},
		{Scenario: "push", URL: "ws://127.0.0.1:1/ws", Conns: 9, Duration: time.Second, Push: PushConfig{Rate: -1}},
	}
	for _, c := range bad {
		if err := c.defaults(); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
}

func TestHardDeadline(t *testing.T) {
	c := Config{Scenario: "connect", URL: "ws://127.0.0.1:1/", Conns: 50000, Duration: 20 * time.Second}
	// 10 s dial timeout + 30 s + 50 s at 1,000/s + 20 s + the stop margin
	// (30 s + 5 s for 50,000 connections).
	if got := c.HardDeadline(); got != 145*time.Second {
		t.Errorf("HardDeadline = %v, want 2m25s", got)
	}
	c.Rate = 10000
	// 10 s + 30 s + 50,000 at a quarter of 10,000/s + 20 s + 35 s.
	if got := c.HardDeadline(); got != 115*time.Second {
		t.Errorf("at 10,000/s HardDeadline = %v, want 1m55s", got)
	}
	// 600,000 at 3,000/s (bench-scale's personal phase): set-up allows
	// 800 s, longer than the 444 s that run took to connect at 1,300/s.
	c.Conns, c.Rate, c.Duration = 600000, 3000, 30*time.Second
	if got := c.HardDeadline(); got != (10+30+800+30+90)*time.Second {
		t.Errorf("600,000 at 3,000/s: HardDeadline = %v, want 16m", got)
	}
}

// The wait for reports after stop grows with the connections to close: a
// fixed 30 s failed a 600,000-connection run whose workers were still
// closing theirs ("worker 0 did not report within 30s of stop").
func TestStopMarginScalesWithConnections(t *testing.T) {
	for _, tc := range []struct {
		conns int
		want  time.Duration
	}{{0, 30 * time.Second}, {1000, 30*time.Second + 100*time.Millisecond}, {600000, 90 * time.Second}, {1000000, 130 * time.Second}} {
		c := Config{Scenario: "push", Conns: tc.conns}
		if got := c.StopMargin(); got != tc.want {
			t.Errorf("%d connections: StopMargin %v, want %v", tc.conns, got, tc.want)
		}
	}
	small := Config{Scenario: "connect", URL: "ws://127.0.0.1:1/", Conns: 1000, Duration: time.Second}
	big := small
	big.Conns, big.Rate = 600000, 1<<30 // a rate so high that set-up adds nothing measurable
	small.Rate = big.Rate
	if d := big.HardDeadline() - small.HardDeadline(); d < big.StopMargin()-small.StopMargin() {
		t.Errorf("the hard deadline grows %v from 1,000 to 600,000 connections, less than the stop margin (%v)", d, big.StopMargin()-small.StopMargin())
	}
}

func TestPushDrainAndConcurrency(t *testing.T) {
	c := Config{Scenario: "push", URL: "ws://127.0.0.1:1/ws", Conns: 1000, Rate: 1000, Duration: 10 * time.Second,
		Push: PushConfig{APIURL: "http://127.0.0.1:2"}}
	if err := c.defaults(); err != nil {
		t.Fatal(err)
	}
	if c.Push.Concurrency != 64 || c.Push.Drain != time.Second {
		t.Fatalf("defaults: concurrency %d, drain %v; want 64 and 1s", c.Push.Concurrency, c.Push.Drain)
	}
	// 10 s dial timeout + 30 s + 4 s of connections + 10 s + the drain +
	// 30.1 s (the stop margin for 1,000 connections).
	c.Push.Drain = time.Minute
	if got := c.HardDeadline(); got != 144100*time.Millisecond {
		t.Errorf("HardDeadline with a 1-minute drain = %v, want 2m24.1s", got)
	}
	if p := c.params(); p.Drain != "1m0s" || p.Concurrency != 64 {
		t.Errorf("params record drain %q, concurrency %d", p.Drain, p.Concurrency)
	}
	for _, bad := range []PushConfig{{APIURL: "http://127.0.0.1:2", Concurrency: -1}, {APIURL: "http://127.0.0.1:2", Drain: -time.Second}} {
		c := Config{Scenario: "push", URL: "ws://127.0.0.1:1/ws", Conns: 1, Duration: time.Second, Push: bad}
		if err := c.defaults(); err == nil {
			t.Errorf("%+v: accepted", bad)
		}
	}
}

func TestUnknownScenario(t *testing.T) {
	_, err := Run(t.Context(), Config{Scenario: "soak", URL: "ws://127.0.0.1:1/", Conns: 1, Duration: time.Second})
	if err == nil || !strings.Contains(err.Error(), "unknown scenario") {
		t.Fatalf("err = %v", err)
	}
}
