package browser

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/herald-ws/herald/auth"
	heraldjs "github.com/herald-ws/herald/clients/js"
	"github.com/herald-ws/herald/internal/testutil"
	"github.com/herald-ws/herald/server"
)

// waitTimeout bounds every wait on the page or the server.
const waitTimeout = 20 * time.Second

// startNode starts a node with the browser client mounted on its API. With
// fixed addresses (a restart) it retries while the old node's ports are
// still held.
func startNode(t *testing.T, clientAddr, apiAddr string) *server.Node {
	t.Helper()
	return startNodeWith(t, clientAddr, apiAddr, "")
}

// startNodeWith is startNode with a token secret ("" for anonymous mode).
func startNodeWith(t *testing.T, clientAddr, apiAddr, secret string) *server.Node {
	t.Helper()
	eng := testutil.Options{}.Config()
	eng.Addr = clientAddr
	// No SO_REUSEPORT here on purpose: the restart must bind the same port
	// while the first node's connections sit in TIME_WAIT, which is what
	// the engine's SO_REUSEADDR is for.
	opts := server.Options{
		Engine:      eng,
		APIAddr:     apiAddr,
		HistorySize: 100,
		HistoryTTL:  time.Minute,
		TokenSecret: secret,
		HTTPExtra:   heraldjs.Handlers(),
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := server.New(opts)
		if err != nil {
			t.Fatalf("server.New: %v", err)
		}
		err = n.Start()
		if err == nil {
			return n
		}
		n.Stop() // a failed Start leaves the hub and the broker running
		if time.Now().After(deadline) {
			t.Fatalf("start node on %s and %s: %v", clientAddr, apiAddr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// apiClient opens a connection per request: a pooled one could outlive the
// node it was made to.
var apiClient = &http.Client{
	Timeout:   5 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true},
}

// publish posts data to channel through the node's API; it returns the
// offset.
func publish(apiAddr, channel, data string) (uint64, error) {
	body := fmt.Sprintf(`{"channel":%q,"data":%s}`, channel, data)
	res, err := apiClient.Post("http://"+apiAddr+"/api/publish", "application/json", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	var out struct {
		Offset uint64 `json:"offset"`
		Error  string `json:"error"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		return 0, fmt.Errorf("publish: HTTP %d: %w", res.StatusCode, err)
	}
	if res.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("publish: HTTP %d: %s", res.StatusCode, out.Error)
	}
	return out.Offset, nil
}

// console collects what the page reports: exceptions and console.error
// calls fail the test; browser log entries (such as the failed WebSocket
// attempts while the server is down) are only logged.
type console struct {
	mu       sync.Mutex
	failures []string
	logs     []string
}

func (c *console) listen(ev any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch ev := ev.(type) {
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		text := d.Text
		if d.Exception != nil && d.Exception.Description != "" {
			text += " " + d.Exception.Description
		}
		c.failures = append(c.failures, fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber, text))
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
			var parts []string
			for _, a := range ev.Args {
				if a.Description != "" {
					parts = append(parts, a.Description)
				} else {
					parts = append(parts, string(a.Value))
				}
			}
			c.failures = append(c.failures, fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(parts, " ")))
		}
	case *log.EventEntryAdded:
		c.logs = append(c.logs, fmt.Sprintf("%s %s: %s", ev.Entry.Source, ev.Entry.Level, ev.Entry.Text))
	}
}

func (c *console) check(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.logs {
		t.Logf("browser log: %s", l)
	}
	c.logs = nil
	for _, f := range c.failures {
		t.Errorf("browser: %s", f)
	}
	c.failures = nil
}

// page drives one tab showing the demo page.
type page struct {
	t   *testing.T
	ctx context.Context
}

func openBrowser(t *testing.T, exe string, cons *console) *page {
	t.Helper()
	dir, err := os.MkdirTemp("", "herald-chromium-")
	if err != nil {
		t.Fatal(err)
	}
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
		chromedp.UserDataDir(dir),
	)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc() // waits for the browser to exit
		_ = os.RemoveAll(dir)
	})
	// The first Run starts the browser; it must not carry a timeout.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", exe, err)
	}
	if err := chromedp.Listen(ctx, cons.listen); err != nil {
		t.Fatalf("listen to the console: %v", err)
	}
	return &page{t: t, ctx: ctx}
}

func (p *page) navigate(u string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, waitTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(u)); err != nil {
		p.t.Fatalf("open %s: %v", u, err)
	}
}

// eval evaluates expr in the page.
func eval[T any](p *page, expr string, opts ...chromedp.EvaluateOption) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, waitTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, opts...))
	if err != nil {
		p.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitFor waits until the JavaScript expression is truthy, at most
// waitTimeout; what is waited for is described by what.
func (p *page) waitFor(what, expr string) {
	p.t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(p.ctx, waitTimeout+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](expr,
		chromedp.WithPollingInterval(25*time.Millisecond),
		chromedp.WithPollingTimeout(waitTimeout)))
	if err != nil {
		p.t.Fatalf("waiting for %s (%s): %v\npage: %s", what, expr, err, p.dump())
	}
	p.t.Logf("%s after %v", what, time.Since(start).Round(time.Millisecond))
}

// dump describes the page's state for failure messages.
func (p *page) dump() string {
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({
		state: document.querySelector('#state')?.textContent,
		sub: document.querySelector('#sub-state')?.textContent,
		recovered: document.querySelector('#recovered')?.textContent,
		error: document.querySelector('#last-error')?.textContent,
		messages: [...document.querySelectorAll('#messages li')].map(li => li.textContent),
		events: [...document.querySelectorAll('#events li')].map(li => li.textContent).reverse(),
	}, null, 1)`))
	if err != nil {
		return "(unavailable: " + err.Error() + ")"
	}
	return s
}

type shown struct {
	Offset uint64
	Data   string
}

// messages reads the page's message list, in order.
func (p *page) messages() []shown {
	p.t.Helper()
	raw := eval[[][2]string](p, `[...document.querySelectorAll('#messages li[data-offset]')]
		.map(li => [li.dataset.offset, li.querySelector('.data').textContent])`)
	out := make([]shown, 0, len(raw))
	for _, r := range raw {
		off, err := strconv.ParseUint(r[0], 10, 64)
		if err != nil {
			p.t.Fatalf("offset %q on the page: %v", r[0], err)
		}
		out = append(out, shown{off, r[1]})
	}
	return out
}

// connected is true when the page is connected and subscribed.
const connected = `document.querySelector('#state').dataset.state === 'connected' &&
	document.querySelector('#sub-state').dataset.state === 'subscribed'`

func recoveredIs(n int) string {
	return fmt.Sprintf(`document.querySelector('#recovered').dataset.count === '%d'`, n)
}

func shows(offset uint64) string {
	return fmt.Sprintf(`document.querySelector('#messages li[data-offset="%d"]') !== null`, offset)
}

// TestDemoReconnectsAndRecovers drives the demo page through a publish, a
// server restart (which loses the in-memory history, so the page must be
// told with recovered:false), a publish while the server is down (which
// must not appear), and a client-side disconnect whose gap is replayed.
func TestDemoReconnectsAndRecovers(t *testing.T) {
	exe := testutil.Chromium(t)
	node := startNode(t, "127.0.0.1:0", "127.0.0.1:0")
	t.Cleanup(func() { node.Stop() }) // the node running at the end
	clientAddr, apiAddr := node.Addr().String(), node.APIAddr().String()

	cons := &console{}
	p := openBrowser(t, exe, cons)
	defer cons.check(t)

	q := url.Values{"ws": {"ws://" + clientAddr + "/ws"}, "channel": {"news"}, "maxDelay": {"1000"}}
	p.navigate("http://" + apiAddr + "/demo/?" + q.Encode())
	p.waitFor("connected", connected)

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
	expect := func(when string) {
		t.Helper()
		if got := p.messages(); !equal(got, want) {
			t.Fatalf("%s: the page shows %v, want %v", when, got, want)
		}
	}

	// Live delivery.
	send(`{"n":1,"text":"hello"}`)
	last := send(`{"n":2,"text":"world"}`)
	p.waitFor("the first messages", shows(last))
	expect("before the restart")
	if got := eval[string](p, `document.querySelector('#recovered').dataset.count`); got != "0" {
		t.Fatalf("recovered:false count %s before any reconnect", got)
	}

	// Restart: the page notices, nothing published meanwhile exists, and the
	// new node's empty history makes the subscribe ack say recovered:false.
	node.Stop()
	p.waitFor("the page to notice the server went away", `document.querySelector('#state').dataset.state === 'connecting'`)
	if off, err := publish(apiAddr, "news", `{"n":0,"text":"while down"}`); err == nil {
		t.Fatalf("publish while the server is down returned offset %d", off)
	}
	node = startNode(t, clientAddr, apiAddr)
	p.waitFor("reconnected after the restart", connected+" && "+recoveredIs(1))

	// The new history had nothing to replay, yet the subscription's position
	// must move up to the new channel's offset, or the next reconnect would
	// report recovered:false again.
	p.waitFor("the position moved to the new channel's offset", fmt.Sprintf(`window.herald.sub.offset > %d`, last))
	top, err := strconv.ParseUint(eval[string](p, `String(window.herald.sub.offset)`), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	off := send(`{"n":3,"text":"after restart"}`)
	if off != top+1 {
		t.Fatalf("offset %d after the restart, want the page's position %d + 1", off, top)
	}
	p.waitFor("the message after the restart", shows(off))
	expect("after the restart")

	// A client-side gap on a live server: close, publish, reconnect. The
	// subscription resumes from its last offset and the server replays the
	// gap (recovered:true, so the count stays at 1), without duplicates.
	eval[chromedp.Void](p, `window.herald.client.close()`)
	p.waitFor("the client closed", `document.querySelector('#state').dataset.state === 'disconnected'`)
	send(`{"n":4,"text":"missed while closed"}`)
	gap := send(`{"n":5,"text":"also missed"}`)
	eval[chromedp.Void](p, `window.herald.client.connect()`)
	p.waitFor("the replayed gap", connected+" && "+shows(gap))
	last = send(`{"n":6,"text":"live again"}`)
	p.waitFor("the live message after the replay", shows(last))
	expect("after the replay")
	if got := eval[string](p, `document.querySelector('#recovered').dataset.count`); got != "1" {
		t.Fatalf("recovered:false count %s, want 1 (the replay was complete)", got)
	}
}

func equal(a, b []shown) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// blackholeProxy forwards TCP connections to target until freeze, which
// makes the connections open at that moment swallow everything in both
// directions while staying open: a dead path that no FIN or RST reveals.
// Connections made after freeze work normally.
type blackholeProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	pairs  []*proxyPair
}

type proxyPair struct {
	a, b   net.Conn
	frozen atomic.Bool
}

// sink writes to w unless the pair is frozen, when it discards.
type sink struct {
	w    io.Writer
	pair *proxyPair
}

func (s sink) Write(b []byte) (int, error) {
	if s.pair.frozen.Load() {
		return len(b), nil
	}
	return s.w.Write(b)
}

func startProxy(t *testing.T, target string) *blackholeProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &blackholeProxy{ln: ln, target: target}
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *blackholeProxy) serve() {
	for {
		a, err := p.ln.Accept()
		if err != nil {
			return
		}
		b, err := net.Dial("tcp", p.target)
		if err != nil {
			a.Close()
			continue
		}
		pair := &proxyPair{a: a, b: b}
		p.mu.Lock()
		p.pairs = append(p.pairs, pair)
		p.mu.Unlock()
		go func() { _, _ = io.Copy(sink{b, pair}, a); b.Close() }()
		go func() { _, _ = io.Copy(sink{a, pair}, b); a.Close() }()
	}
}

func (p *blackholeProxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pair := range p.pairs {
		pair.frozen.Store(true)
	}
}

func (p *blackholeProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pair := range p.pairs {
		pair.a.Close()
		pair.b.Close()
	}
}

// TestMissingPongReconnects puts a proxy between the page and the server
// and turns the connection into a black hole: the page must notice the
// missing pong, reconnect, and get what was published meanwhile.
func TestMissingPongReconnects(t *testing.T) {
	exe := testutil.Chromium(t)
	node := startNode(t, "127.0.0.1:0", "127.0.0.1:0")
	t.Cleanup(node.Stop)
	proxy := startProxy(t, node.Addr().String())
	apiAddr := node.APIAddr().String()

	cons := &console{}
	p := openBrowser(t, exe, cons)
	defer cons.check(t)
	q := url.Values{
		"ws":           {"ws://" + proxy.ln.Addr().String() + "/ws"},
		"pingInterval": {"300"},
		"pongTimeout":  {"300"},
		"minDelay":     {"100"},
		"maxDelay":     {"500"},
	}
	p.navigate("http://" + apiAddr + "/demo/?" + q.Encode())
	p.waitFor("connected", connected)

	first, err := publish(apiAddr, "news", `"before"`)
	if err != nil {
		t.Fatal(err)
	}
	p.waitFor("the first message", shows(first))

	proxy.freeze()
	lost, err := publish(apiAddr, "news", `"into the black hole"`)
	if err != nil {
		t.Fatal(err)
	}
	p.waitFor("the missing pong noticed", `[...document.querySelectorAll('#events li')].some(li => li.textContent.includes('no pong'))`)
	p.waitFor("reconnected with the lost message replayed", connected+" && "+shows(lost))
	want := []shown{{first, `"before"`}, {lost, `"into the black hole"`}}
	if got := p.messages(); !equal(got, want) {
		t.Fatalf("the page shows %v, want %v", got, want)
	}
	if got := eval[string](p, `document.querySelector('#recovered').dataset.count`); got != "0" {
		t.Fatalf("recovered:false count %s, want 0: the history held the lost message", got)
	}
}

// TestTokenAndRequests runs with -token-secret: the page connects with a
// token in ?token=, and the client's promise-based requests resolve on an
// ack and reject with the server's error code.
func TestTokenAndRequests(t *testing.T) {
	exe := testutil.Chromium(t)
	const secret = "browser-test-secret"
	node := startNodeWith(t, "127.0.0.1:0", "127.0.0.1:0", secret)
	t.Cleanup(node.Stop)
	apiAddr := node.APIAddr().String()
	token, err := auth.Mint(secret, "42", []string{"user:42", "room:*"}, true, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	cons := &console{}
	p := openBrowser(t, exe, cons)
	defer cons.check(t)
	q := url.Values{"ws": {"ws://" + node.Addr().String() + "/ws"}, "token": {token}, "channel": {"user:42"}}
	p.navigate("http://" + apiAddr + "/demo/?" + q.Encode())
	p.waitFor("connected with the token", connected)

	// A client publish on the subscribed channel: the ack's offset is the
	// offset the message arrives with.
	off := eval[string](p, `window.herald.client.publish('user:42', {from: 'page'}).then(r => String(r.offset))`, chromedp.EvalAwaitPromise)
	n, err := strconv.ParseUint(off, 10, 64)
	if err != nil {
		t.Fatalf("publish resolved to %q: %v", off, err)
	}
	p.waitFor("the page's own publication", shows(n))
	if got, want := p.messages(), []shown{{n, `{"from":"page"}`}}; !equal(got, want) {
		t.Fatalf("the page shows %v, want %v", got, want)
	}

	// Error replies reject with the server's code; ping resolves.
	got := eval[string](p, `(async () => {
		const c = window.herald.client;
		const code = (p) => p.then(() => 'resolved', (e) => e.name + ':' + e.code);
		const out = [];
		out.push(await code(c.publish('user:43', 1)));
		const s = c.subscribe('user:43');
		out.push(await code(s.ready(5000)));
		out.push(s.state);
		const r = c.subscribe('room:lobby');
		await r.ready(5000);
		out.push(await code(r.unsubscribe()));
		out.push(await code(c.ping()));
		return out.join(' ');
	})()`, chromedp.EvalAwaitPromise)
	if want := "HeraldError:forbidden HeraldError:unsubscribed unsubscribed resolved resolved"; got != want {
		t.Fatalf("requests: %s, want %s", got, want)
	}

	// A bad token is refused (HTTP 401) before the upgrade; the client keeps
	// retrying and reports the failed attempts.
	q.Set("token", token+"x")
	p.navigate("http://" + apiAddr + "/demo/?" + q.Encode())
	p.waitFor("a failed attempt reported", `document.querySelector('#last-error').textContent.includes('connection failed')`)
	if state := eval[string](p, `document.querySelector('#state').dataset.state`); state != "connecting" {
		t.Fatalf("state %q with a bad token, want connecting", state)
	}
}

// TestServesClient checks the client is served with a JavaScript MIME type
// a browser accepts for a module, from the node's API listener.
func TestServesClient(t *testing.T) {
	node := startNode(t, "127.0.0.1:0", "127.0.0.1:0")
	defer node.Stop()
	res, err := apiClient.Get("http://" + node.APIAddr().String() + "/herald.js")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if ct := res.Header.Get("Content-Type"); res.StatusCode != 200 || !strings.HasPrefix(ct, "text/javascript") {
		t.Fatalf("GET /herald.js: %d %q", res.StatusCode, ct)
	}
	if !bytes.Contains(body, []byte("export class HeraldClient")) {
		t.Fatal("GET /herald.js: not the client")
	}
}
