package tlsproxy

import (
	_ "embed"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// DocumentedConfig is the nginx configuration docs/deployment.md shows for nginx, with
// its production values (port 443, certificates under /etc/ssl/herald,
// Herald on 127.0.0.1:8080 and :8081). Tests run exactly this file with the
// substitutions of Render and nothing else.
//
//go:embed nginx.conf
var DocumentedConfig string

// Upstreams says where the proxy sends traffic and what it presents.
type Upstreams struct {
	WS    string // Herald's client listener, host:port
	API   string // Herald's API listener, host:port
	Certs Files  // the server certificate and key nginx presents
	// Timeout, when not zero, replaces the documented 120 s
	// proxy_read_timeout, proxy_send_timeout and send_timeout of /ws, for
	// tests of what those timeouts do. Whole seconds.
	Timeout time.Duration
	// Connections, when not zero, replaces the test default of 1,024
	// worker_connections (each proxied WebSocket takes two), with an
	// open-file limit to match.
	Connections int
}

// substitution replaces one production value of DocumentedConfig by the
// value a test run needs.
type substitution struct{ old, new string }

// Render returns DocumentedConfig for an nginx process confined to dir and
// listening on 127.0.0.1:port in front of u. It changes only paths, ports,
// addresses and sizes (fewer workers and connections, an open-file limit
// under the test machine's), each of which must occur exactly once, so a
// change to the documented file that a test would silently miss fails
// here instead.
func Render(dir string, port int, u Upstreams) (string, error) {
	wc := 1024
	if u.Connections > 0 {
		wc = u.Connections
	}
	subs := []substitution{
		{"worker_processes auto;", "worker_processes 1;"},
		{"worker_rlimit_nofile 240000;", "worker_rlimit_nofile " + strconv.Itoa(2*wc+64) + ";"},
		{"pid /run/nginx-herald.pid;", "pid " + filepath.Join(dir, "nginx.pid") + ";"},
		{"error_log /var/log/nginx/herald-error.log warn;", "error_log " + filepath.Join(dir, "error.log") + " warn;"},
		{"worker_connections 100000;", "worker_connections " + strconv.Itoa(wc) + ";"},
		{"access_log /var/log/nginx/herald-access.log herald;", "access_log " + filepath.Join(dir, "access.log") + " herald;"},
		{"server 127.0.0.1:8080;", "server " + u.WS + ";"},
		{"server 127.0.0.1:8081;", "server " + u.API + ";"},
		{"listen 443 ssl;", "listen 127.0.0.1:" + strconv.Itoa(port) + " ssl;"},
		{"ssl_certificate     /etc/ssl/herald/fullchain.pem;", "ssl_certificate     " + u.Certs.ServerCert + ";"},
		{"ssl_certificate_key /etc/ssl/herald/privkey.pem;", "ssl_certificate_key " + u.Certs.ServerKey + ";"},
		{"ssl_session_cache   shared:herald_tls:50m;", "ssl_session_cache   shared:herald_tls:1m;"},
	}
	if u.Timeout > 0 {
		sec := strconv.Itoa(int(u.Timeout.Seconds()))
		subs = append(subs,
			substitution{"proxy_read_timeout 120s;", "proxy_read_timeout " + sec + "s;"},
			substitution{"proxy_send_timeout 120s;", "proxy_send_timeout " + sec + "s;"},
			substitution{"send_timeout 120s;", "send_timeout " + sec + "s;"})
	}
	conf := DocumentedConfig
	for _, s := range subs {
		if n := strings.Count(conf, s.old); n != 1 {
			return "", fmt.Errorf("tlsproxy: the documented nginx.conf has %q %d times, want once", s.old, n)
		}
		conf = strings.Replace(conf, s.old, s.new, 1)
	}
	return conf, nil
}

// Proxy is a TLS proxy process (nginx or HAProxy) started by a test: its
// own directory (config, and for nginx pid file and logs), in the
// foreground, on a loopback port of its own.
type Proxy struct {
	// Addr is 127.0.0.1:port, where the proxy terminates TLS.
	Addr string
	// Dir holds the configuration (nginx: nginx.conf, nginx.pid,
	// error.log, access.log; HAProxy: haproxy.cfg and the certificate).
	Dir string
	// Name is "nginx" or "haproxy".
	Name string

	cmd    *exec.Cmd
	exited chan struct{} // closed when the process is gone
	err    error         // Wait's result, once exited is closed
	stderr lockedBuffer  // nginx's own stdout and stderr (before error.log opens)
}

// lockedBuffer is written by exec's copying goroutine and read by tests.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// NginxPath finds the nginx binary ($HERALD_NGINX, nginx on PATH,
// /usr/sbin/nginx), or skips the test; with HERALD_REQUIRE_NGINX=1 a
// missing nginx fails it instead, so that CI cannot pass by skipping.
func NginxPath(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("HERALD_NGINX"); p != "" {
		return p
	}
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx"
	}
	const msg = "nginx not found (looked for $HERALD_NGINX, nginx on PATH, /usr/sbin/nginx); install it with scripts/install-nginx.sh"
	if os.Getenv("HERALD_REQUIRE_NGINX") == "1" {
		tb.Fatal(msg + " (HERALD_REQUIRE_NGINX=1)")
	}
	tb.Skip(msg)
	return ""
}

// StartNginx runs the documented nginx configuration (see Render) in
// front of u in a directory of the test's own, waits until it accepts
// connections, and stops it when the test ends. It skips the test when
// there is no nginx (see NginxPath). Test goroutine only.
func StartNginx(tb testing.TB, u Upstreams) *Proxy {
	tb.Helper()
	exe := NginxPath(tb)
	return startProxy(tb, "nginx", func(dir string, port int) (*Proxy, error) {
		conf, err := Render(dir, port, u)
		if err != nil {
			return nil, err
		}
		path := filepath.Join(dir, "nginx.conf")
		if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
			return nil, fmt.Errorf("tlsproxy: %w", err)
		}
		return startProcess("nginx", dir, port, exe, "-p", dir, "-c", path, "-g", "daemon off;")
	})
}

// startProxy starts a proxy with start on a free port, retrying when the
// port was taken meanwhile, and stops it when the test ends.
func startProxy(tb testing.TB, name string, start func(dir string, port int) (*Proxy, error)) *Proxy {
	tb.Helper()
	var lastErr error
	// The port is found free and then handed to the proxy, so another
	// process may take it in between: try a few.
	for range 5 {
		port, err := freePort()
		if err != nil {
			tb.Fatal(err)
		}
		n, err := start(tb.TempDir(), port)
		if err == nil {
			tb.Cleanup(func() {
				if err := n.Stop(); err != nil {
					tb.Errorf("%s: %v", name, err)
				}
				if tb.Failed() {
					tb.Logf("%s log:\n%s", name, n.ErrorLog())
				}
			})
			return n
		}
		lastErr = err
		if !strings.Contains(err.Error(), "in use") {
			break
		}
	}
	tb.Fatalf("start %s: %v", name, lastErr)
	return nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("tlsproxy: find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// startProcess runs exe with args as the proxy name listening on
// 127.0.0.1:port and waits until it accepts connections.
func startProcess(name, dir string, port int, exe string, args ...string) (*Proxy, error) {
	n := &Proxy{Addr: "127.0.0.1:" + strconv.Itoa(port), Dir: dir, Name: name, exited: make(chan struct{})}
	n.cmd = exec.Command(exe, args...)
	n.cmd.Stdout = &n.stderr
	n.cmd.Stderr = &n.stderr
	// Its own process group, so that a signal to the test's group (an
	// interrupted go test) does not reach it before cleanup does.
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := n.cmd.Start(); err != nil {
		return nil, fmt.Errorf("tlsproxy: run %s: %w", exe, err)
	}
	go func() {
		n.err = n.cmd.Wait()
		close(n.exited)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-n.exited:
			return nil, fmt.Errorf("tlsproxy: %s exited at start (%v): %s", name, n.err, n.ErrorLog())
		default:
		}
		c, err := net.DialTimeout("tcp", n.Addr, time.Second)
		if err == nil {
			c.Close()
			return n, nil
		}
		if time.Now().After(deadline) {
			_ = n.Stop()
			return nil, fmt.Errorf("tlsproxy: %s not accepting on %s after 10 s: %v: %s", name, n.Addr, err, n.ErrorLog())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WorkerPIDs returns the process ids of the proxy's children (nginx's
// workers: the rendered configuration runs one), for sampling their
// memory.
func (n *Proxy) WorkerPIDs() ([]int, error) {
	pid := n.cmd.Process.Pid
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return nil, fmt.Errorf("tlsproxy: nginx workers: %w", err)
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if p, err := strconv.Atoi(f); err == nil {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("tlsproxy: the proxy has no worker processes")
	}
	return out, nil
}

// ErrorLog returns what the proxy reported so far: its output, and
// nginx's error.log.
func (n *Proxy) ErrorLog() string {
	out := n.stderr.String()
	if n.Name == "nginx" {
		b, err := os.ReadFile(filepath.Join(n.Dir, "error.log"))
		if err != nil {
			return out + "(no error.log: " + err.Error() + ")"
		}
		out += string(b)
	}
	return out
}

// AccessLog returns nginx's access.log so far ("" for HAProxy, which
// logs nothing in this configuration).
func (n *Proxy) AccessLog() string {
	b, _ := os.ReadFile(filepath.Join(n.Dir, "access.log"))
	return string(b)
}

// Stop ends the proxy (SIGTERM, a fast shutdown for both; SIGKILL after
// 5 s) and waits for it. It reports a proxy that had died before it was
// asked to stop.
// Safe to call more than once.
func (n *Proxy) Stop() error {
	select {
	case <-n.exited:
		if n.err != nil && !errors.Is(n.err, errStopped) {
			return fmt.Errorf("%s had exited: %v: %s", n.Name, n.err, n.stderr.String())
		}
		return nil
	default:
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(5 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.exited
	}
	n.err = errStopped
	return nil
}

var errStopped = errors.New("stopped")

// WSURL is wss://127.0.0.1:port/ws?query ("" query: none).
func (n *Proxy) WSURL(query string) string {
	u := "wss://" + n.Addr + "/ws"
	if query != "" {
		u += "?" + query
	}
	return u
}

// URL is https://127.0.0.1:port/path.
func (n *Proxy) URL(path string) string { return "https://" + n.Addr + path }
