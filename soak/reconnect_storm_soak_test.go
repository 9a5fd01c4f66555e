//go:build soak

package soak

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// stormConn is one client of the storm: it upgrades, honouring 503 with
// Retry-After, then subscribes and reads its ack. It returns the open
// connection and when it was admitted.
func stormConn(ctx context.Context, addr string, i int, refusals *atomic.Int64, retryAfter *sync.Map) (net.Conn, time.Time, error) {
	req := "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	for ctx.Err() == nil {
		d := net.Dialer{Timeout: 30 * time.Second}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("client %d: dial: %w", i, err)
		}
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Write([]byte(req)); err != nil {
			c.Close()
			return nil, time.Time{}, fmt.Errorf("client %d: write: %w", i, err)
		}
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			c.Close()
			return nil, time.Time{}, fmt.Errorf("client %d: answer: %w", i, err)
		}
		if resp.StatusCode == http.StatusServiceUnavailable {
			c.Close()
			refusals.Add(1)
			after, err := strconv.Atoi(resp.Header.Get("Retry-After"))
			if err != nil || after < 1 {
				return nil, time.Time{}, fmt.Errorf("client %d: 503 with Retry-After %q", i, resp.Header.Get("Retry-After"))
			}
			v, _ := retryAfter.LoadOrStore(after, new(atomic.Int64))
			v.(*atomic.Int64).Add(1)
			select {
			case <-time.After(time.Duration(after) * time.Second):
			case <-ctx.Done():
			}
			continue
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			c.Close()
			return nil, time.Time{}, fmt.Errorf("client %d: status %d", i, resp.StatusCode)
		}
		admitted := time.Now()
		sub := fmt.Sprintf(`{"op":"subscribe","channel":"storm-%d","id":1}`, i%100)
		if err := ws.WriteFrame(c, ws.MaskFrame(ws.NewTextFrame([]byte(sub)))); err != nil {
			c.Close()
			return nil, time.Time{}, fmt.Errorf("client %d: subscribe: %w", i, err)
		}
		h, err := ws.ReadHeader(br)
		if err != nil {
			c.Close()
			return nil, time.Time{}, fmt.Errorf("client %d: ack: %w", i, err)
		}
		p := make([]byte, h.Length)
		if _, err := io.ReadFull(br, p); err != nil || !bytes.Contains(p, []byte(`"op":"ack"`)) {
			c.Close()
			return nil, time.Time{}, fmt.Errorf("client %d: ack %q: %v", i, p, err)
		}
		_ = c.SetDeadline(time.Time{})
		return c, admitted, nil
	}
	return nil, time.Time{}, ctx.Err()
}

// TestSoakReconnectStorm19000 runs the real binary with -upgrade-rate and
// sends 19,000 clients at it at once, as when a node restarts and every
// client it held comes back. While the storm lasts, subscribers that were
// in before it get every publication made meanwhile, exactly once and in
// order, and /readyz answers every probe; every storm client is in within
// a small multiple of the time the rate implies (clients wait the
// jittered Retry-After they are given), and never faster than the rate.
func TestSoakReconnectStorm19000(t *testing.T) {
	const (
		storm   = 19000
		steady  = 20
		rate    = 1000.0
		loops   = 2
		publish = 20 * time.Millisecond
	)
	pid, addr, apiAddr := startHerald(t, "-upgrade-rate", strconv.Itoa(int(rate)), "-loops", strconv.Itoa(loops),
		"-handshake-timeout", "30s", "-max-conns", "0")
	t.Logf("herald pid %d, api %s", pid, apiAddr)

	// Subscribers that are in before the storm.
	steadyConns := make([]*bufio.Reader, steady)
	for i := range steady {
		c, br, _, err := ws.Dial(context.Background(), "ws://"+addr+"/ws")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if br == nil {
			br = bufio.NewReader(c)
		}
		if err := ws.WriteFrame(c, ws.MaskFrame(ws.NewTextFrame([]byte(`{"op":"subscribe","channel":"live","id":1}`)))); err != nil {
			t.Fatal(err)
		}
		steadyConns[i] = br
		_ = c.SetReadDeadline(time.Now().Add(120 * time.Second))
	}
	type msg struct {
		Op     string `json:"op"`
		Offset uint64 `json:"offset"`
	}
	received := make([][]uint64, steady)
	var readers sync.WaitGroup
	for i, br := range steadyConns {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				h, err := ws.ReadHeader(br)
				if err != nil {
					return
				}
				p := make([]byte, h.Length)
				if _, err := io.ReadFull(br, p); err != nil {
					return
				}
				var m msg
				if json.Unmarshal(p, &m) == nil && m.Op == "message" {
					received[i] = append(received[i], m.Offset)
					if bytes.Contains(p, []byte(`"last"`)) {
						return
					}
				}
			}
		}()
	}
	time.Sleep(200 * time.Millisecond) // the steady subscribes are acknowledged

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	stormDone := make(chan struct{})

	// Publisher and readiness probe, while the storm lasts.
	var published []uint64
	var probes, probeFailures int
	var slowestProbe time.Duration
	var side sync.WaitGroup
	side.Add(2)
	go func() {
		defer side.Done()
		tick := time.NewTicker(publish)
		defer tick.Stop()
		for {
			select {
			case <-stormDone:
				return
			case <-tick.C:
			}
			resp, err := http.Post("http://"+apiAddr+"/api/publish", "application/json", strings.NewReader(`{"channel":"live","data":1}`))
			if err != nil {
				t.Errorf("publish during the storm: %v", err)
				return
			}
			var r struct{ Offset uint64 }
			_ = json.NewDecoder(resp.Body).Decode(&r)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("publish during the storm: status %d", resp.StatusCode)
				return
			}
			published = append(published, r.Offset)
		}
	}()
	go func() {
		defer side.Done()
		// The load generator shares the machine's two cores with the
		// server: a probe's own goroutine can be late, so the bound is
		// "answers", not a latency.
		client := http.Client{Timeout: 10 * time.Second}
		for {
			select {
			case <-stormDone:
				return
			case <-time.After(100 * time.Millisecond):
			}
			probes++
			t0 := time.Now()
			resp, err := client.Get("http://" + apiAddr + "/readyz")
			if err != nil {
				probeFailures++
				t.Logf("probe %d after %v: %v", probes, time.Since(t0), err)
				continue
			}
			resp.Body.Close()
			if d := time.Since(t0); d > slowestProbe {
				slowestProbe = d
			}
			if resp.StatusCode != http.StatusOK {
				probeFailures++
			}
		}
	}()

	// The storm runs in a child process (this test binary, as
	// TestSoakStormClients), so that its 19,000 goroutines do not starve
	// this process's publisher and probe: what those measure is the node.
	child := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestSoakStormClients$", "-test.v")
	child.Env = append(os.Environ(), "HERALD_STORM_ADDR="+addr, "HERALD_STORM_CLIENTS="+strconv.Itoa(storm))
	child.Stderr = os.Stderr
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stdin.Close(); _ = child.Wait() }()
	var report stormReport
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), "STORM "); ok {
			if err := json.Unmarshal([]byte(line), &report); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	elapsed := time.Since(start)
	close(stormDone)
	side.Wait()
	if report.Err != "" {
		t.Fatal(report.Err)
	}
	if len(report.Admitted) != storm {
		t.Fatalf("%d of %d storm clients admitted", len(report.Admitted), storm)
	}

	// The fence: a last publication, then every steady subscriber must
	// have everything published during the storm, once, in order.
	resp, err := http.Post("http://"+apiAddr+"/api/publish", "application/json", strings.NewReader(`{"channel":"live","data":"last"}`))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("last publish: %v %v", resp, err)
	}
	var r struct{ Offset uint64 }
	_ = json.NewDecoder(resp.Body).Decode(&r)
	resp.Body.Close()
	published = append(published, r.Offset)
	readers.Wait()
	for i, got := range received {
		if fmt.Sprint(got) != fmt.Sprint(published) {
			t.Fatalf("steady subscriber %d got %d publications, want the %d published during the storm, in order", i, len(got), len(published))
		}
	}
	if probeFailures > 0 {
		t.Fatalf("/readyz failed %d of %d probes during the storm", probeFailures, probes)
	}

	// Never faster than the rate (the buckets hold one second's worth),
	// and all in within a small multiple of what the rate implies.
	admitted := report.Admitted
	sort.Slice(admitted, func(i, j int) bool { return admitted[i] < admitted[j] })
	for i, at := range admitted {
		since := time.Unix(0, at).Sub(start)
		if allowed := rate*since.Seconds() + rate + loops; float64(i+1) > allowed {
			t.Fatalf("%d admitted after %v: more than -upgrade-rate allows (%.0f)", i+1, since, allowed)
		}
	}
	ideal := time.Duration(float64(storm) / rate * float64(time.Second))
	if elapsed > 2*ideal+5*time.Second {
		t.Fatalf("the storm took %v to get in; the rate implies %v", elapsed, ideal)
	}
	t.Logf("%d clients in after %v (rate implies %v); %d refusals, Retry-After %v; %d publications delivered to %d steady subscribers; %d /readyz probes all answered (slowest %v)",
		storm, elapsed.Round(time.Millisecond), ideal, report.Refusals, report.RetryAfter, len(published), steady, probes, slowestProbe.Round(time.Millisecond))
}

// stormReport is what the storm's child process tells its parent.
type stormReport struct {
	Admitted   []int64       `json:"admitted"` // Unix nanoseconds
	Refusals   int64         `json:"refusals"`
	RetryAfter map[int]int64 `json:"retry_after"` // seconds -> refusals
	Err        string        `json:"err,omitempty"`
}

// TestSoakStormClients is the storm of TestSoakReconnectStorm19000, run in
// a child process: every client at once, each honouring Retry-After, then
// holding its connection until its parent closes stdin. It skips unless
// the parent started it.
func TestSoakStormClients(t *testing.T) {
	addr := os.Getenv("HERALD_STORM_ADDR")
	n, _ := strconv.Atoi(os.Getenv("HERALD_STORM_CLIENTS"))
	if addr == "" || n == 0 {
		t.Skip("run by TestSoakReconnectStorm19000")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Second)
	defer cancel()
	var (
		refusals   atomic.Int64
		retryAfter sync.Map
		mu         sync.Mutex
		report     stormReport
		conns      []net.Conn
		wg         sync.WaitGroup
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, at, err := stormConn(ctx, addr, i, &refusals, &retryAfter)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if report.Err == "" {
					report.Err = err.Error()
				}
				cancel()
				return
			}
			report.Admitted = append(report.Admitted, at.UnixNano())
			conns = append(conns, c)
		}()
	}
	wg.Wait()
	report.Refusals = refusals.Load()
	report.RetryAfter = map[int]int64{}
	retryAfter.Range(func(k, v any) bool {
		report.RetryAfter[k.(int)] = v.(*atomic.Int64).Load()
		return true
	})
	b, _ := json.Marshal(report)
	fmt.Printf("STORM %s\n", b)
	_, _ = io.Copy(io.Discard, os.Stdin) // hold the connections until the parent is done
	for _, c := range conns {
		_ = c.Close()
	}
}
