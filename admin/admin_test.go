package admin

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-ws/herald/api"
	"github.com/herald-ws/herald/hub"
)

func mux(cfg Config) *http.ServeMux {
	m := http.NewServeMux()
	for p, h := range Handlers(cfg) {
		m.Handle(p, h)
	}
	return m
}

func get(t *testing.T, h http.Handler, path, auth string) *http.Response {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, path, nil)
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Result()
}

func TestStatsNeedTheKey(t *testing.T) {
	calls := 0
	snap := func() Snapshot {
		calls++
		return Snapshot{Stats: api.Stats{Connections: 7}, TopChannels: []hub.ChannelCount{{Channel: "a", Subscribers: 3}}}
	}
	h := mux(Config{APIKey: "s3cret", Snapshot: snap})
	for _, tc := range []struct {
		auth string
		want int
	}{
		{"", 401},
		{"Bearer wrong", 401},
		{"Bearer s3cret2", 401},
		{"Bearer s3cre", 401},
		{"bearer s3cret", 401},
		{"s3cret", 401},
		{"Basic czNjcmV0", 401},
		{"Bearer s3cret", 200},
	} {
		res := get(t, h, "/api/admin/stats", tc.auth)
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != tc.want {
			t.Errorf("Authorization %q: %d, want %d", tc.auth, res.StatusCode, tc.want)
			continue
		}
		if tc.want == 401 {
			if res.Header.Get("WWW-Authenticate") == "" || !strings.Contains(string(body), `"error"`) {
				t.Errorf("401 without WWW-Authenticate or error body: %q", body)
			}
			continue
		}
		var s Snapshot
		if err := json.Unmarshal(body, &s); err != nil || s.Stats.Connections != 7 || s.Time == 0 || len(s.TopChannels) != 1 {
			t.Errorf("stats %q: %v", body, err)
		}
		if res.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("stats are cacheable: %q", res.Header.Get("Cache-Control"))
		}
	}
	if calls != 1 {
		t.Errorf("Snapshot ran %d times; only the authorised request may run it", calls)
	}
	// No key configured (a loopback API): open, like the rest of /api/*.
	if res := get(t, mux(Config{Snapshot: snap}), "/api/admin/stats", ""); res.StatusCode != 200 {
		t.Errorf("no key configured: %d", res.StatusCode)
	}
}

func TestPageFiles(t *testing.T) {
	h := mux(Config{APIKey: "k", Snapshot: func() Snapshot { return Snapshot{} }})
	for _, tc := range []struct {
		path, ctype string
		want        int
	}{
		{"/admin/", "text/html; charset=utf-8", 200},
		{"/admin/index.html", "text/html; charset=utf-8", 200},
		{"/admin/admin.js", "text/javascript; charset=utf-8", 200},
		{"/admin/admin.css", "text/css; charset=utf-8", 200},
		{"/admin/nope.js", "", 404},
		{"/admin/web/admin.js", "", 404},
		{"/admin/../admin.go", "", 404},
	} {
		res := get(t, h, tc.path, "")
		redirected := res.StatusCode == 301 || res.StatusCode == 307 // the mux cleans ".." away first
		if res.StatusCode != tc.want && !(tc.want == 404 && redirected) {
			t.Errorf("%s: %d, want %d", tc.path, res.StatusCode, tc.want)
			continue
		}
		if tc.want != 200 {
			continue
		}
		if got := res.Header.Get("Content-Type"); got != tc.ctype {
			t.Errorf("%s: Content-Type %q", tc.path, got)
		}
		csp := res.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "connect-src 'self'") || res.Header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s: CSP %q, X-Frame-Options %q", tc.path, csp, res.Header.Get("X-Frame-Options"))
		}
	}
	// The page never persists the key.
	res := get(t, h, "/admin/admin.js", "")
	js, _ := io.ReadAll(res.Body)
	for _, banned := range []string{"localStorage", "sessionStorage", "cookie", "indexedDB"} {
		if strings.Contains(string(js), banned) {
			t.Errorf("admin.js uses %s", banned)
		}
	}
}

func TestHistogramOf(t *testing.T) {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "x", Help: "x", Buckets: []float64{0.1, 1}})
	for _, v := range []float64{0.05, 0.5, 0.5, 3} {
		h.Observe(v)
	}
	got := HistogramOf(h)
	want := Histogram{Bounds: []float64{0.1, 1}, Counts: []uint64{1, 3, 4}, Count: 4, Sum: 4.05}
	if g, w := toJSON(got), toJSON(want); g != w {
		t.Fatalf("HistogramOf = %s, want %s", g, w)
	}
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
