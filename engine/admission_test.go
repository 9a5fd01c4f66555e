package engine_test

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/herald-ws/herald/internal/testutil"
)

// upgradeFrom sends an upgrade request for /echo from local (nil: any
// address) and returns the server's answer. The connection is closed by
// the caller (a 101 leaves it open for echoing).
func upgradeFrom(t *testing.T, addr string, local net.Addr) (*http.Response, net.Conn) {
	t.Helper()
	d := net.Dialer{LocalAddr: local, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	req := "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatalf("write: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		_ = c.Close()
		t.Fatalf("read answer: %v", err)
	}
	_ = c.SetDeadline(time.Time{})
	return resp, c
}

func from(ip string) net.Addr { return &net.TCPAddr{IP: net.ParseIP(ip)} }

// TestMaxConnsPerIP: past the limit an address gets 429 while another
// address is still admitted; closing connections gives the count back, and
// an address with no connections left holds no entry.
func TestMaxConnsPerIP(t *testing.T) {
	srv := testutil.Start(t, testutil.Options{MaxConnsPerIP: 3})
	addr := srv.Addr().String()
	var open []net.Conn
	for range 3 {
		resp, c := upgradeFrom(t, addr, from("127.0.0.1"))
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("connection within the limit got %d", resp.StatusCode)
		}
		open = append(open, c)
	}
	resp, c := upgradeFrom(t, addr, from("127.0.0.1"))
	_ = c.Close()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("4th connection from one address got %d, want 429", resp.StatusCode)
	}
	resp, other := upgradeFrom(t, addr, from("127.0.0.2"))
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("another address got %d, want 101", resp.StatusCode)
	}
	if a := srv.Admission(); a.RefusedPerIP != 1 || a.Addresses != 2 {
		t.Fatalf("admission = %+v, want 1 refusal and 2 addresses", a)
	}
	for _, c := range open {
		_ = c.Close()
	}
	waitFor(t, 5*time.Second, func() bool { return srv.Admission().Addresses == 1 })
	_ = other.Close()
	waitFor(t, 5*time.Second, func() bool { return srv.Admission().Addresses == 0 })
	for range 3 { // the count was given back
		resp, c := upgradeFrom(t, addr, from("127.0.0.1"))
		_ = c.Close()
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("after the others closed, a connection got %d", resp.StatusCode)
		}
	}
}

// TestUpgradeRateStorm: a storm of clients that honour Retry-After all get
// in, never faster than the rate allows, and the refusals carry a
// Retry-After spread over more than one value.
func TestUpgradeRateStorm(t *testing.T) {
	const (
		clients = 150
		rate    = 60.0
		loops   = 2
	)
	srv := testutil.Start(t, testutil.Options{UpgradeRate: rate, Loops: loops})
	addr := srv.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var (
		mu       sync.Mutex
		retries  = map[int]int{}
		admitted []time.Time
		wg       sync.WaitGroup
	)
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				resp, c := upgradeFrom(t, addr, nil)
				if resp.StatusCode == http.StatusSwitchingProtocols {
					mu.Lock()
					admitted = append(admitted, time.Now())
					mu.Unlock()
					<-ctx.Done()
					_ = c.Close()
					return
				}
				_ = c.Close()
				if resp.StatusCode != http.StatusServiceUnavailable {
					t.Errorf("refusal status %d, want 503", resp.StatusCode)
					return
				}
				after, err := strconv.Atoi(resp.Header.Get("Retry-After"))
				if err != nil || after < 1 || after > 60 {
					t.Errorf("Retry-After %q, want 1..60 seconds", resp.Header.Get("Retry-After"))
					return
				}
				mu.Lock()
				retries[after]++
				mu.Unlock()
				select {
				case <-time.After(time.Duration(after) * time.Second):
				case <-ctx.Done():
				}
			}
		}()
	}
	deadline := time.Now().Add(50 * time.Second)
	for {
		mu.Lock()
		n := len(admitted)
		mu.Unlock()
		if n == clients || time.Now().After(deadline) || t.Failed() {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	if len(admitted) != clients {
		t.Fatalf("%d of %d clients admitted within 50 s", len(admitted), clients)
	}
	// The bucket holds one second's worth per loop: no more than that plus
	// the rate times the elapsed time can have been admitted at any moment.
	for i, at := range admitted {
		allowed := rate*at.Sub(start).Seconds() + rate + loops
		if float64(i+1) > allowed {
			t.Fatalf("%d admitted after %v: more than the rate allows (%.0f)", i+1, at.Sub(start), allowed)
		}
	}
	if len(retries) < 2 {
		t.Fatalf("Retry-After values %v: not jittered", retries)
	}
	if a := srv.Admission(); a.RefusedRate == 0 {
		t.Fatal("no refusal counted")
	}
	t.Logf("all %d in after %v; Retry-After values %v", clients, admitted[len(admitted)-1].Sub(start), retries)
}
