package packaging

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// need returns the path of tool, or skips the test saying why; with
// HERALD_REQUIRE_PACKAGING=1 a missing tool fails it instead.
func need(t *testing.T, tool, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err == nil {
		return p
	}
	msg := fmt.Sprintf("%s not found (Debian package %s; scripts/install-test-deps.sh installs it)", tool, pkg)
	if os.Getenv("HERALD_REQUIRE_PACKAGING") == "1" {
		t.Fatal(msg + "; HERALD_REQUIRE_PACKAGING=1 requires it")
	}
	t.Skip(msg)
	return ""
}

// cannot fails the test with HERALD_REQUIRE_PACKAGING=1 and skips it
// otherwise: the tool is there but this machine cannot do what it needs.
func cannot(t *testing.T, format string, a ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, a...)
	if os.Getenv("HERALD_REQUIRE_PACKAGING") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// buildStatic builds ./cmd/herald without cgo, as the Dockerfile does.
func buildStatic(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "herald")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "../cmd/herald")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// unitDirectives parses herald.service into section.key -> values.
func unitDirectives(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open("herald.service")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("herald.service: %q is not key=value", line)
			}
			out[section+"."+k] = append(out[section+"."+k], v)
		}
	}
	return out
}

// TestUnitHardening checks what the unit promises: restarts, the open
// files limit, the hardening directives, the environment file, and a stop
// timeout above the default shutdown grace plus Herald's 5 s margin.
func TestUnitHardening(t *testing.T) {
	d := unitDirectives(t)
	want := map[string]string{
		"Service.ExecStart":               "/usr/local/bin/herald serve",
		"Service.EnvironmentFile":         "-/etc/herald/herald.env",
		"Service.Restart":                 "on-failure",
		"Service.LimitNOFILE":             "1048576",
		"Service.DynamicUser":             "yes",
		"Service.NoNewPrivileges":         "yes",
		"Service.CapabilityBoundingSet":   "",
		"Service.AmbientCapabilities":     "",
		"Service.ProtectSystem":           "strict",
		"Service.ProtectHome":             "yes",
		"Service.PrivateTmp":              "yes",
		"Service.PrivateDevices":          "yes",
		"Service.RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"Service.SystemCallFilter":        "@system-service",
		"Service.SystemCallArchitectures": "native",
		"Service.MemoryDenyWriteExecute":  "yes",
		"Service.RestrictNamespaces":      "yes",
		"Service.RestrictSUIDSGID":        "yes",
		"Service.LockPersonality":         "yes",
		"Service.ProtectKernelTunables":   "yes",
		"Service.ProtectControlGroups":    "yes",
		"Service.KillSignal":              "SIGTERM",
		"Install.WantedBy":                "multi-user.target",
		"Unit.After":                      "network-online.target",
		"Service.ProtectKernelModules":    "yes",
		"Service.RestrictRealtime":        "yes",
		"Service.SystemCallErrorNumber":   "EPERM",
		"Service.ProtectClock":            "yes",
		"Service.ProtectHostname":         "yes",
		"Service.ProtectKernelLogs":       "yes",
		"Service.UMask":                   "0077",
		"Service.Type":                    "exec",
		"Service.RestartSec":              "2s",
		"Service.TimeoutStopSec":          "30s",
		"Service.ProcSubset":              "pid",
		"Service.ProtectProc":             "invisible",
		"Service.DevicePolicy":            "closed",
		"Service.RemoveIPC":               "yes",
		"Unit.Wants":                      "network-online.target",
		"Unit.Description":                "Herald WebSocket push server",
		"Unit.Documentation":              "https://github.com/herald-ws/herald/blob/main/docs/operations.md",
	}
	for k, v := range want {
		got, ok := d[k]
		if !ok || len(got) != 1 || got[0] != v {
			t.Errorf("%s = %q, want exactly %q", k, got, v)
		}
		delete(d, k)
	}
	for k, v := range d {
		t.Errorf("%s = %q is not checked by this test; add it to the table", k, v)
	}
	stop, err := time.ParseDuration(want["Service.TimeoutStopSec"])
	if err != nil || stop <= 5*time.Second+5*time.Second {
		t.Errorf("TimeoutStopSec %v leaves no room for the 5s shutdown grace and its 5s margin", stop)
	}
}

// TestUnitVerifies runs systemd-analyze verify on the unit, with ExecStart
// pointing at a freshly built binary (verify checks that it exists). Any
// output is a failure: verify exits 0 on directives it ignores.
func TestUnitVerifies(t *testing.T) {
	analyze := need(t, "systemd-analyze", "systemd")
	dir := t.TempDir()
	bin := buildStatic(t, dir)
	b, err := os.ReadFile("herald.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := strings.Replace(string(b), "ExecStart=/usr/local/bin/herald ", "ExecStart="+bin+" ", 1)
	path := filepath.Join(dir, "herald.service")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	// The check is real: a directive systemd cannot parse is reported.
	bad := filepath.Join(dir, "bad.service")
	if err := os.WriteFile(bad, []byte(strings.Replace(unit, "Restart=on-failure", "Restart=sometimes", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, _ := exec.Command(analyze, "verify", bad).CombinedOutput(); !strings.Contains(string(out), "sometimes") {
		t.Fatalf("systemd-analyze verify did not report a bad Restart=: %s", out)
	}
}

// runtimeStage is the Dockerfile's final stage with the binary (and CA
// bundle) taken from the build context instead of the build stage: no
// image registry is reachable here to pull the Go builder image, so the
// build stage is replaced by `go build` on the host with the same flags.
func runtimeStage(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	_, stage, ok := strings.Cut(string(b), "\nFROM scratch AS runtime\n")
	if !ok {
		t.Fatal("Dockerfile has no 'FROM scratch AS runtime' stage")
	}
	for _, c := range []string{"COPY --from=build /out/herald /herald", "COPY --from=build /etc/ssl/certs/ca-certificates.crt"} {
		if !strings.Contains(stage, c) {
			t.Fatalf("runtime stage lacks %q", c)
		}
	}
	stage = strings.Replace(stage, "COPY --from=build /out/herald /herald", "COPY herald /herald", 1)
	stage = strings.Replace(stage, "COPY --from=build /etc/ssl/certs/ca-certificates.crt", "COPY ca-certificates.crt", 1)
	return "FROM scratch\n" + stage
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestContainerImage builds the image's runtime stage with podman, runs it
// as the image says (uid 65532, HERALD_* defaults), serves a subscriber a
// publication through the API key the image requires, and stops it with
// SIGTERM: exit 0 after a graceful shutdown.
func TestContainerImage(t *testing.T) {
	podman := need(t, "podman", "podman")
	if testing.Short() {
		t.Skip("builds and runs a container")
	}
	dir := t.TempDir()
	buildStatic(t, dir)
	ca, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err != nil {
		ca = []byte{} // the image copies it; an empty bundle is fine for this test
	}
	if err := os.WriteFile(filepath.Join(dir, "ca-certificates.crt"), ca, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Containerfile"), []byte(runtimeStage(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var global []string // --runtime runc, when crun cannot run containers here
	pod := func(args ...string) (string, error) {
		out, err := exec.CommandContext(ctx, podman, append(append([]string(nil), global...), args...)...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	runtimeFailed := func(out string) bool {
		return strings.Contains(out, "OCI runtime") || strings.Contains(out, "OCI permission") || strings.Contains(out, "crun:")
	}
	tag := fmt.Sprintf("localhost/herald-packaging-test:%d", os.Getpid())
	if out, err := pod("build", "-q", "-t", tag, "-f", filepath.Join(dir, "Containerfile"), dir); err != nil {
		cannot(t, "podman cannot build images here: %v: %s", err, out)
	}
	t.Cleanup(func() { _, _ = exec.Command(podman, "rmi", "-f", tag).CombinedOutput() })
	if user, err := pod("image", "inspect", "--format", "{{.Config.User}}", tag); err != nil || user != "65532:65532" {
		t.Fatalf("image user %q (%v), want 65532:65532", user, err)
	}

	// Host networking on free loopback ports: nothing here may listen
	// elsewhere, and other tests share the machine. The open-files and
	// process limits are set explicitly because podman's defaults exceed
	// what this sandbox allows; production needs --ulimit nofile only.
	var lim syscall.Rlimit
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	api := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	name := fmt.Sprintf("herald-packaging-test-%d", os.Getpid())
	run := []string{"run", "-d", "--name", name, "--network", "host",
		"--ulimit", fmt.Sprintf("nofile=%d:%d", lim.Max, lim.Max), "--ulimit", "nproc=4096:4096",
		"-e", "HERALD_ADDR=" + addr, "-e", "HERALD_API_KEY=test-key", "-e", "HERALD_SHUTDOWN_GRACE=1s", tag}
	// The image's own HERALD_API_ADDR (:8081, every interface) needs the
	// key: first check that the image refuses to start without it.
	refusal := []string{"run", "--rm", "--network", "host", "--ulimit", fmt.Sprintf("nofile=%d:%d", lim.Max, lim.Max), "--ulimit", "nproc=4096:4096",
		"-e", "HERALD_ADDR=" + addr, tag}
	out, err := pod(refusal...)
	if runtimeFailed(out) {
		// crun fails on hosts with hybrid cgroups (v1 and v2); runc copes.
		if _, lerr := exec.LookPath("runc"); lerr != nil {
			cannot(t, "podman cannot run containers here with its default runtime (%s), and runc (Debian package runc) is not installed", out)
		}
		global = []string{"--runtime", "runc"}
		t.Logf("podman's default runtime failed (%s); using runc", out)
		if out, err = pod(refusal...); runtimeFailed(out) {
			cannot(t, "podman cannot run containers here, with crun nor runc: %s", out)
		}
	}
	if err == nil || !strings.Contains(out, "HERALD_API_ADDR :8081 is not a loopback address") {
		t.Fatalf("image without HERALD_API_KEY: %v: %s; want a refusal naming HERALD_API_ADDR", err, out)
	}
	run = append(run[:len(run)-1], "-e", "HERALD_API_ADDR="+api, tag)
	if out, err := pod(run...); err != nil {
		cannot(t, "podman cannot run containers here: %v: %s", err, out)
	}
	t.Cleanup(func() {
		_, _ = exec.Command(podman, append(append([]string(nil), global...), "rm", "-f", name)...).CombinedOutput()
	})

	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + api + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			logs, _ := pod("logs", name)
			t.Fatalf("container not ready: %v\n%s", err, logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The process's uid, seen from the host (scratch has no ps for
	// podman top): rootful podman, so no user namespace maps it.
	if pid, err := pod("inspect", "--format", "{{.State.Pid}}", name); err != nil {
		t.Errorf("container pid: %v %s", err, pid)
	} else if st, err := os.ReadFile("/proc/" + pid + "/status"); err != nil {
		t.Errorf("process status: %v", err)
	} else if !strings.Contains(string(st), "\nUid:\t65532\t65532\t65532\t65532\n") {
		t.Errorf("process does not run as uid 65532:\n%s", st)
	}

	conn, _, _, err := ws.Dial(ctx, "ws://"+addr+"/ws")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if err := wsutil.WriteClientText(conn, []byte(`{"op":"subscribe","channel":"news","id":1}`)); err != nil {
		t.Fatal(err)
	}
	if ack, err := wsutil.ReadServerText(conn); err != nil || !strings.Contains(string(ack), `"op":"ack"`) {
		t.Fatalf("subscribe: %s, %v", ack, err)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+api+"/api/publish", strings.NewReader(`{"channel":"news","data":"from the container"}`))
	req.Header.Set("Authorization", "Bearer test-key")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("publish: HTTP %d", resp.StatusCode)
	}
	if msg, err := wsutil.ReadServerText(conn); err != nil || !strings.Contains(string(msg), `"data":"from the container"`) {
		t.Fatalf("message: %s, %v", msg, err)
	}

	if out, err := pod("stop", "-t", "15", name); err != nil {
		t.Fatalf("podman stop: %v: %s", err, out)
	}
	if code, err := pod("inspect", "--format", "{{.State.ExitCode}}", name); err != nil || code != "0" {
		logs, _ := pod("logs", name)
		t.Fatalf("exit code %q (%v), want 0 after SIGTERM\n%s", code, err, logs)
	}
	if logs, _ := pod("logs", name); !strings.Contains(logs, `msg=stopped`) {
		t.Errorf("no graceful shutdown in the logs:\n%s", logs)
	}
}
