package browser

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/herald-ws/herald/internal/testutil"
	"github.com/herald-ws/herald/push"
)

// TestSubprotocolChromium: Chromium fails a handshake whose 101 names no
// subprotocol when it offered some, so /ws must answer herald.json.v1 to
// an offer of it (alone or among others), answer nothing to no offer, and
// refuse an offer of only unknown protocols (the page sees the failure,
// never an open connection speaking something it did not ask for).
func TestSubprotocolChromium(t *testing.T) {
	exe := testutil.Chromium(t)
	node := startNode(t, "127.0.0.1:0", "127.0.0.1:0")
	t.Cleanup(node.Stop)
	cons := &console{}
	p := openBrowser(t, exe, cons)
	defer cons.check(t)
	p.navigate("http://" + node.APIAddr().String() + "/herald.js")
	got := eval[string](p, `(async () => {
		const url = 'ws://`+node.Addr().String()+`/ws';
		const open = (protocols) => new Promise((resolve) => {
			const ws = protocols === undefined ? new WebSocket(url) : new WebSocket(url, protocols);
			let opened = false;
			ws.onopen = () => {
				opened = true;
				const chosen = ws.protocol;
				ws.onmessage = (e) => { ws.close(); resolve('open:' + chosen + ':' + JSON.parse(e.data).op); };
				ws.send('{"op":"ping","id":1}');
			};
			ws.onclose = (e) => { if (!opened) resolve('refused:' + e.code); };
		});
		const out = [];
		out.push(await open(undefined));
		out.push(await open('`+push.Subprotocol+`'));
		out.push(await open(['chat', '`+push.Subprotocol+`']));
		out.push(await open(['chat']));
		out.push(await open(['chat', 'superchat']));
		return out.join(' ');
	})()`, chromedp.EvalAwaitPromise)
	want := strings.Join([]string{"open::pong", "open:" + push.Subprotocol + ":pong", "open:" + push.Subprotocol + ":pong", "refused:1006", "refused:1006"}, " ")
	if got != want {
		t.Fatalf("Chromium:\n got  %s\n want %s", got, want)
	}
}
