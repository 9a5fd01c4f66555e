//go:build soak

package soak

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// TestSoakFreshChannelsAreForgottenAndMemoryReturned: anonymous clients
// subscribe to 100,000 fresh channel names and leave. The node must forget
// every channel (it holds no history for them) and hand the memory back to
// the operating system: the real binary's RSS, read from /proc, falls back
// to within a quarter of its growth. Before, every such channel kept a
// preallocated 9 KB history ring for a minute (about 1 GB for this test).
func TestSoakFreshChannelsAreForgottenAndMemoryReturned(t *testing.T) {
	const conns, perConn = 100, 1000
	pid, addr, apiAddr := startHerald(t, "-max-channels-per-conn", fmt.Sprint(perConn))
	time.Sleep(500 * time.Millisecond)
	before := vmRSS(t, pid)

	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- subscribeFresh(addr, i, perConn)
		}()
	}
	// Sample the peak while the channels are held.
	peak := before
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case <-time.After(20 * time.Millisecond):
			peak = max(peak, vmRSS(t, pid))
		}
	}
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// Every client has left: nothing may stay behind, and the memory goes back.
	deadline := time.Now().Add(30 * time.Second)
	var channels int64
	var after int64
	for {
		channels = stat(t, apiAddr, "channels")
		after = vmRSS(t, pid)
		if channels == 0 && after-before <= (peak-before)/4 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("server RSS %d KiB before, %d KiB at the peak, %d KiB after the clients left; %d channels held", before>>10, peak>>10, after>>10, channels)
	if channels != 0 {
		t.Fatalf("%d channels still held after every subscriber left", channels)
	}
	if peak-before < 8<<20 {
		t.Fatalf("RSS grew only %d KiB: the test did not create the channels it meant to", (peak-before)>>10)
	}
	if after-before > (peak-before)/4 {
		t.Fatalf("RSS %d KiB after the clients left, %d KiB above the start: the memory of forgotten channels was not returned (peak %d KiB)", after>>10, (after-before)>>10, peak>>10)
	}
}

// subscribeFresh opens one /ws connection, pipelines n subscribes to
// channels nobody else uses, reads every ack and closes.
func subscribeFresh(addr string, conn, n int) error {
	c, br, _, err := ws.Dial(context.Background(), "ws://"+addr+"/ws")
	if err != nil {
		return err
	}
	defer c.Close()
	if br == nil {
		br = bufio.NewReader(c)
	}
	var buf bytes.Buffer
	for j := range n {
		p := fmt.Sprintf(`{"op":"subscribe","channel":"fresh-%d-%d","id":%d}`, conn, j, j)
		if err := ws.WriteFrame(&buf, ws.MaskFrame(ws.NewTextFrame([]byte(p)))); err != nil {
			return err
		}
	}
	if _, err := c.Write(buf.Bytes()); err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
	for range n {
		h, err := ws.ReadHeader(br)
		if err != nil {
			return fmt.Errorf("connection %d: %w", conn, err)
		}
		p := make([]byte, h.Length)
		if _, err := io.ReadFull(br, p); err != nil {
			return err
		}
		if !bytes.Contains(p, []byte(`"op":"ack"`)) {
			return fmt.Errorf("connection %d: %s", conn, p)
		}
	}
	return nil
}

// stat reads one figure of GET /api/stats.
func stat(t *testing.T, apiAddr, name string) int64 {
	t.Helper()
	resp, err := http.Get("http://" + apiAddr + "/api/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]int64
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m[name]
}
