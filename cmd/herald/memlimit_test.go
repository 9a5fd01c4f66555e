package main

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"testing"
	"time"
)

// TestMemoryLimitFlagSetsTheRuntimeLimit: -memory-limit 64MiB becomes the
// Go runtime's soft memory limit, as the process itself reports it
// (go_gc_gomemlimit_bytes on /metrics).
func TestMemoryLimitFlagSetsTheRuntimeLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the herald binary")
	}
	bin := heraldBinary(t)
	addr, apiAddr := freePort(t), freePort(t)
	cmd := exec.Command(bin, "serve", "-addr", addr, "-api-addr", apiAddr, "-log-level", "warn", "-memory-limit", "64MiB")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	limit := regexp.MustCompile(`(?m)^go_gc_gomemlimit_bytes (\S+)$`)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + apiAddr + "/metrics")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if m := limit.FindSubmatch(body); m != nil {
				if string(m[1]) != "6.7108864e+07" {
					t.Fatalf("go_gc_gomemlimit_bytes = %s, want 64 MiB (6.7108864e+07)", m[1])
				}
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no go_gc_gomemlimit_bytes on /metrics (err %v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
