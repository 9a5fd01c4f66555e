//go:build soak

package soak

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// vmRSS reads a process's resident set size from /proc.
func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if f := bytes.Fields(line); len(f) >= 2 && string(f[0]) == "VmRSS:" {
			kb, _ := strconv.ParseInt(string(f[1]), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startHerald builds and starts the real binary with default flags plus
// extra, waits until it is ready and returns its pid and addresses.
func startHerald(t *testing.T, extra ...string) (pid int, addr, apiAddr string) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "herald")
	build := exec.Command("go", "build", "-o", bin, "../cmd/herald")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("go build: %v", err)
	}
	addr, apiAddr = freeAddr(t), freeAddr(t)
	cmd := exec.Command(bin, append([]string{"serve", "-addr", addr, "-api-addr", apiAddr, "-log-level", "warn"}, extra...)...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
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
	return cmd.Process.Pid, addr, apiAddr
}

// TestSoakIdleMemoryPerConnection runs the real binary with default flags
// (heartbeats and the idle timeout on) and holds 10,000 idle /ws
// connections. It asserts a bound that catches a regression by a large
// factor, not a performance figure: below 1.5 KiB of server RSS per
// connection (about 780 B when this was written; benchmarks/RESULTS.md
// has the measured figure).
func TestSoakIdleMemoryPerConnection(t *testing.T) {
	const conns = 10000
	pid, addr, _ := startHerald(t)
	time.Sleep(500 * time.Millisecond)
	before := vmRSS(t, pid)

	held := make([]net.Conn, conns)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < conns; i += 8 {
				c, br, _, err := ws.Dial(context.Background(), "ws://"+addr+"/ws")
				if err != nil {
					errs <- fmt.Errorf("dial %d: %w", i, err)
					return
				}
				if br != nil {
					ws.PutReader(br)
				}
				held[i] = c
			}
		}()
	}
	wg.Wait()
	defer func() {
		for _, c := range held {
			if c != nil {
				c.Close()
			}
		}
	}()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	time.Sleep(2 * time.Second) // settle, as herald loadtest -scenario connect does
	after := vmRSS(t, pid)
	perConn := (after - before) / conns
	t.Logf("server RSS %d KiB -> %d KiB: %d B per idle /ws connection", before>>10, after>>10, perConn)
	if perConn > 1536 {
		t.Fatalf("%d B of server RSS per idle connection, over the 1.5 KiB bound", perConn)
	}
	// The connections are alive: one answers a ping.
	c := held[0]
	if err := ws.WriteFrame(c, ws.MaskFrame(ws.NewTextFrame([]byte(`{"op":"ping","id":1}`)))); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	h, err := ws.ReadHeader(br)
	if err != nil || h.Length > 1024 {
		t.Fatalf("ping on a held connection: %+v %v", h, err)
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(br, p); err != nil || !bytes.Contains(p, []byte(`"pong"`)) {
		t.Fatalf("ping on a held connection: %q %v", p, err)
	}
}
