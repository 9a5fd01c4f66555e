package browser

import (
	"net/url"
	"strings"
	"testing"

	"github.com/herald-ws/herald/internal/testutil"
	"github.com/herald-ws/herald/tlsproxy"
)

func transportIs(name string) string {
	return `document.querySelector('#transport').dataset.transport === '` + name + `'`
}

// TestDemoFallsBackBehindAProxyWithoutUpgrade opens the demo page through
// nginx configured not to pass WebSocket upgrades (tlsproxy's
// nginx-noupgrade.conf, a corporate proxy's behaviour): herald.js fails to
// open /ws, falls back to Server-Sent Events by itself, receives
// publications, and after a Herald restart behind the same proxy
// reconnects over SSE and is told it missed messages (the new node's
// history is empty). With transports=poll the same holds for long polling.
// It needs Chromium and nginx (skips without either, unless
// HERALD_REQUIRE_BROWSER / HERALD_REQUIRE_NGINX).
func TestDemoFallsBackBehindAProxyWithoutUpgrade(t *testing.T) {
	exe := testutil.Chromium(t)
	tlsproxy.NginxPath(t)
	for _, tc := range []struct {
		name       string
		transports string // the page's transports parameter ("" for herald.js's default)
		want       string
	}{
		{"default order falls back to sse", "", "sse"},
		{"poll", "poll", "poll"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node := startNode(t, "127.0.0.1:0", "127.0.0.1:0")
			t.Cleanup(func() { node.Stop() }) // the node running at the end
			clientAddr, apiAddr := node.Addr().String(), node.APIAddr().String()
			px := tlsproxy.StartNginxNoUpgrade(t, tlsproxy.Upstreams{WS: clientAddr, API: apiAddr})

			cons := &console{}
			p := openBrowser(t, exe, cons)
			defer cons.check(t)
			q := url.Values{"ws": {"ws://" + px.Addr + "/ws"}, "channel": {"news"}, "minDelay": {"100"}, "maxDelay": {"1000"}}
			if tc.transports != "" {
				q.Set("transports", tc.transports)
			}
			// Held polls of 2 s, a dead one noticed after 2 s + 10 s.
			q.Set("pollTimeout", "2000")
			p.navigate("http://" + px.Addr + "/demo/?" + q.Encode())
			p.waitFor("connected over "+tc.want, connected+" && "+transportIs(tc.want))
			if tc.transports == "" {
				// The WebSocket attempts really went through nginx and
				// were refused there, without an upgrade.
				if log := px.AccessLog(); !strings.Contains(log, "GET /ws HTTP/1.1\" 426") {
					t.Fatalf("nginx access log shows no refused /ws upgrade:\n%s", log)
				}
			}

			var want []shown
			send := func(data string) uint64 {
				t.Helper()
				off, err := publish(apiAddr, "news", data)
				if err != nil {
					t.Fatal(err)
				}
				want = append(want, shown{off, data})
				return off
			}
			send(`{"n":1}`)
			last := send(`{"n":2}`)
			p.waitFor("the first messages", shows(last))

			node.Stop()
			p.waitFor("the page to notice the restart", `document.querySelector('#state').dataset.state === 'connecting'`)
			node = startNode(t, clientAddr, apiAddr)
			p.waitFor("reconnected after the restart", connected+" && "+recoveredIs(1)+" && "+transportIs(tc.want))
			last = send(`{"n":3}`)
			p.waitFor("the message after the restart", shows(last))
			if got := p.messages(); !equal(got, want) {
				t.Fatalf("the page shows %v, want %v", got, want)
			}
		})
	}
}
