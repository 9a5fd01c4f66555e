package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/herald-ws/herald/api"
	"github.com/herald-ws/herald/broker/natsbroker"
	"github.com/herald-ws/herald/internal/testutil"
)

// TestKilledNodeLeavesPresence runs a real herald process in a NATS
// cluster beside an in-process node and kills it with SIGKILL: the very
// first presence call after the kill no longer lists its members (a dead
// node cannot answer), within api.ControlTimeout, and once the node
// directory forgets it (3 s) the cluster's calls are fast again and list
// one node.
func TestKilledNodeLeavesPresence(t *testing.T) {
	bin := heraldBinary(t)
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(5 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(ns.Shutdown)
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", ns.Addr().(*net.TCPAddr).Port)

	b, err := natsbroker.New(natsbroker.Config{URLs: natsURL, HistorySize: 10, HistoryTTL: time.Hour, Name: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	local := testutil.StartNode(t, testutil.NodeOptions{Broker: b, PresenceChannels: []string{"room:*"}})

	addr, apiAddr := freePort(t), freePort(t)
	cmd := exec.Command(bin, "serve", "-addr", addr, "-api-addr", apiAddr, "-broker", natsURL,
		"-presence-channels", "room:*", "-log-level", "error")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + apiAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the herald process never became ready")
		}
		time.Sleep(50 * time.Millisecond)
	}

	subscribe := func(url string) {
		c, err := testutil.DialWSContext(t.Context(), url, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Conn.Close() })
		if err := c.SendJSON(map[string]any{"op": "subscribe", "channel": "room:1", "id": 1}); err != nil {
			t.Fatal(err)
		}
		if m, err := c.Next(10 * time.Second); err != nil || m.Op != "ack" {
			t.Fatalf("subscribe: %v %v", m, err)
		}
	}
	for range 3 {
		subscribe("ws://" + addr + "/ws")
	}
	subscribe(testutil.WSURL(local, ""))

	type presence struct {
		Members []api.Member
		Nodes   int
	}
	ask := func() (presence, time.Duration) {
		start := time.Now()
		status, body, err := testutil.APIRequest(local, http.MethodGet, "/api/presence?channel=room:1", "", nil)
		if err != nil || status != http.StatusOK {
			t.Fatalf("presence: %d %s %v", status, body, err)
		}
		var p presence
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatal(err)
		}
		return p, time.Since(start)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		p, _ := ask()
		if len(p.Members) == 4 && p.Nodes == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("presence before the kill: %+v, want 4 members on 2 nodes", p)
		}
		time.Sleep(50 * time.Millisecond)
	}

	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	_ = cmd.Wait()
	killed := time.Now()
	p, took := ask()
	if len(p.Members) != 1 || p.Nodes != 1 {
		t.Fatalf("first presence after SIGKILL: %+v, want only the local member", p)
	}
	if took > api.ControlTimeout+time.Second {
		t.Fatalf("first presence after SIGKILL took %v, want at most the control timeout %v", took, api.ControlTimeout)
	}
	for {
		_, took := ask()
		if took < time.Second {
			break
		}
		if time.Since(killed) > 10*time.Second {
			t.Fatalf("presence calls still wait %v for the dead node 10 s after the kill", took)
		}
	}
	t.Logf("the killed node's members left at once; calls fast again %v after the kill", time.Since(killed).Round(100*time.Millisecond))
}
