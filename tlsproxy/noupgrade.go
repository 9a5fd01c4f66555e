package tlsproxy

import (
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// NoUpgradeConfig is nginx-noupgrade.conf: plain HTTP in front of Herald
// that does not pass WebSocket upgrades (see the file), for the tests of
// the transports that need none.
//
//go:embed nginx-noupgrade.conf
var NoUpgradeConfig string

// StartNginxNoUpgrade runs NoUpgradeConfig in front of u (WS and API; no
// certificates: it speaks plain HTTP) like StartNginx: in a directory of
// the test's own, on a loopback port, stopped when the test ends, skipped
// without nginx. Its URLs are http:// and ws://, not those of Proxy.URL.
func StartNginxNoUpgrade(tb testing.TB, u Upstreams) *Proxy {
	tb.Helper()
	exe := NginxPath(tb)
	return startProxy(tb, "nginx", func(dir string, port int) (*Proxy, error) {
		conf := strings.NewReplacer(
			"NGINX_DIR", dir,
			"NGINX_PORT", strconv.Itoa(port),
			"HERALD_WS", u.WS,
			"HERALD_API", u.API,
		).Replace(NoUpgradeConfig)
		path := filepath.Join(dir, "nginx.conf")
		if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
			return nil, fmt.Errorf("tlsproxy: %w", err)
		}
		return startProcess("nginx", dir, port, exe, "-p", dir, "-c", path, "-g", "daemon off;")
	})
}
