package interop

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herald-ws/herald/internal/testutil"
	"github.com/herald-ws/herald/server"
)

// sever cuts every relayed connection, as a middlebox dropping them would;
// the relay keeps accepting.
func (p *proxy) sever() {
	p.mu.Lock()
	open := p.open
	p.open = nil
	p.mu.Unlock()
	for _, c := range open {
		_ = c.Close()
	}
}

// waitSubs waits until n holds want subscriptions.
func waitSubs(t *testing.T, n *server.Node, want int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for n.Hub().Stats().Subscriptions != want {
		if time.Now().After(deadline) {
			t.Fatalf("%d subscriptions, want %d", n.Hub().Stats().Subscriptions, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestNodeEventSource reads /sse with the npm eventsource package through
// a relay that cuts the stream halfway: EventSource reconnects by itself
// with Last-Event-ID, and every publication, including those made while it
// was away, arrives exactly once and in order. Skips like TestNodeWS.
func TestNodeEventSource(t *testing.T) {
	t.Parallel()
	nodeBin, script := nodeScript(t, "sse_client.js")
	if _, err := os.Stat(filepath.Join("node", "node_modules", "eventsource", "package.json")); err != nil {
		nodeUnavailable(t, "interop/node/node_modules/eventsource is missing: run `npm ci --prefix interop/node`")
	}
	n := testutil.StartNode(t, testutil.NodeOptions{})
	relay := startProxy(t, n.Addr().String())

	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, nodeBin, script, "http://"+relay.addr()+"/sse?channel=es")
	cmd.Dir = filepath.Dir(script)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(out)
	if !lines.Scan() || !strings.Contains(lines.Text(), `"ready":true`) {
		t.Fatalf("sse_client.js never got ready: %q\nstderr: %s", lines.Text(), stderr.Bytes())
	}
	var offs []uint64
	for i := range 10 {
		offs = append(offs, testutil.Publish(t, n, "es", i))
	}
	// Wait until the client has the first ten (its position is the tenth),
	// then cut the stream and publish while it is away.
	deadline := time.Now().Add(10 * time.Second)
	for !bytes.Contains(relay.connections()[0].received.bytes(), fmt.Appendf(nil, "id: es:%d\n", offs[9])) {
		if time.Now().After(deadline) {
			t.Fatal("the first ten events never went through the relay")
		}
		time.Sleep(10 * time.Millisecond)
	}
	relay.sever()
	waitSubs(t, n, 0)
	for i := range 10 {
		offs = append(offs, testutil.Publish(t, n, "es", 10+i))
	}
	waitSubs(t, n, 1) // reconnected
	offs = append(offs, testutil.Publish(t, n, "es", map[string]bool{"last": true}))

	var res struct {
		OK      bool     `json:"ok"`
		Error   string   `json:"error"`
		Offsets []uint64 `json:"offsets"`
		Acks    []struct {
			Recovered *bool `json:"recovered"`
		} `json:"acks"`
		Errors int `json:"errors"`
	}
	if !lines.Scan() {
		t.Fatalf("sse_client.js printed no result\nstderr: %s", stderr.Bytes())
	}
	if err := json.Unmarshal(lines.Bytes(), &res); err != nil || !res.OK {
		t.Fatalf("sse_client.js: %s (%v)\nstderr: %s", lines.Text(), err, stderr.Bytes())
	}
	_ = cmd.Wait()
	if fmt.Sprint(res.Offsets) != fmt.Sprint(offs) {
		t.Fatalf("received offsets %v, want %v", res.Offsets, offs)
	}
	if len(res.Acks) != 2 || res.Acks[1].Recovered == nil || !*res.Acks[1].Recovered || res.Errors < 1 {
		t.Fatalf("acks %+v after %d stream errors: want a reconnect recovered with Last-Event-ID", res.Acks, res.Errors)
	}
	// The reconnect carried the position of the last event before the cut.
	var sent []byte
	for _, c := range relay.connections()[1:] {
		sent = append(sent, c.sent.bytes()...)
	}
	if !bytes.Contains(bytes.ToLower(sent), fmt.Appendf(nil, "\r\nlast-event-id: es:%d\r\n", offs[9])) {
		t.Fatalf("the reconnect requests:\n%s", sent)
	}
}

// TestCurlSSE reads /sse with curl -N (no buffering), the client of anyone
// trying Herald from a shell, and requires every publication as one event
// with the /ws message JSON. It skips without curl unless
// HERALD_REQUIRE_NODE=1 (CI has both).
func TestCurlSSE(t *testing.T) {
	t.Parallel()
	curl, err := exec.LookPath("curl")
	if err != nil {
		nodeUnavailable(t, "curl is not on PATH")
	}
	n := testutil.StartNode(t, testutil.NodeOptions{Options: testutil.Options{PingInterval: 200 * time.Millisecond}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, curl, "-N", "-s", "-S", "-i", "http://"+n.Addr().String()+"/sse?channel=c1&channel=c2")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	waitSubs(t, n, 2)
	var want []string
	for i := range 20 {
		ch := []string{"c1", "c2"}[i%2]
		off := testutil.Publish(t, n, ch, i)
		want = append(want, fmt.Sprintf(`{"op":"message","channel":%q,"offset":%d,"data":%d}`, ch, off, i))
	}
	br := bufio.NewReader(out)
	status, _ := br.ReadString('\n')
	if !strings.HasPrefix(status, "HTTP/1.1 200") {
		t.Fatalf("curl status line %q\nstderr: %s", status, stderr.Bytes())
	}
	var got []string
	heartbeat := false
	for len(got) < len(want) || !heartbeat {
		line, err := br.ReadString('\n')
		if err == io.EOF || ctx.Err() != nil {
			t.Fatalf("curl output ended after %d events: %v\nstderr: %s", len(got), err, stderr.Bytes())
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case strings.HasPrefix(line, "data: {\"op\":\"message\""):
			got = append(got, strings.TrimPrefix(line, "data: "))
		case line == ": heartbeat":
			heartbeat = true
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("curl got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
