package admin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/herald-ws/herald/internal/testutil"
)

const waitTimeout = 20 * time.Second

// pageErrors collects exceptions and console.error calls of the page.
type pageErrors struct {
	mu   sync.Mutex
	list []string
}

func (p *pageErrors) listen(ev any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch ev := ev.(type) {
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		text := d.Text
		if d.Exception != nil {
			text += " " + d.Exception.Description
		}
		p.list = append(p.list, fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber, text))
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError {
			var parts []string
			for _, a := range ev.Args {
				parts = append(parts, a.Description+string(a.Value))
			}
			p.list = append(p.list, "console.error: "+strings.Join(parts, " "))
		}
	}
}

func (p *pageErrors) check(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.list {
		t.Errorf("page: %s", e)
	}
}

type tab struct {
	t   *testing.T
	ctx context.Context
}

func open(t *testing.T, exe string, errs *pageErrors) *tab {
	t.Helper()
	dir, err := os.MkdirTemp("", "herald-admin-chromium-")
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
		chromedp.WindowSize(1280, 1100),
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
	if err := chromedp.Do(ctx); err != nil { // starts the browser; no timeout here
		t.Fatalf("start %s: %v", exe, err)
	}
	if err := chromedp.Listen(ctx, errs.listen); err != nil {
		t.Fatalf("listen to the page: %v", err)
	}
	return &tab{t: t, ctx: ctx}
}

func (p *tab) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, waitTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatalf("%s: %v\npage: %s", what, err, p.dump())
	}
}

func eval[T any](p *tab, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, waitTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		p.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

func (p *tab) waitFor(what, expr string) {
	p.t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(p.ctx, waitTimeout+5*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(waitTimeout))); err != nil {
		p.t.Fatalf("waiting for %s (%s): %v\npage: %s", what, expr, err, p.dump())
	}
	p.t.Logf("%s after %v", what, time.Since(start).Round(time.Millisecond))
}

func (p *tab) dump() string {
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({
		status: document.querySelector('#status')?.textContent,
		loginError: document.querySelector('#login-error')?.textContent,
		dashboardHidden: document.querySelector('#dashboard')?.hidden,
		connections: document.querySelector('#connections')?.dataset.value,
		rate: document.querySelector('#deliveries-rate')?.dataset.value,
		p50: document.querySelector('#latency-p50')?.dataset.value,
		top: [...document.querySelectorAll('#top-channels li')].map(li => li.textContent),
		publish: document.querySelector('#publish-result')?.textContent,
	})`))
	if err != nil {
		return "(unavailable: " + err.Error() + ")"
	}
	return s
}

// TestAdminPage drives the admin page in headless Chromium against a real
// node with an API key: a wrong key is refused and said so, the right key
// shows live figures that move as the test publishes, the top channels
// come from the hub, and a publish from the form reaches a subscriber.
func TestAdminPage(t *testing.T) {
	exe := testutil.Chromium(t)
	const key = "admin-test-key"
	n := testutil.StartNode(t, testutil.NodeOptions{APIKey: key, Options: testutil.Options{MaxConns: 50}})
	api := "http://" + n.APIAddr().String()

	errs := &pageErrors{}
	p := open(t, exe, errs)
	defer errs.check(t)
	p.run("open the page", chromedp.Navigate(api+"/admin/"), chromedp.WaitVisible(chromedp.CSS("#login")))

	// A wrong key is refused, and the page says so.
	p.run("sign in with a wrong key",
		chromedp.SendKeys(chromedp.CSS("#key"), "not-the-key"),
		chromedp.Click(chromedp.CSS("#login-submit")))
	p.waitFor("the refusal shown", `!document.querySelector('#login-error').hidden &&
		document.querySelector('#login-error').textContent.includes('wrong key')`)
	if !eval[bool](p, `document.querySelector('#dashboard').hidden`) {
		t.Fatal("the dashboard shows after a wrong key")
	}

	// Subscribers: three on "news", one on "sports".
	var news []*testutil.WSClient
	for i := range 3 {
		c := testutil.DialWS(t, n, "", nil)
		c.Subscribe("news", i+1)
		news = append(news, c)
	}
	sports := testutil.DialWS(t, n, "", nil)
	sports.Subscribe("sports", 1)

	p.run("sign in with the right key",
		chromedp.SendKeys(chromedp.CSS("#key"), key),
		chromedp.Click(chromedp.CSS("#login-submit")))
	p.waitFor("live figures", `document.querySelector('#status').dataset.state === 'live' &&
		document.querySelector('#connections').dataset.value === '4'`)
	if got := eval[string](p, `document.querySelector('#login-error').hidden ? '' : 'shown'`); got != "" {
		t.Error("the refusal is still shown after signing in")
	}
	p.waitFor("the top channels", `JSON.stringify([...document.querySelectorAll('#top-channels li')]
		.map(li => [li.dataset.channel, li.dataset.subscribers])) === '[["news","3"],["sports","1"]]'`)
	if got := eval[string](p, `document.querySelector('#max-connections').dataset.value`); got != "50" {
		t.Errorf("max connections shown as %q, want 50", got)
	}
	if got := eval[int](p, `document.querySelectorAll('#nodes tbody tr').length`); got != 1 {
		t.Errorf("%d nodes listed, want this one", got)
	}
	before := eval[string](p, `document.querySelector('#deliveries-total').dataset.value`)

	// Publish for a few seconds; the subscribers read everything, and the
	// page's delivery rate and latency must move.
	stop := make(chan struct{})
	published := make(chan int, 1)
	go func() {
		count := 0
		defer func() { published <- count }()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if _, err := testutil.PublishKey(n, key, "news", `{"n":1}`); err != nil {
				t.Errorf("publish: %v", err)
				return
			}
			count++
		}
	}()
	readers := sync.WaitGroup{}
	for _, c := range news {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				if _, err := c.Next(2 * time.Second); err != nil {
					return // the publisher stopped and the stream went quiet
				}
			}
		}()
	}
	p.waitFor("a delivery rate", `Number(document.querySelector('#deliveries-rate').dataset.value) > 0`)
	p.waitFor("a latency", `document.querySelector('#latency-p50').dataset.value !== '' &&
		Number(document.querySelector('#latency-p99').dataset.value) > 0`)
	close(stop)
	count := <-published
	readers.Wait()
	p.waitFor("the delivered total to count every delivery", fmt.Sprintf(
		`Number(document.querySelector('#deliveries-total').dataset.value) === %s + %d`, before, 3*count))
	p.waitFor("the chart's points", `document.querySelector('#chart-deliveries').width > 0`)

	// Publish from the form: a subscriber receives it.
	p.run("publish from the form",
		chromedp.SetValue(chromedp.CSS("#publish-channel"), "sports"),
		chromedp.SetValue(chromedp.CSS("#publish-data"), `{"from":"the admin page"}`),
		chromedp.Click(chromedp.CSS("#publish-submit")))
	p.waitFor("the publish confirmed", `document.querySelector('#publish-result').dataset.state === 'ok'`)
	m := sports.ExpectMessage("sports")
	var data map[string]string
	if err := json.Unmarshal(m.Data, &data); err != nil || data["from"] != "the admin page" {
		t.Fatalf("the subscriber got %s", m.Raw)
	}
	if got := eval[string](p, `document.querySelector('#publish-result').dataset.offset`); got != fmt.Sprint(m.Offset) {
		t.Errorf("the page reports offset %s, the subscriber got %d", got, m.Offset)
	}
	// Invalid JSON never leaves the page.
	p.run("publish invalid JSON",
		chromedp.SetValue(chromedp.CSS("#publish-data"), `{nope`),
		chromedp.Click(chromedp.CSS("#publish-submit")))
	p.waitFor("the JSON error", `document.querySelector('#publish-result').dataset.state === 'error'`)

	// The key was kept in memory only.
	if got := eval[string](p, `localStorage.length + ',' + sessionStorage.length + ',' + document.cookie + ',' + location.href`); got != "0,0,,"+api+"/admin/" {
		t.Errorf("storage, cookies, URL after signing in: %s", got)
	}

	dir, err := os.MkdirTemp("", "herald-admin-screenshot-")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(p.ctx, waitTimeout)
	defer cancel()
	png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	shot := filepath.Join(dir, "admin.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", shot, len(png))

	// Signing out forgets the key: the figures stop and the form is back.
	p.run("sign out", chromedp.Click(chromedp.CSS("#logout")))
	p.waitFor("the login form", `!document.querySelector('#login-view').hidden && document.querySelector('#dashboard').hidden`)
}
