package tlsproxy

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/herald-ws/herald/loadtest"
)

func runLoad(t *testing.T, cfg loadtest.Config) *loadtest.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	r, err := loadtest.Run(ctx, cfg)
	if err != nil {
		t.Fatalf("loadtest: %v", err)
	}
	if r.Failures != 0 || r.ErrorCount != 0 {
		t.Fatalf("loadtest: %d failures, %d errors: %v", r.Failures, r.ErrorCount, r.Errors)
	}
	return r
}

// TestLoadtestPushThroughProxy runs `herald loadtest`'s push scenario over
// wss:// through nginx and through HAProxy, publishing over https://
// through the same proxy (the default API URL for wss://), trusting the
// test CA with -ca-file: every publication reaches every subscriber of its
// channel exactly once.
func TestLoadtestPushThroughProxy(t *testing.T) {
	for _, p := range proxies {
		t.Run(p.name, func(t *testing.T) { testLoadtestPush(t, envOptions{HAProxy: p.haproxy}) })
	}
}

func testLoadtestPush(t *testing.T, o envOptions) {
	e := newEnv(t, o)
	r := runLoad(t, loadtest.Config{
		Scenario: "push",
		URL:      e.proxy.WSURL(""),
		Conns:    40,
		Rate:     200,
		Duration: 2 * time.Second,
		Push:     loadtest.PushConfig{Channels: 4, Rate: 20},
		TLS:      loadtest.TLSConfig{CAFile: e.certs.CACert},
	})
	p := r.Push
	if p.Subscribers != 40 || p.Publications < 20 || p.PublishErrs != 0 {
		t.Fatalf("%d subscribers, %d publications (%d failed); want 40, >= 20, 0", p.Subscribers, p.Publications, p.PublishErrs)
	}
	want := int64(10 * p.Publications) // 10 subscribers per channel
	if p.Expected != want || p.Delivered != want || p.Lost != 0 || p.Duplicates != 0 || p.OutOfOrder != 0 || p.ServerCloses != 0 {
		t.Fatalf("expected %d delivered %d lost %d dup %d ooo %d closes %d; want %d, %d, 0, 0, 0, 0",
			p.Expected, p.Delivered, p.Lost, p.Duplicates, p.OutOfOrder, p.ServerCloses, want, want)
	}
	if got := e.a.Stats().Deliveries; got != want {
		t.Errorf("Herald delivered %d, the generator counted %d", got, want)
	}
	if got := e.a.Stats().Publications; got != int64(p.Publications) {
		t.Errorf("Herald saw %d publications, the generator made %d", got, p.Publications)
	}
}

// TestLoadtestConnectThroughNginx opens and holds connections over wss://
// through nginx; nginx's access log shows every one of them upgraded.
func TestLoadtestConnectThroughNginx(t *testing.T) {
	e := newEnv(t, envOptions{})
	const conns = 100
	r := runLoad(t, loadtest.Config{
		Scenario: "connect",
		URL:      e.proxy.WSURL(""),
		Conns:    conns,
		Rate:     500,
		Duration: time.Second,
		Settle:   200 * time.Millisecond,
		TLS:      loadtest.TLSConfig{CAFile: e.certs.CACert},
	})
	if r.Opened != conns || r.Connect.Count != conns {
		t.Fatalf("opened %d (connect samples %d), want %d", r.Opened, r.Connect.Count, conns)
	}
	// nginx logs an upgraded request when it ends, after the run closed it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := strings.Count(e.proxy.AccessLog(), `"GET /ws HTTP/1.1" 101 `)
		if n == conns {
			break
		}
		if n > conns || time.Now().After(deadline) {
			t.Fatalf("nginx logged %d upgrades, want %d:\n%s", n, conns, e.proxy.AccessLog())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := e.a.Stats().Upgrades; got != conns {
		t.Errorf("Herald counted %d upgrades, want %d", got, conns)
	}
}
