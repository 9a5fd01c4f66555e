package tlsproxy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/herald-ws/herald/broker/natsbroker"
	heraldjs "github.com/herald-ws/herald/clients/js"
	"github.com/herald-ws/herald/internal/testutil"
	"github.com/herald-ws/herald/server"
)

// env is one Herald node ("A") behind nginx (or HAProxy), on a NATS broker whose
// JetStream history outlives A, plus a second node ("B") on the same NATS
// that publishes while A is down, as another node of a cluster would.
type env struct {
	t      *testing.T
	ca     *CA
	certs  Files
	nats   *natsserver.Server
	natsU  string
	o      envOptions
	a      *server.Node // nil while A is down
	b      *server.Node
	wsAddr string // A's client listener, fixed after the first start
	api    string // A's API listener, fixed after the first start
	proxy  *Proxy // nginx, or HAProxy with envOptions.HAProxy
	// HTTPS trusts only the test CA; it opens a connection per request,
	// since a pooled one could outlive the node it was made to.
	HTTPS *http.Client
}

type envOptions struct {
	MaxMessageSize int64 // 0: the test default
	Loops          int
	PingInterval   time.Duration // 0: no pings (the test default)
	ProxyTimeout   time.Duration // 0: nginx's documented /ws timeouts
	ProxyConns     int           // nginx worker_connections; 0: Render's default
	HAProxy        bool          // HAProxy instead of nginx
}

// proxies are the proxies the tests run against, by name.
var proxies = []struct {
	name    string
	haproxy bool
}{{"nginx", false}, {"haproxy", true}}

// newEnv starts NATS, nodes A and B, and nginx in front of A. It skips
// before starting anything when nginx is missing.
func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	if o.HAProxy {
		HAProxyPath(t)
	} else {
		NginxPath(t)
	}
	ca, err := NewCA()
	if err != nil {
		t.Fatal(err)
	}
	certs, err := ca.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, ca: ca, certs: certs, o: o}
	e.startNATS()
	e.b = e.newNode("127.0.0.1:0", "127.0.0.1:0", "B")
	t.Cleanup(e.b.Stop)
	e.a = e.newNode("127.0.0.1:0", "127.0.0.1:0", "A")
	e.wsAddr, e.api = e.a.Addr().String(), e.a.APIAddr().String()
	t.Cleanup(func() {
		if e.a != nil {
			e.a.Stop()
		}
	})
	up := Upstreams{WS: e.wsAddr, API: e.api, Certs: certs, Timeout: o.ProxyTimeout, Connections: o.ProxyConns}
	if o.HAProxy {
		e.proxy = StartHAProxy(t, up)
	} else {
		e.proxy = StartNginx(t, up)
	}
	tc := ca.ClientConfig()
	e.HTTPS = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc, DisableKeepAlives: true}}
	return e
}

func (e *env) startNATS() {
	e.t.Helper()
	opts := &natsserver.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: e.t.TempDir(), NoLog: true, NoSigs: true}
	ns, err := natsserver.NewServer(opts)
	if err != nil {
		e.t.Fatalf("nats-server: %v", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		e.t.Fatal("nats-server not ready")
	}
	e.t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	e.nats = ns
	e.natsU = fmt.Sprintf("nats://%s", ns.Addr().String())
}

// newNode starts a node on NATS with herald.js and the demo page on its
// API. With fixed addresses (a restart) it retries while the old node's
// ports are still held.
func (e *env) newNode(clientAddr, apiAddr, name string) *server.Node {
	e.t.Helper()
	eng := testutil.Options{Loops: e.o.Loops, MaxMessageSize: e.o.MaxMessageSize, PingInterval: e.o.PingInterval}.Config()
	eng.Addr = clientAddr
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := natsbroker.New(natsbroker.Config{URLs: e.natsU, HistorySize: 100, HistoryTTL: time.Hour, Name: e.t.Name() + "-" + name, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			e.t.Fatalf("natsbroker: %v", err)
		}
		n, err := server.New(server.Options{
			Engine:      eng,
			APIAddr:     apiAddr,
			HistorySize: 100,
			HistoryTTL:  time.Hour,
			Broker:      b,
			HTTPExtra:   heraldjs.Handlers(),
			Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			e.t.Fatalf("server.New: %v", err)
		}
		if err = n.Start(); err == nil {
			e.waitReady(n)
			return n
		}
		n.Stop() // a failed Start leaves the hub and the broker running
		if time.Now().After(deadline) {
			e.t.Fatalf("start node %s on %s and %s: %v", name, clientAddr, apiAddr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitReady waits until n's broker is connected, so that a publish or a
// recovery right after a start does not race the NATS connection.
func (e *env) waitReady(n *server.Node) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for n.Ready() != nil {
		if time.Now().After(deadline) {
			e.t.Fatalf("node never became ready: %v", n.Ready())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// shutdownA shuts A down gracefully: every client gets close 1001.
func (e *env) shutdownA() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.a.Shutdown(ctx, 200*time.Millisecond); err != nil {
		e.t.Fatalf("shutdown A: %v", err)
	}
	e.a = nil
}

// restartA starts A again on its old ports, behind the same nginx.
func (e *env) restartA() {
	e.t.Helper()
	e.a = e.newNode(e.wsAddr, e.api, "A")
}

// publish posts data to channel through nginx (https) and returns the
// offset.
func (e *env) publish(channel, data string) uint64 {
	e.t.Helper()
	off, err := e.tryPublish(e.proxy.URL("/api/publish"), channel, data)
	if err != nil {
		e.t.Fatal(err)
	}
	return off
}

// publishB publishes through node B's own API (A may be down).
func (e *env) publishB(channel, data string) uint64 {
	e.t.Helper()
	off, err := testutil.PublishKey(e.b, "", channel, data)
	if err != nil {
		e.t.Fatal(err)
	}
	return off
}

func (e *env) tryPublish(url, channel, data string) (uint64, error) {
	body := fmt.Sprintf(`{"channel":%q,"data":%s}`, channel, data)
	res, err := e.HTTPS.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
	if res.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("publish through nginx: HTTP %d: %s", res.StatusCode, raw)
	}
	var out struct {
		Offset *uint64 `json:"offset"`
	}
	if err := json.Unmarshal(raw, &out); err != nil || out.Offset == nil {
		return 0, fmt.Errorf("publish through nginx: reply %q: %v", raw, err)
	}
	return *out.Offset, nil
}

// waitUpgradable waits until an upgrade through nginx reaches a live A
// (nginx answers 502 while A is down).
func (e *env) waitUpgradable() {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := e.HTTPS.Get(e.proxy.URL("/readyz"))
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("A never became reachable through nginx: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
