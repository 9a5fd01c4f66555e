package heraldjs

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func newMux() *http.ServeMux {
	mux := http.NewServeMux()
	for pattern, h := range Handlers() {
		mux.Handle(pattern, h)
	}
	return mux
}

func TestHandlers(t *testing.T) {
	srv := httptest.NewServer(newMux())
	defer srv.Close()
	tests := []struct {
		method, path string
		status       int
		contentType  string
		contains     string
	}{
		{"GET", "/herald.js", 200, "text/javascript; charset=utf-8", "export class HeraldClient"},
		{"HEAD", "/herald.js", 200, "text/javascript; charset=utf-8", ""},
		{"GET", "/demo/", 200, "text/html; charset=utf-8", `id="messages"`},
		{"GET", "/demo/index.html", 200, "text/html; charset=utf-8", `src="demo.js"`},
		{"GET", "/demo/demo.js", 200, "text/javascript; charset=utf-8", "from '../herald.js'"},
		{"GET", "/demo/demo.css", 200, "text/css; charset=utf-8", "#messages"},
		{"GET", "/demo", 200, "text/html; charset=utf-8", `id="state"`}, // redirected to /demo/
		{"GET", "/demo/missing.js", 404, "", ""},
		{"GET", "/demo/sub/index.html", 404, "", ""},
		{"GET", "/herald.min.js", 404, "", ""},
		{"GET", "/", 404, "", ""},
		{"POST", "/herald.js", 405, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, srv.URL+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			res, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", res.StatusCode, tt.status)
			}
			if tt.contentType != "" {
				if got := res.Header.Get("Content-Type"); got != tt.contentType {
					t.Errorf("Content-Type %q, want %q", got, tt.contentType)
				}
				if got := res.Header.Get("X-Content-Type-Options"); got != "nosniff" {
					t.Errorf("X-Content-Type-Options %q, want nosniff", got)
				}
			}
			if !strings.Contains(string(body), tt.contains) {
				t.Errorf("body does not contain %q", tt.contains)
			}
		})
	}
}

func TestETagRevalidation(t *testing.T) {
	mux := newMux()
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/herald.js", nil))
	etag := rec.Header().Get("ETag")
	if rec.Code != 200 || etag == "" {
		t.Fatalf("status %d, ETag %q", rec.Code, etag)
	}
	req := httptest.NewRequest("GET", "/herald.js", nil)
	req.Header.Set("If-None-Match", etag)
	rec = httptest.NewRecorder()
	mux.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotModified {
		t.Fatalf("revalidation status %d, want 304", rec.Code)
	}
}
