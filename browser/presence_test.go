package browser

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/herald-ws/herald/auth"
	heraldjs "github.com/herald-ws/herald/clients/js"
	"github.com/herald-ws/herald/internal/testutil"
	"github.com/herald-ws/herald/server"
)

// apiPost posts body to the node's API path and fails unless it is 200.
func apiPost(t *testing.T, apiAddr, path, body string) {
	t.Helper()
	res, err := apiClient.Post("http://"+apiAddr+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %d %s", path, res.StatusCode, b)
	}
}

// TestDemoPresenceLastAndServerAPI drives herald.js in Chromium through
// the server API's features: subscribe with last (the newest two
// messages first, then live ones), the demo's presence list (loaded from
// the API, then kept by joins and leaves of another user), an API
// unsubscribe ending the subscription, and an API disconnect (4100)
// stopping the client for good.
func TestDemoPresenceLastAndServerAPI(t *testing.T) {
	exe := testutil.Chromium(t)
	const secret = "browser-presence-secret"
	eng := testutil.Options{}.Config()
	node, err := server.New(server.Options{
		Engine: eng, APIAddr: "127.0.0.1:0", HistorySize: 100, HistoryTTL: time.Minute,
		TokenSecret: secret, HTTPExtra: heraldjs.Handlers(),
		PresenceChannels: []string{"room:*"}, PresenceJoinLeave: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(node.Stop)
	apiAddr := node.APIAddr().String()
	var offs []uint64
	for i := range 5 {
		off, err := publish(apiAddr, "room:1", fmt.Sprint(i))
		if err != nil {
			t.Fatal(err)
		}
		offs = append(offs, off)
	}
	token, err := auth.Mint(secret, "42", nil, false, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	cons := &console{}
	p := openBrowser(t, exe, cons)
	defer cons.check(t)
	q := url.Values{"ws": {"ws://" + node.Addr().String() + "/ws"}, "token": {token}, "channel": {"room:1"},
		"last": {"2"}, "minDelay": {"50"}, "maxDelay": {"100"}}
	p.navigate("http://" + apiAddr + "/demo/?" + q.Encode())
	p.waitFor("subscribed", connected)
	p.waitFor("the newest two", shows(offs[4]))
	live, err := publish(apiAddr, "room:1", `"live"`)
	if err != nil {
		t.Fatal(err)
	}
	p.waitFor("the live message", shows(live))
	if got, want := p.messages(), []shown{{offs[3], "3"}, {offs[4], "4"}, {live, `"live"`}}; !equal(got, want) {
		t.Fatalf("the page shows %v, want %v", got, want)
	}

	presence := func(n int) string {
		return fmt.Sprintf(`document.querySelector('#presence').dataset.count === '%d'`, n)
	}
	p.waitFor("itself in presence", presence(1))
	tok43, err := auth.Mint(secret, "43", nil, false, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other := testutil.DialWS(t, node, "token="+tok43, nil)
	other.Send(`{"op":"subscribe","channel":"room:1","id":1}`)
	other.ExpectAck(1)
	p.waitFor("user 43's join", presence(2))
	if got := eval[string](p, `[...document.querySelectorAll('#presence li')].map(li => li.textContent).sort().join(',')`); got != "42,43" {
		t.Fatalf("presence list %q, want 42,43", got)
	}
	_ = other.Conn.Close()
	p.waitFor("user 43's leave", presence(1))

	apiPost(t, apiAddr, "/api/unsubscribe", `{"user":"42","channel":"room:1"}`)
	p.waitFor("unsubscribed by the API", `document.querySelector('#sub-state').dataset.state === 'unsubscribed'`)

	apiPost(t, apiAddr, "/api/disconnect", `{"user":"42"}`)
	p.waitFor("disconnected by the API", `document.querySelector('#state').dataset.state === 'disconnected'`)
	time.Sleep(500 * time.Millisecond) // several reconnect delays
	if state := eval[string](p, `document.querySelector('#state').dataset.state`); state != "disconnected" {
		t.Fatalf("state %q after the API disconnect, want disconnected (no reconnect)", state)
	}
	if conns := node.Engine().Conns(); conns != 0 {
		t.Fatalf("%d connections after the disconnect", conns)
	}
}
