package interop

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/herald-ws/herald/internal/testutil"
)

// TestNodeSubscriberSurvivesBadPublish subscribes the npm ws client
// (interop/node/subscribe_client.js), which fails a connection on a text
// frame that is not UTF-8, then publishes data holding invalid UTF-8
// through the API. The API must refuse it (400), so the subscriber stays
// connected and gets the next valid publication. Before the API checked
// data, the bytes went out in a text frame and ws dropped the connection
// (1006 after its own 1007). Skips like TestNodeWS without node or the
// npm install, unless HERALD_REQUIRE_NODE=1.
func TestNodeSubscriberSurvivesBadPublish(t *testing.T) {
	t.Parallel()
	nodeBin, script := nodeScript(t, "subscribe_client.js")
	n := testutil.StartNode(t, testutil.NodeOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, nodeBin, script, testutil.WSURL(n, ""), "utf8")
	cmd.Dir = filepath.Dir(script)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || lines.Text() != `{"ready":true}` {
		t.Fatalf("subscribe_client.js did not get its subscribe ack: %q %v", lines.Text(), lines.Err())
	}

	bad := []byte("{\"channel\":\"utf8\",\"data\":{\"text\":\"caf\xe9\"}}") // Latin-1 é
	status, body, err := testutil.APIRequest(n, http.MethodPost, "/api/publish", "", bad)
	if err != nil {
		t.Fatal(err)
	}
	badStatus := status
	if _, err := testutil.PublishKey(n, "", "utf8", `{"last":true}`); err != nil {
		t.Fatal(err)
	}
	if !lines.Scan() {
		t.Fatalf("subscribe_client.js printed no result: %v", lines.Err())
	}
	var res struct {
		OK       bool              `json:"ok"`
		Close    int               `json:"close"`
		Error    string            `json:"error"`
		Received []json.RawMessage `json:"received"`
	}
	if err := json.Unmarshal(lines.Bytes(), &res); err != nil {
		t.Fatalf("result %q: %v", lines.Bytes(), err)
	}
	if !res.OK {
		t.Fatalf("the ws subscriber was dropped (close %d, %s) after an API publish of invalid UTF-8 answered %d %s", res.Close, res.Error, badStatus, body)
	}
	if badStatus != http.StatusBadRequest {
		t.Fatalf("publish of invalid UTF-8: %d %s, want 400", badStatus, body)
	}
	if len(res.Received) != 1 || string(res.Received[0]) != `{"last":true}` {
		t.Fatalf("subscriber received %s, want only the valid publication", lines.Bytes())
	}
}
