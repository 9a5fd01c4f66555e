package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herald-ws/herald/internal/testutil"
)

// nodeResult is the JSON line interop/node/echo_client.js prints.
type nodeResult struct {
	OK      bool   `json:"ok"`
	Error   string `json:"error"`
	WS      string `json:"ws"`
	Node    string `json:"node"`
	Results []struct {
		Mode       string   `json:"mode"`
		Extensions string   `json:"extensions"`
		Deflate    bool     `json:"deflate"`
		Checks     []string `json:"checks"`
	} `json:"results"`
}

// nodeModes are echo_client.js's connections in the order it opens them,
// with whether each must negotiate permessage-deflate.
var nodeModes = []struct {
	name    string
	deflate bool
}{{"plain", false}, {"deflate", true}, {"deflate-window-10", true}}

// TestNodeWS runs the npm ws client (interop/node/echo_client.js) against
// /echo through a recording relay, then checks both the script's verdict
// and the frames on the wire. It needs node on PATH and
// `npm ci --prefix interop/node`; without them it skips, unless
// HERALD_REQUIRE_NODE=1 makes that a failure (for CI, where skipping would
// hide a broken setup).
func TestNodeWS(t *testing.T) {
	t.Parallel()
	nodeBin, script := nodeScript(t, "echo_client.js")

	srv := testutil.Start(t, testutil.Options{Compression: true, CompressionMinSize: 0})
	relay := startProxy(t, srv.Addr().String())

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, nodeBin, script, "ws://"+relay.addr()+"/echo")
	cmd.Dir = filepath.Dir(script)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("echo_client.js did not finish within the timeout\nstdout: %s\nstderr: %s", stdout.Bytes(), stderr.Bytes())
	}

	var res nodeResult
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Fatalf("echo_client.js: %v; no JSON result line\nstdout: %s\nstderr: %s", runErr, stdout.Bytes(), stderr.Bytes())
	}
	if runErr != nil || !res.OK {
		t.Fatalf("echo_client.js failed (%v): %s\nstderr: %s", runErr, res.Error, stderr.Bytes())
	}
	t.Logf("ws %s on node %s", res.WS, res.Node)
	if len(res.Results) != len(nodeModes) {
		t.Fatalf("echo_client.js reported %d connections, want %d", len(res.Results), len(nodeModes))
	}
	for i, m := range nodeModes {
		r := res.Results[i]
		if r.Mode != m.name || r.Deflate != m.deflate || len(r.Checks) < 10 {
			t.Fatalf("connection %d: %+v, want mode %s with deflate=%v and every check run", i, r, m.name, m.deflate)
		}
	}

	conns := relay.connections()
	if len(conns) != len(nodeModes) {
		t.Fatalf("relay saw %d connections, want %d", len(conns), len(nodeModes))
	}
	for i, pc := range conns {
		m := nodeModes[i]
		select {
		case <-pc.done:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: the connection was still open 5 s after the close handshake", m.name)
		}
		r, err := parseConversation(pc.sent.bytes(), pc.received.bytes())
		if err != nil {
			t.Fatalf("%s: wire: %v", m.name, err)
		}
		checkNodeWire(t, m.name, m.deflate, r)
	}
}

func checkNodeWire(t *testing.T, mode string, deflate bool, r *wireReport) {
	t.Helper()
	if got := strings.Contains(r.responseHead, "permessage-deflate"); got != deflate {
		t.Fatalf("%s: response negotiated deflate=%v, want %v:\n%s", mode, got, deflate, r.responseHead)
	}
	if n := maxFrames(r.sentMsgs, opText); n < 4 {
		t.Fatalf("%s: ws sent the fragmented text in %d frames, want 4", mode, n)
	}
	if n := maxFrames(r.sentMsgs, opBinary); n < 4 {
		t.Fatalf("%s: ws sent the fragmented binary in %d frames, want 4", mode, n)
	}
	if len(r.receivedMsgs) != len(r.sentMsgs) {
		t.Fatalf("%s: server sent %d messages for the client's %d", mode, len(r.receivedMsgs), len(r.sentMsgs))
	}
	for i, m := range r.receivedMsgs {
		if m.frames != 1 {
			t.Fatalf("%s: server echo %d in %d frames; Herald sends each message as one frame", mode, i, m.frames)
		}
		if m.op != r.sentMsgs[i].op {
			t.Fatalf("%s: message %d sent with opcode %#x, echoed with %#x", mode, i, r.sentMsgs[i].op, m.op)
		}
		if m.rsv1 != deflate || r.sentMsgs[i].rsv1 != deflate {
			t.Fatalf("%s: message %d compressed: client %v, server %v; want %v", mode, i, r.sentMsgs[i].rsv1, m.rsv1, deflate)
		}
	}
	if code, ok := lastClose(r.sent); !ok || code != 1000 {
		t.Fatalf("%s: client's close frame: code %d (found %v), want 1000", mode, code, ok)
	}
	if code, ok := lastClose(r.received); !ok || code != 1000 {
		t.Fatalf("%s: server's close frame: code %d (found %v), want 1000", mode, code, ok)
	}
	if last := r.received[len(r.received)-1]; last.op != opClose {
		t.Fatalf("%s: server sent opcode %#x after its close frame", mode, last.op)
	}
}

// nodeScript returns node's path and the absolute path of interop/node/name
// (go test runs in interop/). Without node or `npm ci --prefix
// interop/node` the test skips, unless HERALD_REQUIRE_NODE=1 makes that a
// failure (for CI, where skipping would hide a broken setup).
func nodeScript(t *testing.T, name string) (nodeBin, script string) {
	t.Helper()
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		nodeUnavailable(t, "node is not on PATH: install Node.js 18 or newer to run the ws interop test")
	}
	script, err = filepath.Abs(filepath.Join("node", name))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join("node", "node_modules", "ws", "package.json")); err != nil {
		nodeUnavailable(t, "interop/node/node_modules is missing: run `npm ci --prefix interop/node`")
	}
	return nodeBin, script
}

// nodeUnavailable skips, or fails with HERALD_REQUIRE_NODE=1.
func nodeUnavailable(t *testing.T, msg string) {
	t.Helper()
	if os.Getenv("HERALD_REQUIRE_NODE") == "1" {
		t.Fatal(msg + " (HERALD_REQUIRE_NODE=1 forbids skipping)")
	}
	t.Skip(msg)
}
