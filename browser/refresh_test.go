package browser

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/golang-jwt/jwt/v5"

	"github.com/herald-ws/herald/auth"
	heraldjs "github.com/herald-ws/herald/clients/js"
	"github.com/herald-ws/herald/internal/testutil"
	"github.com/herald-ws/herald/server"
)

// TestRefreshTokenCallback: herald.js answers the server's refresh
// request with its refreshToken callback, so a connection whose token
// expires stays open (same connection, no reconnect, still answering) past the grace;
// without a callback the server closes it with 4001 and the client
// reports it and reconnects.
func TestRefreshTokenCallback(t *testing.T) {
	exe := testutil.Chromium(t)
	const secret = "browser-refresh-secret"
	eng := testutil.Options{HandshakeTimeout: 400 * time.Millisecond}.Config() // the sweep ticks every 100 ms
	node, err := server.New(server.Options{
		Engine: eng, APIAddr: "127.0.0.1:0", HistorySize: 100, HistoryTTL: time.Minute,
		TokenSecret: secret, Tokens: server.TokenOptions{RefreshGrace: 500 * time.Millisecond},
		HTTPExtra: heraldjs.Handlers(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(node.Stop)
	mint := func(ttl time.Duration) string {
		t.Helper()
		tok, err := auth.MintClaims(secret, auth.Claims{RegisteredClaims: jwt.RegisteredClaims{
			Subject: "42", ExpiresAt: jwt.NewNumericDate(time.Now().Add(ttl))}})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	cons := &console{}
	p := openBrowser(t, exe, cons)
	defer cons.check(t)
	p.navigate("http://" + node.APIAddr().String() + "/herald.js")
	// Minted once the browser is up: starting it may take longer than
	// the short token lives.
	short, long := mint(time.Second), mint(time.Hour)
	got := eval[string](p, `(async () => {
		const { HeraldClient } = await import('/herald.js');
		const url = 'ws://`+node.Addr().String()+`/ws';
		const events = [];
		let calls = 0;
		const c = new HeraldClient(url, { token: '`+short+`', pingInterval: 0,
			refreshToken: async () => { calls++; return '`+long+`'; } });
		c.on('connecting', ({ code }) => events.push('connecting:' + code));
		c.on('refreshed', () => events.push('refreshed'));
		c.on('error', ({ type, error }) => events.push('error:' + type + ':' + error.code));
		const sub = c.subscribe('user:42');
		c.connect();
		await sub.ready(5000);
		await new Promise((r) => c.once('refreshed', r));
		await new Promise((r) => setTimeout(r, 1500)); // three graces
		await c.ping();
		const state = c.state;
		c.close();
		return JSON.stringify({ events, calls, state });
	})()`, chromedp.EvalAwaitPromise)
	if want := `{"events":["refreshed"],"calls":1,"state":"connected"}`; got != want {
		t.Fatalf("with refreshToken:\n got  %s\n want %s", got, want)
	}

	got = eval[string](p, `(async () => {
		const { HeraldClient } = await import('/herald.js');
		const url = 'ws://`+node.Addr().String()+`/ws';
		const events = [];
		const c = new HeraldClient(url, { token: '`+mint(time.Second)+`', pingInterval: 0, minDelay: 50, maxDelay: 100 });
		c.on('error', ({ type, error }) => events.push('error:' + type + ':' + error.code));
		const lost = new Promise((r) => c.once('connecting', ({ code }) => r(code)));
		c.connect();
		const code = await lost;
		c.close();
		return JSON.stringify({ events, code });
	})()`, chromedp.EvalAwaitPromise)
	if want := `{"events":["error:token:token_expired"],"code":4001}`; got != want {
		t.Fatalf("without refreshToken:\n got  %s\n want %s", got, want)
	}
}
