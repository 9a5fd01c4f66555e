package api

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-ws/herald/broker"
)

func TestWrongMethodIs405WithAllow(t *testing.T) {
	extra := map[string]http.Handler{
		"GET /herald.js": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "js") }),
		"GET /demo/":     http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "demo") }),
	}
	for _, key := range []string{"", "k"} {
		h := newAPI(Config{APIKey: key, Extra: extra})
		auth := []string{"Authorization", "Bearer " + key}
		for _, c := range []struct {
			path  string
			allow string
			good  string
		}{
			{"/api/publish", "POST", "POST"},
			{"/api/stats", "GET, HEAD", "GET"},
			{"/metrics", "GET, HEAD", "GET"},
			{"/healthz", "GET, HEAD", "GET"},
			{"/readyz", "GET, HEAD", "GET"},
			{"/herald.js", "GET, HEAD", "GET"},
			{"/demo/", "GET, HEAD", "GET"},
			{"/demo/app.js", "GET, HEAD", "GET"},
		} {
			for _, m := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"} {
				if m == c.good || (m == "HEAD" && c.good == "GET") {
					continue
				}
				r := do(h, m, c.path, "", auth...)
				if r.code != http.StatusMethodNotAllowed || r.header.Get("Allow") != c.allow {
					t.Errorf("key %q: %s %s: %d Allow %q, want 405 Allow %q", key, m, c.path, r.code, r.header.Get("Allow"), c.allow)
				}
				if m != "HEAD" && !strings.Contains(r.body, "method not allowed") {
					t.Errorf("%s %s: body %q", m, c.path, r.body)
				}
			}
			if key != "" && strings.HasPrefix(c.path, "/api/") {
				// Without the key, /api/* says 401 whatever the method.
				if r := do(h, "DELETE", c.path, ""); r.code != http.StatusUnauthorized {
					t.Errorf("DELETE %s without the key: %d, want 401", c.path, r.code)
				}
			}
		}
		// Unknown paths stay 404.
		for _, p := range []string{"/api/nope", "/nope", "/api/publish/x"} {
			if r := do(h, "GET", p, "", auth...); r.code != http.StatusNotFound {
				t.Errorf("GET %s: %d, want 404", p, r.code)
			}
		}
	}
}

// gateBroker blocks every publish until release is closed.
type gateBroker struct {
	keyBroker
	entered chan struct{}
	release chan struct{}
}

func (b *gateBroker) Publish(ctx context.Context, ch string, data []byte, o broker.PublishOptions) (broker.PublishResult, error) {
	b.entered <- struct{}{}
	<-b.release
	return b.keyBroker.Publish(ctx, ch, data, o)
}

func TestMaxInflight(t *testing.T) {
	const max = 4
	b := &gateBroker{keyBroker: *newKeyBroker(), entered: make(chan struct{}, 64), release: make(chan struct{})}
	h := newAPI(Config{Broker: b, MaxInflight: max})
	var wg sync.WaitGroup
	codes := make(chan int, max)
	for range max {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes <- do(h, "POST", "/api/publish", `{"channel":"a","data":1}`).code
		}()
	}
	for range max {
		select {
		case <-b.entered:
		case <-time.After(10 * time.Second):
			t.Fatal("the publishes did not reach the broker")
		}
	}
	// The budget is full: publishes and stats are refused at once with
	// Retry-After, probes and metrics still answer.
	for _, p := range []struct{ method, path, body string }{{"POST", "/api/publish", `{"channel":"a","data":1}`}, {"GET", "/api/stats", ""}, {"GET", "/api/nope", ""}} {
		// Answered at once; without the limit the publish would wait at
		// the gate, so give up on it after a while rather than hang.
		got := make(chan response, 1)
		go func() { got <- do(h, p.method, p.path, p.body) }()
		var r response
		select {
		case r = <-got:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s %s past the limit was not refused", p.method, p.path)
		}
		if r.code != http.StatusServiceUnavailable || r.header.Get("Retry-After") != "1" || !strings.Contains(r.body, "-api-max-inflight") {
			t.Errorf("%s %s past the limit: %d %q Retry-After %q", p.method, p.path, r.code, r.body, r.header.Get("Retry-After"))
		}
	}
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		if r := do(h, "GET", p, ""); r.code != http.StatusOK {
			t.Errorf("GET %s while the API is full: %d", p, r.code)
		}
	}
	close(b.release)
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != http.StatusOK {
			t.Errorf("a publish inside the limit got %d", c)
		}
	}
	// Slots are given back.
	if r := do(h, "POST", "/api/publish", `{"channel":"a","data":1}`); r.code != http.StatusOK {
		t.Errorf("after the burst: %d %s", r.code, r.body)
	}
	if b.stored() != max+1 {
		t.Errorf("stored %d, want %d: the refused publish must store nothing", b.stored(), max+1)
	}
}
