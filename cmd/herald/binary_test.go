package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

// TestMain removes the binary heraldBinary built.
func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// heraldBinary builds ./cmd/herald once per test run and returns its path.
func heraldBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the herald binary")
	}
	binOnce.Do(func() {
		// HERALD_TEST_BIN runs the binary tests against another build,
		// e.g. one of an older commit to see that they fail there.
		if p := os.Getenv("HERALD_TEST_BIN"); p != "" {
			binPath = p
			return
		}
		binDir, binErr = os.MkdirTemp("", "herald-bin-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "herald")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = errors.New("go build: " + err.Error() + "\n" + string(out))
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// runHerald runs the binary with args and exactly env (plus PATH and HOME),
// so that HERALD_* variables of the caller cannot leak in. It returns
// stdout, stderr and the exit code.
func runHerald(t *testing.T, env map[string]string, args ...string) (string, string, int) {
	t.Helper()
	// A case that wrongly passes validation would start a server and run
	// until killed: bound every run.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, heraldBinary(t), args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("run herald %s: %v", strings.Join(args, " "), err)
		}
		code = ee.ExitCode()
	}
	if ctx.Err() != nil {
		t.Fatalf("herald %s did not exit within 30s; stderr:\n%s", strings.Join(args, " "), stderr.String())
	}
	return stdout.String(), stderr.String(), code
}
