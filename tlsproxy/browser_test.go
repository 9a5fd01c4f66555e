package tlsproxy

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/herald-ws/herald/internal/testutil"
)

// tab is one headless Chromium tab that accepts the test server
// certificate, by its public key only: every other certificate error
// still fails.
type tab struct {
	t   *testing.T
	ctx context.Context

	mu         sync.Mutex
	exceptions []string
}

func openTab(t *testing.T, exe, spki string) *tab {
	t.Helper()
	dir := t.TempDir()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		// Honoured only with a user data directory of the test's own.
		chromedp.Flag("ignore-certificate-errors-spki-list", spki),
		chromedp.UserDataDir(dir),
	)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc() // waits for the browser to exit
	})
	if err := chromedp.Do(ctx); err != nil { // starts the browser: no timeout
		t.Fatalf("start %s: %v", exe, err)
	}
	tb := &tab{t: t, ctx: ctx}
	err := chromedp.Listen(ctx, func(ev any) {
		if ev, ok := ev.(*runtime.EventExceptionThrown); ok {
			d := ev.ExceptionDetails
			text := d.Text
			if d.Exception != nil {
				text += " " + d.Exception.Description
			}
			tb.mu.Lock()
			tb.exceptions = append(tb.exceptions, fmt.Sprintf("%s:%d: %s", d.URL, d.LineNumber, text))
			tb.mu.Unlock()
		}
	})
	if err != nil {
		t.Fatalf("listen to the page: %v", err)
	}
	t.Cleanup(func() {
		tb.mu.Lock()
		defer tb.mu.Unlock()
		for _, x := range tb.exceptions {
			t.Errorf("page exception: %s", x)
		}
	})
	return tb
}

func (tb *tab) navigate(u string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(u)); err != nil {
		tb.t.Fatalf("open %s: %v", u, err)
	}
}

func evalJS[T any](tb *tab, expr string) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		tb.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

func (tb *tab) waitFor(what, expr string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 25*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(25*time.Millisecond), chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		dctx, dcancel := context.WithTimeout(tb.ctx, 5*time.Second)
		defer dcancel()
		page, _ := chromedp.Run(dctx, chromedp.Evaluate[string](`JSON.stringify({state: document.querySelector('#state')?.dataset.state,
			sub: document.querySelector('#sub-state')?.dataset.state,
			recovered: document.querySelector('#recovered')?.dataset.count,
			error: document.querySelector('#last-error')?.textContent,
			messages: [...document.querySelectorAll('#messages li')].map(li => li.textContent),
			raw: window.raw})`))
		tb.t.Fatalf("waiting for %s (%s): %v\npage: %s", what, expr, err, page)
	}
}

// shown is the demo page's message list: offset and data, in order.
func (tb *tab) shown() []string {
	tb.t.Helper()
	return evalJS[[]string](tb, `[...document.querySelectorAll('#messages li[data-offset]')]
		.map(li => li.dataset.offset + ' ' + li.querySelector('.data').textContent)`)
}

const demoConnected = `document.querySelector('#state').dataset.state === 'connected' &&
	document.querySelector('#sub-state').dataset.state === 'subscribed'`

func demoShows(offset uint64) string {
	return fmt.Sprintf(`document.querySelector('#messages li[data-offset="%d"]') !== null`, offset)
}

// rawSocket opens a plain WebSocket named name in the page (beside
// herald.js) that records its close code in window.raw[name].
func rawSocket(tb *tab, name, wsURL string) {
	tb.t.Helper()
	evalJS[bool](tb, fmt.Sprintf(`new Promise((resolve, reject) => {
		window.raw = window.raw || {};
		const r = window.raw[%[1]q] = {open: false, code: null};
		const w = new WebSocket(%[2]q);
		window['ws_' + %[1]q] = w;
		w.onopen = () => { r.open = true; resolve(true); };
		w.onclose = (e) => { r.code = e.code; if (!r.open) reject(new Error('closed before open: ' + e.code)); };
	})`, name, wsURL))
}

func rawClosedWith(name string, code int) string {
	return fmt.Sprintf(`window.raw && window.raw[%q].code === %d`, name, code)
}

// TestChromiumWSSRecoversAcrossRestart loads the demo page over https://
// through nginx; herald.js connects over wss:// through the same nginx,
// shows a publication, reconnects after Herald restarts behind nginx and
// shows what another node published meanwhile, with recovered:true (the
// missed counter stays 0) and nothing twice. Plain page WebSockets see
// 1001 at shutdown and 1009 for a too-large message, through nginx.
func TestChromiumWSSRecoversAcrossRestart(t *testing.T) {
	exe := testutil.Chromium(t)
	e := newEnv(t, envOptions{MaxMessageSize: 4096})
	tb := openTab(t, exe, e.ca.SPKIHash())

	wsURL := e.proxy.WSURL("")
	q := url.Values{"ws": {wsURL}, "channel": {"news"}, "maxDelay": {"500"}}
	tb.navigate(e.proxy.URL("/demo/?" + q.Encode()))
	if proto := evalJS[string](tb, `location.protocol`); proto != "https:" {
		t.Fatalf("page loaded over %s", proto)
	}
	tb.waitFor("connected over wss://", demoConnected)
	rawSocket(tb, "shutdown", wsURL)

	var want []string
	add := func(off uint64, data string) { want = append(want, strconv.FormatUint(off, 10)+" "+data) }
	d := `{"n":1}`
	off := e.publish("news", d)
	add(off, d)
	tb.waitFor("the first message", demoShows(off))

	e.shutdownA()
	tb.waitFor("1001 at shutdown", rawClosedWith("shutdown", 1001))
	tb.waitFor("the page noticing", `document.querySelector('#state').dataset.state !== 'connected'`)
	var last uint64
	for _, d := range []string{`{"n":2}`, `{"n":3}`} {
		last = e.publishB("news", d)
		add(last, d)
	}
	e.restartA()
	tb.waitFor("reconnected and recovered", demoConnected+" && "+demoShows(last))
	if got := evalJS[string](tb, `document.querySelector('#recovered').dataset.count`); got != "0" {
		t.Fatalf("recovered:false count %s after the restart, want 0 (history was in NATS)", got)
	}
	d = `{"n":4}`
	off = e.publish("news", d)
	add(off, d)
	tb.waitFor("a live message after the recovery", demoShows(off))
	if got := tb.shown(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("the page shows\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	rawSocket(tb, "big", wsURL)
	evalJS[bool](tb, `(window.ws_big.send('x'.repeat(8000)), true)`)
	tb.waitFor("1009 for a too-large message", rawClosedWith("big", 1009))
}
