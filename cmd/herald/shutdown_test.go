package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestSIGTERMClosesEveryClientWith1001 runs the real binary: on SIGTERM
// every client gets close 1001 within the shutdown grace, /readyz turns 503
// while it drains, and the process exits 0.
func TestSIGTERMClosesEveryClientWith1001(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the herald binary")
	}
	bin := heraldBinary(t)
	addr, apiAddr := freePort(t), freePort(t)
	cmd := exec.Command(bin, "serve", "-addr", addr, "-api-addr", apiAddr, "-shutdown-grace", "1s", "-log-level", "warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + apiAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("server never became ready")
		}
		time.Sleep(50 * time.Millisecond)
	}

	const n = 50
	conns := make([]net.Conn, n)
	for i := range conns {
		c, _, _, err := ws.Dial(context.Background(), "ws://"+addr+"/ws")
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		defer c.Close()
		if err := wsutil.WriteClientText(c, []byte(`{"op":"subscribe","channel":"news","id":1}`)); err != nil {
			t.Fatal(err)
		}
		if _, err := wsutil.ReadServerText(c); err != nil {
			t.Fatalf("ack %d: %v", i, err)
		}
		conns[i] = c
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	codes := make([]ws.StatusCode, n)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(c)
			for {
				h, err := ws.ReadHeader(br)
				if err != nil {
					return
				}
				p := make([]byte, h.Length)
				if _, err := io.ReadFull(br, p); err != nil {
					return
				}
				if h.OpCode == ws.OpClose {
					codes[i], _ = ws.ParseCloseFrameData(p)
					_ = wsutil.WriteClientMessage(c, ws.OpClose, p)
					return
				}
			}
		}()
	}
	// While it drains, readiness is withdrawn.
	sawNotReady := false
	for range 20 {
		resp, err := http.Get("http://" + apiAddr + "/readyz")
		if err != nil {
			break
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable {
			sawNotReady = true
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	wg.Wait()
	for i, code := range codes {
		if code != ws.StatusGoingAway {
			t.Errorf("client %d: close code %d, want 1001", i, code)
		}
	}
	if !sawNotReady {
		t.Error("/readyz never answered 503 during shutdown")
	}
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("exit code %d, want 0", ee.ExitCode())
		} else if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("server did not exit after SIGTERM")
	}
}

// TestSecondSignalEndsTheDrain: a second SIGTERM during a long drain makes
// the process exit at once, with code 1 (drain cut short).
func TestSecondSignalEndsTheDrain(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the herald binary")
	}
	bin := heraldBinary(t)
	addr, apiAddr := freePort(t), freePort(t)
	cmd := exec.Command(bin, "serve", "-addr", addr, "-api-addr", apiAddr, "-shutdown-grace", "30s", "-log-level", "warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	var conns []net.Conn
	deadline := time.Now().Add(10 * time.Second)
	for len(conns) < 10 {
		c, _, _, err := ws.Dial(context.Background(), "ws://"+addr+"/ws")
		if err != nil {
			if time.Now().After(deadline) {
				t.Fatalf("dial: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		defer c.Close()
		conns = append(conns, c)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The drain has started: the first client got its 1001 (and the
	// other nine are due over the next 30 s).
	time.Sleep(300 * time.Millisecond)
	gotClose := false
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if h, err := ws.ReadHeader(c); err == nil && h.OpCode == ws.OpClose {
			gotClose = true
		}
	}
	if !gotClose {
		t.Fatal("no client got close 1001 after the first SIGTERM")
	}
	sent := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("exit after the second signal: %v, want exit code 1", err)
		}
		t.Logf("exited %v after the second signal", time.Since(sent))
	case <-time.After(5 * time.Second):
		t.Fatal("still draining 5 s after the second signal (grace 30 s)")
	}
}
