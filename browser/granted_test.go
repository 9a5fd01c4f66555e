package browser

import (
	"fmt"
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

// TestGrantedSubscriptions: herald.js turns the subscriptions a token
// grants (subs claim, -auto-personal) into Subscriptions announced by the
// client's 'granted' event, delivers their messages, and after a
// reconnect takes the server's new grant as the resubscribe: a
// publication made while disconnected is reported as 'missed'.
func TestGrantedSubscriptions(t *testing.T) {
	exe := testutil.Chromium(t)
	const secret = "browser-granted-secret"
	node, err := server.New(server.Options{
		Engine: testutil.Options{}.Config(), APIAddr: "127.0.0.1:0", HistorySize: 100, HistoryTTL: time.Minute,
		TokenSecret: secret, Tokens: server.TokenOptions{AutoPersonal: true},
		HTTPExtra: heraldjs.Handlers(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(node.Stop)
	tok, err := auth.MintClaims(secret, auth.Claims{Subs: []string{"news"}, RegisteredClaims: jwt.RegisteredClaims{
		Subject: "42", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}})
	if err != nil {
		t.Fatal(err)
	}
	apiAddr := node.APIAddr().String()
	cons := &console{}
	p := openBrowser(t, exe, cons)
	defer cons.check(t)
	p.navigate("http://" + apiAddr + "/herald.js")
	eval[chromedp.Void](p, `(async () => {
		const { HeraldClient } = await import('/herald.js');
		const c = new HeraldClient('ws://`+node.Addr().String()+`/ws', { token: '`+tok+`', pingInterval: 0, minDelay: 50, maxDelay: 100 });
		window.t = { c, granted: [], got: [], missed: [], subscribed: 0 };
		c.on('granted', ({ subscription: s }) => {
			window.t.granted.push(s.channel);
			s.on('subscribed', () => window.t.subscribed++);
			s.on('message', ({ channel, data }) => window.t.got.push(channel + '=' + JSON.stringify(data)));
			s.on('missed', ({ channel }) => window.t.missed.push(channel));
		});
		c.connect();
	})()`, chromedp.EvalAwaitPromise)
	p.waitFor("both grants", `window.t.subscribed === 2`)
	for _, ch := range []string{"news", "user:42"} {
		if _, err := publish(apiAddr, ch, `"live"`); err != nil {
			t.Fatal(err)
		}
	}
	p.waitFor("both messages", `window.t.got.length === 2`)
	eval[chromedp.Void](p, `window.t.c.close()`)
	if _, err := publish(apiAddr, "news", `"while away"`); err != nil {
		t.Fatal(err)
	}
	eval[chromedp.Void](p, `window.t.c.connect()`)
	p.waitFor("granted again", `window.t.subscribed === 4`)
	if _, err := publish(apiAddr, "user:42", `"after"`); err != nil {
		t.Fatal(err)
	}
	p.waitFor("the message after the reconnect", `window.t.got.length === 3`)
	got := eval[string](p, `JSON.stringify({ granted: window.t.granted.sort(), got: window.t.got.sort(), missed: window.t.missed })`)
	want := fmt.Sprintf(`{"granted":["news","user:42"],"got":[%q,%q,%q],"missed":["news"]}`, `news="live"`, `user:42="after"`, `user:42="live"`)
	if got != want {
		t.Fatalf("page saw\n %s\nwant\n %s", got, want)
	}
}
