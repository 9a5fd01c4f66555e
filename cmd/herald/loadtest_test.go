package main

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLoadtestRefusesBeforeTheRun: what would make the run useless is a
// one-line error and exit 2 at once, and an -out path that cannot be
// written is found before the run, not after it (the old code ran first
// and lost the figures).
func TestLoadtestRefusesBeforeTheRun(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-scenario", "push", "-url", "ws://127.0.0.1:1/ws", "-api-url", "127.0.0.1:8081"}, `herald loadtest: -api-url "127.0.0.1:8081" is not a URL with a scheme: write http://127.0.0.1:8081`},
		{[]string{"-url", "127.0.0.1:8080/echo"}, `herald loadtest: url "127.0.0.1:8080/echo"`},
		{[]string{"-out", filepath.Join(dir, "missing", "r.json")}, "herald loadtest: -out: open " + filepath.Join(dir, "missing", "r.json") + ": no such file or directory"},
		{[]string{"-duration", "10"}, `herald loadtest: -duration: "10" needs a unit, e.g. 10s`},
	} {
		start := time.Now()
		_, stderr, code := runHerald(t, nil, append([]string{"loadtest", "-conns", "1"}, c.args...)...)
		if code != 2 || strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and one line starting %q", c.args, code, stderr, c.want)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%v: took %v, want a refusal before any run", c.args, d)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("left files behind: %v", entries)
	}
}

// TestLoadtestFailedPublishesExit1 runs herald serve with an API key and a
// push load test with the wrong one: every publication is refused, the
// run exits 1 and says why, and -out records the run's parameters, start
// time and version (the old code exited 0 and recorded neither).
func TestLoadtestFailedPublishesExit1(t *testing.T) {
	bin := heraldBinary(t)
	addr, apiAddr := freePort(t), freePort(t)
	srv := exec.Command(bin, "serve", "-addr", addr, "-api-addr", apiAddr, "-api-key", "right", "-log-level", "error")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; {
		if resp, err := http.Get("http://" + apiAddr + "/readyz"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("server did not come up")
		}
		time.Sleep(50 * time.Millisecond)
	}
	out := filepath.Join(t.TempDir(), "r.json")
	args := []string{"loadtest", "-scenario", "push", "-url", "ws://" + addr + "/ws", "-api-url", "http://" + apiAddr,
		"-api-key", "Zq9-not-the-key", "-conns", "3", "-pub-rate", "10", "-duration", "500ms", "-out", out}
	stdout, stderr, code := runHerald(t, nil, args...)
	if code != 1 {
		t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "herald loadtest: FAIL: ") || !strings.Contains(stderr, "publications failed (-assert 'publish_errors<N' allows some)") {
		t.Errorf("stderr %q does not say the publications failed", stderr)
	}
	if !strings.Contains(stdout, "publish: POST http://"+apiAddr+"/api/publish: HTTP 401") {
		t.Errorf("table does not show the refusal:\n%s", stdout)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Version string    `json:"herald_version"`
		Started time.Time `json:"started"`
		Params  struct {
			Scenario string  `json:"scenario"`
			PubRate  float64 `json:"pub_rate"`
			APIKey   string  `json:"api_key"`
			Duration string  `json:"duration"`
		} `json:"params"`
		Errors []string `json:"errors"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if res.Version == "" || time.Since(res.Started) > time.Minute || res.Params.Scenario != "push" || res.Params.PubRate != 10 ||
		res.Params.Duration != "500ms" || res.Params.APIKey != "(set)" || len(res.Errors) == 0 {
		t.Errorf("-out JSON lacks the run's parameters: %s", b)
	}
	if strings.Contains(string(b), "Zq9-not-the-key") {
		t.Errorf("-out JSON holds the API key: %s", b)
	}
	// A threshold that allows the failures makes the same run pass.
	_, stderr, code = runHerald(t, nil, append(args, "-assert", "publish_errors<1000")...)
	if code != 0 {
		t.Errorf("with -assert publish_errors<1000: exit %d, stderr %q", code, stderr)
	}
}
