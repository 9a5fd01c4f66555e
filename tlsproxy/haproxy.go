package tlsproxy

import (
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// DocumentedHAProxyConfig is the HAProxy configuration docs/deployment.md
// shows, with its production values; tests run it with the substitutions
// of RenderHAProxy.
//
//go:embed haproxy.cfg
var DocumentedHAProxyConfig string

// RenderHAProxy returns DocumentedHAProxyConfig listening on
// 127.0.0.1:port in front of u, presenting pem (certificate and key in one
// file, as HAProxy wants). Like Render it changes only addresses, paths,
// sizes and, with u.Timeout, the tunnel timeout; each value must occur as
// many times as it says.
func RenderHAProxy(port int, pem string, u Upstreams) (string, error) {
	conns := 1000
	if u.Connections > 0 {
		conns = u.Connections
	}
	n := strconv.Itoa(conns)
	subs := []struct {
		old, new string
		times    int
	}{
		// The server line first: it holds one of the three maxconn values.
		{"server herald1 127.0.0.1:8080 maxconn 200000", "server herald1 " + u.WS + " maxconn " + n, 1},
		{"server herald1 127.0.0.1:8081", "server herald1 " + u.API, 1},
		{"maxconn 200000", "maxconn " + n, 2},
		{"fd-hard-limit 410000", "fd-hard-limit " + strconv.Itoa(2*conns+256), 1},
		{"tune.ssl.cachesize 200000", "tune.ssl.cachesize 1000", 1},
		{"bind :443 ssl crt /etc/haproxy/certs/push.example.com.pem alpn http/1.1", "bind 127.0.0.1:" + strconv.Itoa(port) + " ssl crt " + pem + " alpn http/1.1", 1},
	}
	if u.Timeout > 0 {
		subs = append(subs, struct {
			old, new string
			times    int
		}{"timeout tunnel 120s", "timeout tunnel " + strconv.Itoa(int(u.Timeout.Seconds())) + "s", 1})
	}
	conf := DocumentedHAProxyConfig
	for _, s := range subs {
		if got := strings.Count(conf, s.old); got != s.times {
			return "", fmt.Errorf("tlsproxy: the documented haproxy.cfg has %q %d times, want %d", s.old, got, s.times)
		}
		conf = strings.ReplaceAll(conf, s.old, s.new)
	}
	return conf, nil
}

// HAProxyPath finds haproxy ($HERALD_HAPROXY, haproxy on PATH,
// /usr/sbin/haproxy), or skips the test; HERALD_REQUIRE_HAPROXY=1 makes a
// missing haproxy a failure.
func HAProxyPath(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("HERALD_HAPROXY"); p != "" {
		return p
	}
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/haproxy"); err == nil {
		return "/usr/sbin/haproxy"
	}
	const msg = "haproxy not found (looked for $HERALD_HAPROXY, haproxy on PATH, /usr/sbin/haproxy); install it with scripts/install-nginx.sh haproxy"
	if os.Getenv("HERALD_REQUIRE_HAPROXY") == "1" {
		tb.Fatal(msg + " (HERALD_REQUIRE_HAPROXY=1)")
	}
	tb.Skip(msg)
	return ""
}

// StartHAProxy runs the documented HAProxy configuration (see
// RenderHAProxy) in front of u in the foreground, waits until it accepts
// connections, and stops it when the test ends. It skips the test when
// there is no haproxy. Test goroutine only.
func StartHAProxy(tb testing.TB, u Upstreams) *Proxy {
	tb.Helper()
	exe := HAProxyPath(tb)
	return startProxy(tb, "haproxy", func(dir string, port int) (*Proxy, error) {
		cert, err := os.ReadFile(u.Certs.ServerCert)
		if err != nil {
			return nil, fmt.Errorf("tlsproxy: %w", err)
		}
		key, err := os.ReadFile(u.Certs.ServerKey)
		if err != nil {
			return nil, fmt.Errorf("tlsproxy: %w", err)
		}
		pem := filepath.Join(dir, "server-and-key.pem")
		if err := os.WriteFile(pem, append(cert, key...), 0o600); err != nil {
			return nil, fmt.Errorf("tlsproxy: %w", err)
		}
		conf, err := RenderHAProxy(port, pem, u)
		if err != nil {
			return nil, err
		}
		path := filepath.Join(dir, "haproxy.cfg")
		if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
			return nil, fmt.Errorf("tlsproxy: %w", err)
		}
		// -db: foreground, no daemon; -W would add a master process.
		return startProcess("haproxy", dir, port, exe, "-db", "-f", path)
	})
}
