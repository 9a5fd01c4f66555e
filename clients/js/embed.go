// Package heraldjs serves the browser client (herald.js) and its demo page,
// embedded in the binary, for mounting on the API listener. It holds no
// state and never talks to the push server itself.
package heraldjs

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed herald.js demo
var files embed.FS

// contentTypes are fixed here rather than taken from the system's
// mime.types, which may say application/javascript or nothing at all.
var contentTypes = map[string]string{
	".js":   "text/javascript; charset=utf-8",
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
}

// asset is one embedded file, ready to serve.
type asset struct {
	name        string
	body        []byte
	contentType string
	etag        string
}

// ServeHTTP serves the asset with a strong ETag, so browsers revalidate
// (Cache-Control: no-cache) and get 304 while the binary is unchanged.
func (a *asset) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", a.contentType)
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("ETag", a.etag)
	http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(a.body))
}

func load(name string) *asset {
	body, err := files.ReadFile(name)
	if err != nil {
		panic("heraldjs: missing embedded file " + name) // the go:embed line guarantees it
	}
	sum := sha256.Sum256(body)
	ct := contentTypes[path.Ext(name)]
	if ct == "" {
		ct = mime.TypeByExtension(path.Ext(name))
	}
	if ct == "" {
		ct = "application/octet-stream"
	}
	return &asset{name: name, body: body, contentType: ct, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
}

// Handlers returns the handlers to mount (Go 1.22 ServeMux patterns):
// "GET /herald.js" serves the client, "GET /demo/" the demo page at /demo/
// and its files below it (the page imports ../herald.js). Any other path
// under /demo/ is 404.
func Handlers() map[string]http.Handler {
	demo := map[string]*asset{}
	_ = fs.WalkDir(files, "demo", func(name string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			demo[strings.TrimPrefix(name, "demo/")] = load(name)
		}
		return err
	})
	demo[""] = demo["index.html"]
	return map[string]http.Handler{
		"GET /herald.js": load("herald.js"),
		"GET /demo/": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			a := demo[strings.TrimPrefix(r.URL.Path, "/demo/")]
			if a == nil {
				http.NotFound(w, r)
				return
			}
			a.ServeHTTP(w, r)
		}),
	}
}
