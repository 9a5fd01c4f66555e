//go:build soak

package tlsproxy

import (
	"testing"
	"time"

	"github.com/herald-ws/herald/loadtest"
)

// TestSoakNginxMemoryPerConnection holds 4,000 idle wss:// connections
// through nginx and reports the memory and connect times it takes (run
// without -race: go test -tags soak -run Soak ./tlsproxy/). Every
// connection must open.
func TestSoakNginxMemoryPerConnection(t *testing.T) {
	const conns = 4000
	e := newEnv(t, envOptions{ProxyConns: 3 * conns, Loops: 2})
	workers, err := e.proxy.WorkerPIDs()
	if err != nil {
		t.Fatal(err)
	}
	r := runLoad(t, loadtest.Config{
		Scenario:  "connect",
		URL:       e.proxy.WSURL(""),
		Conns:     conns,
		Rate:      1000,
		Duration:  5 * time.Second,
		Settle:    2 * time.Second,
		ServerPID: workers[0],
		TLS:       loadtest.TLSConfig{CAFile: e.certs.CACert},
	})
	if r.Opened != conns {
		t.Fatalf("opened %d of %d", r.Opened, conns)
	}
	s := r.Server
	t.Logf("nginx worker: RSS %d -> %d bytes, %.0f B per idle wss:// connection; connect p50 %v p99 %v",
		s.RSSBefore, s.RSSAfter, s.RSSPerConn, time.Duration(r.Connect.P50*1000), time.Duration(r.Connect.P99*1000))
}
