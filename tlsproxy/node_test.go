package tlsproxy

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/herald-ws/herald/internal/testutil"
)

// nodeEvent is one line of interop/node/wss_client.js.
type nodeEvent struct {
	Event   string `json:"event"`
	Data    string `json:"data"`
	Binary  bool   `json:"binary"`
	Code    int    `json:"code"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// nodeClient is a running wss_client.js.
type nodeClient struct {
	t      *testing.T
	events chan nodeEvent
}

// nodeScript finds node and the script with its ws dependency, or skips
// (fails with HERALD_REQUIRE_NODE=1).
func nodeScript(t *testing.T) (nodeBin, script string) {
	t.Helper()
	unavailable := func(msg string) {
		t.Helper()
		if os.Getenv("HERALD_REQUIRE_NODE") == "1" {
			t.Fatal(msg + " (HERALD_REQUIRE_NODE=1)")
		}
		t.Skip(msg)
	}
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		unavailable("node is not on PATH: install Node.js 18 or newer")
	}
	script, err = filepath.Abs(filepath.Join("..", "interop", "node", "wss_client.js"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join("..", "interop", "node", "node_modules", "ws", "package.json")); err != nil {
		unavailable("interop/node/node_modules is missing: run `npm ci --prefix interop/node`")
	}
	return nodeBin, script
}

// runNode starts wss_client.js with opts (plus the env's URL and CA) and
// kills it when the test ends.
func (e *env) runNode(opts map[string]any) *nodeClient {
	e.t.Helper()
	nodeBin, script := nodeScript(e.t)
	opts["url"] = e.proxy.WSURL("")
	opts["ca"] = e.certs.CACert
	arg, _ := json.Marshal(opts)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	cmd := exec.CommandContext(ctx, nodeBin, script, string(arg))
	cmd.Dir = filepath.Dir(script)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		e.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		e.t.Fatal(err)
	}
	nc := &nodeClient{t: e.t, events: make(chan nodeEvent, 64)}
	go func() {
		defer close(nc.events)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var ev nodeEvent
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				ev = nodeEvent{Event: "error", Message: "bad line: " + sc.Text()}
			}
			nc.events <- ev
		}
	}()
	e.t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	return nc
}

// next returns the script's next event; errors fail the test.
func (nc *nodeClient) next() nodeEvent {
	nc.t.Helper()
	select {
	case ev, ok := <-nc.events:
		if !ok {
			nc.t.Fatal("wss_client.js exited")
		}
		if ev.Event == "error" {
			nc.t.Fatalf("wss_client.js: %s", ev.Message)
		}
		return ev
	case <-time.After(15 * time.Second):
		nc.t.Fatal("no event from wss_client.js within 15 s")
	}
	return nodeEvent{}
}

func (nc *nodeClient) expect(event string) nodeEvent {
	nc.t.Helper()
	ev := nc.next()
	if ev.Event != event {
		nc.t.Fatalf("got %+v, want %s", ev, event)
	}
	return ev
}

// frame expects the next event to be a text frame and decodes it.
func (nc *nodeClient) frame() testutil.Msg {
	nc.t.Helper()
	ev := nc.expect("frame")
	if ev.Binary {
		nc.t.Fatalf("binary frame %q", ev.Data)
	}
	m, err := testutil.DecodeMsg([]byte(ev.Data))
	if err != nil {
		nc.t.Fatal(err)
	}
	return m
}

// TestNodeWSSRecoversAcrossRestart is TestGorillaWSSRecoversAcrossRestart
// with the npm ws client: subscribe over wss:// trusting the test CA,
// receive a publication, get 1001 at shutdown, recover with since after
// the restart (recovered:true), and a too-large message is closed with
// 1009, all through nginx.
func TestNodeWSSRecoversAcrossRestart(t *testing.T) {
	nodeScript(t)
	e := newEnv(t, envOptions{MaxMessageSize: 4096})
	nc := e.runNode(map[string]any{"channel": "news"})
	nc.expect("open")
	if ack := nc.frame(); ack.Op != "ack" || string(ack.ID) != "1" {
		t.Fatalf("got %s, want the subscribe ack", ack.Raw)
	}
	off := e.publish("news", `{"n":1}`)
	expectMessage(t, nc.frame(), "news", off, `{"n":1}`)

	e.shutdownA()
	if ev := nc.expect("close"); ev.Code != 1001 {
		t.Fatalf("close %d %q at shutdown, want 1001", ev.Code, ev.Reason)
	}
	missed := []string{`{"n":2}`, `{"n":3}`}
	var offs []uint64
	for _, d := range missed {
		offs = append(offs, e.publishB("news", d))
	}
	e.restartA()
	e.waitUpgradable()

	nc = e.runNode(map[string]any{"channel": "news", "since": off})
	nc.expect("open")
	ack := nc.frame()
	if ack.Op != "ack" || ack.Recovered == nil || !*ack.Recovered {
		t.Fatalf("got %s after the restart, want an ack with recovered:true", ack.Raw)
	}
	for i, d := range missed {
		expectMessage(t, nc.frame(), "news", offs[i], d)
	}
	live := e.publish("news", `{"n":4}`)
	expectMessage(t, nc.frame(), "news", live, `{"n":4}`)

	big := e.runNode(map[string]any{"sendBytes": 8000})
	big.expect("open")
	if ev := big.expect("close"); ev.Code != 1009 {
		t.Fatalf("close %d %q after a too-large message, want 1009", ev.Code, ev.Reason)
	}
}
