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
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// holdStreams opens conns connections to addr, each with open, and holds
// them; it returns them for closing.
func holdStreams(t *testing.T, conns int, open func(i int) (net.Conn, error)) []net.Conn {
	t.Helper()
	held := make([]net.Conn, conns)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < conns; i += 8 {
				c, err := open(i)
				if err != nil {
					errs <- fmt.Errorf("connection %d: %w", i, err)
					return
				}
				held[i] = c
			}
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range held {
			if c != nil {
				c.Close()
			}
		}
	})
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	return held
}

// plainGET dials addr and sends GET target, reading until want appears
// (nothing when want is empty: a held poll answers later).
func plainGET(addr, target, want string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, addr); err != nil {
		c.Close()
		return nil, err
	}
	if want == "" {
		return c, nil
	}
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	var got []byte
	buf := make([]byte, 512)
	for !bytes.Contains(got, []byte(want)) {
		n, err := c.Read(buf)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("after %q: %w", got, err)
		}
		got = append(got, buf[:n]...)
	}
	_ = c.SetReadDeadline(time.Time{})
	return c, nil
}

// TestSoakIdleMemoryPerStream holds 10,000 idle subscribers of one channel
// each on the real binary with default flags, over /ws (subscribed, for
// comparison), /sse and pending /poll requests, and reports the server's
// RSS per connection (benchmarks/RESULTS.md). It asserts a bound that
// catches a regression by a large factor, as the /ws idle test does, not
// the 1 KiB target: below 1.5 KiB per connection for each.
func TestSoakIdleMemoryPerStream(t *testing.T) {
	const conns = 10000
	for _, tc := range []struct {
		name string
		open func(addr string, i int) (net.Conn, error)
	}{
		{"ws subscribed", func(addr string, i int) (net.Conn, error) {
			c, br, _, err := ws.Dial(context.Background(), "ws://"+addr+"/ws")
			if err != nil {
				return nil, err
			}
			if br != nil {
				ws.PutReader(br)
			}
			if err := ws.WriteFrame(c, ws.MaskFrame(ws.NewTextFrame([]byte(`{"op":"subscribe","channel":"idle","id":1}`)))); err != nil {
				c.Close()
				return nil, err
			}
			_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
			h, err := ws.ReadHeader(c)
			if err == nil {
				_, err = io.CopyN(io.Discard, c, h.Length)
			}
			_ = c.SetReadDeadline(time.Time{})
			if err != nil {
				c.Close()
				return nil, err
			}
			return c, nil
		}},
		{"sse", func(addr string, _ int) (net.Conn, error) {
			return plainGET(addr, "/sse?channel=idle", "event: subscribed\n")
		}},
		{"pending poll", func(addr string, _ int) (net.Conn, error) {
			return plainGET(addr, "/poll?channel=idle&timeout=5m", "")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pid, addr, apiAddr := startHerald(t)
			time.Sleep(500 * time.Millisecond)
			before := vmRSS(t, pid)
			held := holdStreams(t, conns, func(i int) (net.Conn, error) { return tc.open(addr, i) })
			// Every one is subscribed (a pending poll too) before measuring.
			deadline := time.Now().Add(20 * time.Second)
			for subscriptions(t, apiAddr) < conns {
				if time.Now().After(deadline) {
					t.Fatalf("%d of %d subscribed", subscriptions(t, apiAddr), conns)
				}
				time.Sleep(50 * time.Millisecond)
			}
			time.Sleep(2 * time.Second) // settle, as the /ws idle test does
			after := vmRSS(t, pid)
			perConn := (after - before) / conns
			t.Logf("server RSS %d KiB -> %d KiB: %d B per idle %s subscriber", before>>10, after>>10, perConn, tc.name)
			if perConn > 1536 {
				t.Fatalf("%d B of server RSS per idle %s subscriber, over the 1.5 KiB bound", perConn, tc.name)
			}
			// They are alive: one publication reaches the first of them.
			resp, err := http.Post("http://"+apiAddr+"/api/publish", "application/json", bytes.NewReader([]byte(`{"channel":"idle","data":"wake"}`)))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			_ = held[0].SetReadDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(held[0])
			var got []byte
			for !bytes.Contains(got, []byte(`"wake"`)) {
				b, err := br.ReadByte()
				if err != nil {
					t.Fatalf("%s: the publication never arrived (%q): %v", tc.name, got, err)
				}
				got = append(got, b)
			}
		})
	}
}

// subscriptions reads the node's subscription count from /api/stats.
func subscriptions(t *testing.T, apiAddr string) int {
	t.Helper()
	resp, err := http.Get("http://" + apiAddr + "/api/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s struct {
		Subscriptions int `json:"subscriptions"`
	}
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("stats %s: %v", b, err)
	}
	return s.Subscriptions
}
