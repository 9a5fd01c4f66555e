package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herald-ws/herald/internal/deflatewin"
	"github.com/herald-ws/herald/internal/testutil"
)

// windowModes are window_client.js's connections in order, with the
// server_max_window_bits each offers (0: none, a 32 KiB window).
var windowModes = []struct {
	name string
	bits int
}{
	{"server-8", 8}, {"server-9", 9}, {"server-10", 10}, {"server-12", 12}, {"server-14", 14},
	{"server-15", 15}, {"server-9-client-9", 9}, {"client-10", 0},
}

// TestNodeWindowBits runs the npm ws client with serverMaxWindowBits from 8
// to 15 against /echo (interop/node/window_client.js). zlib inflates with
// the window the client asked for, so a server back-reference too far back
// fails the script with "invalid distance too far back". Through a
// recording relay the test also checks that every echo was compressed and,
// with its own inflater, that no back-reference exceeds 2^N. It needs node
// and `npm ci --prefix interop/node`; it skips without them unless
// HERALD_REQUIRE_NODE=1.
func TestNodeWindowBits(t *testing.T) {
	t.Parallel()
	nodeBin, script := nodeScript(t, "window_client.js")

	srv := testutil.Start(t, testutil.Options{Compression: true, CompressionMinSize: 0, MaxMessageSize: 1 << 20})
	relay := startProxy(t, srv.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, nodeBin, script, "ws://"+relay.addr()+"/echo")
	cmd.Dir = filepath.Dir(script)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var res struct {
		OK      bool   `json:"ok"`
		Error   string `json:"error"`
		WS      string `json:"ws"`
		Node    string `json:"node"`
		Results []struct {
			Mode       string   `json:"mode"`
			Extensions string   `json:"extensions"`
			Checks     []string `json:"checks"`
		} `json:"results"`
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Fatalf("window_client.js: %v; no JSON result line\nstdout: %s\nstderr: %s", runErr, stdout.Bytes(), stderr.Bytes())
	}
	if runErr != nil || !res.OK {
		t.Fatalf("window_client.js failed (%v): %s\nstderr: %s", runErr, res.Error, stderr.Bytes())
	}
	t.Logf("ws %s on node %s", res.WS, res.Node)
	if len(res.Results) != len(windowModes) {
		t.Fatalf("window_client.js reported %d connections, want %d", len(res.Results), len(windowModes))
	}

	conns := relay.connections()
	if len(conns) != len(windowModes) {
		t.Fatalf("relay saw %d connections, want %d", len(conns), len(windowModes))
	}
	echoed := regexp.MustCompile(`server_max_window_bits=(\d+)`)
	for i, pc := range conns {
		m := windowModes[i]
		if r := res.Results[i]; r.Mode != m.name || len(r.Checks) < 12 {
			t.Fatalf("connection %d: %+v, want mode %s with every check run", i, r, m.name)
		}
		select {
		case <-pc.done:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: still open 5 s after the close handshake", m.name)
		}
		r, err := parseConversation(pc.sent.bytes(), pc.received.bytes())
		if err != nil {
			t.Fatalf("%s: wire: %v", m.name, err)
		}
		got := 0
		if s := echoed.FindStringSubmatch(r.responseHead); s != nil {
			got, _ = strconv.Atoi(s[1])
		}
		if got != m.bits {
			t.Fatalf("%s: response echoes server_max_window_bits=%d, want %d:\n%s", m.name, got, m.bits, r.responseHead)
		}
		window := 1 << 15
		if m.bits != 0 {
			window = 1 << m.bits
		}
		msgs := 0
		for _, f := range r.received {
			if f.op != opText && f.op != opBinary {
				continue
			}
			msgs++
			if !f.rsv1 || !f.fin {
				t.Fatalf("%s: echo %d not one compressed frame (rsv1 %v fin %v)", m.name, msgs, f.rsv1, f.fin)
			}
			stream := append(append(append([]byte(nil), f.payload...), 0, 0, 0xff, 0xff), 0x01, 0, 0, 0xff, 0xff)
			inf, err := deflatewin.Inflate(stream)
			if err != nil {
				t.Fatalf("%s: echo %d: %v", m.name, msgs, err)
			}
			if inf.MaxDistance > window {
				t.Fatalf("%s: echo %d (%d bytes) reaches %d bytes back, window %d", m.name, msgs, len(inf.Out), inf.MaxDistance, window)
			}
		}
		if msgs != len(res.Results[i].Checks) {
			t.Fatalf("%s: %d echoes on the wire for %d checks", m.name, msgs, len(res.Results[i].Checks))
		}
	}
}
