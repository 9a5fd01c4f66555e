package admin

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/herald-ws/herald/api"
	"github.com/herald-ws/herald/hub"
)

//go:embed web
var files embed.FS

// TopChannels is how many channels the stats list.
const TopChannels = 10

// Config wires the admin page to a node.
type Config struct {
	// APIKey guards GET /api/admin/stats exactly as it guards the API's
	// other /api/* calls ("" means no key, for a loopback API listener).
	APIKey string
	// Snapshot returns the node's current figures; it runs once per stats
	// request, on the request's goroutine.
	Snapshot func() Snapshot
}

// Snapshot is the JSON of GET /api/admin/stats.
type Snapshot struct {
	Time  int64     `json:"time"` // unix milliseconds when the snapshot was taken
	Node  Node      `json:"node"`
	Nodes []Node    `json:"nodes"` // this node, then every other node of the cluster heard from in the last 3 s
	Stats api.Stats `json:"stats"`
	// MaxConnections is -max-conns (0: no limit); LoopConnections the open
	// connections per event loop.
	MaxConnections  int     `json:"max_connections"`
	LoopConnections []int64 `json:"loop_connections"`
	BrokerUp        bool    `json:"broker_up"`
	// Publishes are the publishes this node handed to the broker, by
	// result (accepted, duplicate, failed, unknown), since it started.
	Publishes map[string]int64 `json:"publishes"`
	// Latency is the publish-to-delivery histogram, FanOut the per-loop
	// fan-out duration histogram (cumulative since the node started; the
	// page computes quantiles over the last second from two snapshots).
	Latency     Histogram          `json:"latency"`
	FanOut      Histogram          `json:"fanout"`
	TopChannels []hub.ChannelCount `json:"top_channels"`
}

// Node describes one node.
type Node struct {
	ID         string `json:"id"`
	Version    string `json:"version"`
	ClientAddr string `json:"client_addr"`
	APIAddr    string `json:"api_addr"`
	Broker     string `json:"broker"`
	Started    int64  `json:"started"` // unix milliseconds
	Ready      bool   `json:"ready"`
	NotReady   string `json:"not_ready,omitempty"` // why, when not ready
}

// Histogram is a cumulative histogram: Counts[i] observations at most
// Bounds[i] seconds, the last entry of Counts (one more than Bounds) all
// of them.
type Histogram struct {
	Bounds []float64 `json:"bounds"`
	Counts []uint64  `json:"counts"`
	Count  uint64    `json:"count"`
	Sum    float64   `json:"sum"`
}

// HistogramOf reads a Prometheus histogram.
func HistogramOf(h prometheus.Histogram) Histogram {
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		return Histogram{}
	}
	ph := m.GetHistogram()
	out := Histogram{Count: ph.GetSampleCount(), Sum: ph.GetSampleSum()}
	for _, b := range ph.GetBucket() {
		out.Bounds = append(out.Bounds, b.GetUpperBound())
		out.Counts = append(out.Counts, b.GetCumulativeCount())
	}
	out.Counts = append(out.Counts, out.Count)
	return out
}

// Handlers returns the handlers to mount on the API listener (Go 1.22
// ServeMux patterns): "GET /admin/" (the page and its files; any other
// path under /admin/ is 404) and "GET /api/admin/stats".
func Handlers(cfg Config) map[string]http.Handler {
	page := map[string]*asset{}
	for _, name := range []string{"index.html", "admin.js", "admin.css"} {
		page[name] = load("web/" + name)
	}
	page[""] = page["index.html"]
	return map[string]http.Handler{
		"GET /admin/": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			a := page[strings.TrimPrefix(r.URL.Path, "/admin/")]
			if a == nil {
				http.NotFound(w, r)
				return
			}
			a.ServeHTTP(w, r)
		}),
		"GET /api/admin/stats": authed(cfg.APIKey, func(w http.ResponseWriter, _ *http.Request) {
			s := cfg.Snapshot()
			if s.Time == 0 {
				s.Time = time.Now().UnixMilli()
			}
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			_ = json.NewEncoder(w).Encode(s)
		}),
	}
}

// authed answers 401 unless the request carries "Authorization: Bearer
// <key>", compared in constant time, with the API's error body.
func authed(key string, next http.HandlerFunc) http.Handler {
	if key == "" {
		return next
	}
	want := []byte("Bearer " + key)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="herald"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"missing or wrong API key"}` + "\n"))
			return
		}
		next(w, r)
	})
}

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

// ServeHTTP serves the asset with a strong ETag and a policy that lets the
// page load only its own files and talk only to its own origin, and never
// be framed (the page holds an API key).
func (a *asset) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", a.contentType)
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("ETag", a.etag)
	http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(a.body))
}

func load(name string) *asset {
	body, err := files.ReadFile(name)
	if err != nil {
		panic("admin: missing embedded file " + name) // the go:embed line guarantees it
	}
	sum := sha256.Sum256(body)
	return &asset{name: name, body: body, contentType: contentTypes[path.Ext(name)], etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
}
