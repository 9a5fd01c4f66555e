package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herald-ws/herald/internal/testutil"
	"github.com/herald-ws/herald/push"
)

// TestNodeSubprotocol runs the npm ws client with several
// Sec-WebSocket-Protocol offers (interop/node/subprotocol_client.js): ws,
// like browsers, fails a handshake whose answer is not one of its offers,
// so an offer including herald.json.v1 must get exactly that, no offer
// must get none, and an offer of only unknown protocols must be refused
// with 400 naming herald.json.v1. Skips like TestNodeWS without node or
// the npm install, unless HERALD_REQUIRE_NODE=1.
func TestNodeSubprotocol(t *testing.T) {
	t.Parallel()
	nodeBin, script := nodeScript(t, "subprotocol_client.js")
	n := testutil.StartNode(t, testutil.NodeOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, nodeBin, script, testutil.WSURL(n, ""))
	cmd.Dir = filepath.Dir(script)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("subprotocol_client.js: %v\nstdout: %s\nstderr: %s", err, stdout.Bytes(), stderr.Bytes())
	}
	var res struct {
		OK      bool `json:"ok"`
		Results []struct {
			Offer    []string `json:"offer"`
			Protocol *string  `json:"protocol"`
			Reply    string   `json:"reply"`
			Status   int      `json:"status"`
			Body     string   `json:"body"`
			Error    string   `json:"error"`
		} `json:"results"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(stdout.Bytes()), &res); err != nil || !res.OK || len(res.Results) != 5 {
		t.Fatalf("subprotocol_client.js printed %s (%v)\nstderr: %s", stdout.Bytes(), err, stderr.Bytes())
	}
	for i, want := range []string{"", push.Subprotocol, push.Subprotocol} {
		r := res.Results[i]
		if r.Protocol == nil || *r.Protocol != want || r.Reply != "pong" {
			t.Errorf("offer %q: %+v, want protocol %q and a pong", r.Offer, r, want)
		}
	}
	for _, r := range res.Results[3:] {
		if r.Status != 400 || !strings.Contains(r.Body, push.Subprotocol) {
			t.Errorf("offer %q: %+v, want 400 naming %s", r.Offer, r, push.Subprotocol)
		}
	}
}
