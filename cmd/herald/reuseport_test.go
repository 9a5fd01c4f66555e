package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	natsserver "github.com/nats-io/nats-server/v2/server"
)

// TestReusePortNodesShareOnePort runs three herald processes on one client
// port with -reuseport, sharing one NATS server: the kernel spreads the
// connections over all three, a publication through any node's API
// reaches the subscribers of every node, and when one process is killed,
// new connections to the port go to the survivors and still receive
// everything.
func TestReusePortNodesShareOnePort(t *testing.T) {
	bin := heraldBinary(t)
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(ns.Shutdown)
	natsURL := fmt.Sprintf("nats://%s", ns.Addr())

	addr := freePort(t)
	var apis []string
	var procs []*exec.Cmd
	for range 3 {
		api := freePort(t)
		cmd := exec.Command(bin, "serve", "-addr", addr, "-reuseport", "-api-addr", api, "-broker", natsURL, "-log-level", "error")
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
		apis, procs = append(apis, api), append(procs, cmd)
	}
	for _, api := range apis {
		deadline := time.Now().Add(20 * time.Second)
		for status, _ := apiCall(t, api, http.MethodGet, "/readyz", nil); status != http.StatusOK; status, _ = apiCall(t, api, http.MethodGet, "/readyz", nil) {
			if time.Now().After(deadline) {
				t.Fatalf("node %s never ready", api)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	subscribe := func(n int) []net.Conn {
		t.Helper()
		var conns []net.Conn
		for i := range n {
			c, _, _, err := ws.Dial(context.Background(), "ws://"+addr+"/ws")
			if err != nil {
				t.Fatalf("dial %d: %v", i, err)
			}
			t.Cleanup(func() { _ = c.Close() })
			if err := wsutil.WriteClientText(c, []byte(`{"op":"subscribe","channel":"shared","id":1}`)); err != nil {
				t.Fatal(err)
			}
			if m := readFrame(t, c); m.Op != "ack" {
				t.Fatalf("subscribe %d: %+v", i, m)
			}
			conns = append(conns, c)
		}
		return conns
	}
	publishAndExpect := func(api string, conns []net.Conn, n int) {
		t.Helper()
		status, body := apiCall(t, api, http.MethodPost, "/api/publish", map[string]any{"channel": "shared", "data": n})
		if status != http.StatusOK {
			t.Fatalf("publish through %s: %d %s", api, status, body)
		}
		var ack struct{ Offset uint64 }
		_ = json.Unmarshal(body, &ack)
		for i, c := range conns {
			if m := readFrame(t, c); m.Op != "message" || m.Offset != ack.Offset || string(m.Data) != fmt.Sprint(n) {
				t.Fatalf("connection %d got %+v, want the publication at offset %d", i, m, ack.Offset)
			}
		}
	}

	conns := subscribe(60)
	total := 0
	for _, api := range apis {
		deadline := time.Now().Add(5 * time.Second)
		var stats struct{ Subscriptions int }
		for {
			_, body := apiCall(t, api, http.MethodGet, "/api/stats", nil)
			_ = json.Unmarshal(body, &stats)
			if stats.Subscriptions > 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		// With 60 connections hashed over 3 listeners, an empty one has
		// probability 3 x (2/3)^60, about 1e-10.
		if stats.Subscriptions == 0 {
			t.Fatalf("node %s holds no connection: the port is not shared", api)
		}
		total += stats.Subscriptions
	}
	if total != len(conns) {
		t.Fatalf("nodes hold %d subscriptions, %d were made", total, len(conns))
	}
	publishAndExpect(apis[0], conns, 1)

	// Node 0 dies; its clients lose their connection, new ones go to the
	// two left.
	_ = procs[0].Process.Kill()
	_ = procs[0].Wait()
	var survivors []net.Conn
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := wsutil.ReadServerText(c); err != nil && !isTimeout(err) {
			continue // it was node 0's
		}
		survivors = append(survivors, c)
	}
	if len(survivors) == len(conns) || len(survivors) == 0 {
		t.Fatalf("%d of %d connections survived killing one of three nodes", len(survivors), len(conns))
	}
	fresh := subscribe(30)
	publishAndExpect(apis[2], append(survivors, fresh...), 2)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

type frame struct {
	Op     string          `json:"op"`
	Offset uint64          `json:"offset"`
	Data   json.RawMessage `json:"data"`
}

func readFrame(t *testing.T, c net.Conn) frame {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	p, err := wsutil.ReadServerText(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var f frame
	if err := json.Unmarshal(p, &f); err != nil {
		t.Fatalf("frame %q: %v", p, err)
	}
	return f
}

func apiCall(t *testing.T, api, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, err := http.NewRequest(method, "http://"+api+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.Bytes()
}
