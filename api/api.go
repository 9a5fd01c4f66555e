package api

import (
	"crypto/subtle"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/herald-ws/herald/broker"
)

// Stats is the JSON of GET /api/stats.
type Stats struct {
	Connections        int64 `json:"connections"`
	Channels           int   `json:"channels"`
	Subscriptions      int64 `json:"subscriptions"`
	MessagesIn         int64 `json:"messages_in"`
	MessagesOut        int64 `json:"messages_out"`
	BytesIn            int64 `json:"bytes_in"`
	BytesOut           int64 `json:"bytes_out"`
	SlowConsumerCloses int64 `json:"slow_consumer_closes"`
	Publications       int64 `json:"publications"`
	Deliveries         int64 `json:"deliveries"`
	Upgrades           int64 `json:"upgrades"`
	HandshakeRejects   int64 `json:"handshake_rejects"`
	HandshakeTimeouts  int64 `json:"handshake_timeouts"`
	IdleTimeouts       int64 `json:"idle_timeouts"`
	ProtocolErrors     int64 `json:"protocol_errors"`
}

// Config wires the API to the rest of the node. Zero values take the
// defaults named on each field (see applyDefaults).
type Config struct {
	Broker  broker.Broker
	Stats   func() Stats
	Ready   func() error // nil error: ready
	APIKey  string
	MaxBody int64 // largest publish body in bytes; default 1 MiB
	Logger  *slog.Logger
	// Extra mounts more handlers (the browser client and demo page).
	Extra map[string]http.Handler

	// MaxPublishChannels caps "channels" in one publish, counted as
	// given; default 1000.
	MaxPublishChannels int
	// PublishTimeout is each channel's own deadline for the broker's
	// confirmation; default 5 s.
	PublishTimeout time.Duration
	// MaxInflight caps the requests being served at once, health,
	// readiness and metrics apart (they have a budget of their own,
	// ProbeInflight); past it the API answers 503 with Retry-After: 1.
	// Default 1024.
	MaxInflight int
	// ReadTimeout bounds reading a request, headers and body;
	// WriteTimeout bounds the time from the end of the headers to the
	// end of the answer; IdleTimeout closes a keep-alive connection that
	// sends no next request. Defaults 10 s, 15 s and 60 s. They are the
	// http.Server's (NewServer); the publish handler also uses
	// WriteTimeout to stop starting channels it could not answer for.
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	IdleTimeout  time.Duration
}

// Defaults of Config.
const (
	DefaultMaxBody            = 1 << 20
	DefaultMaxPublishChannels = 1000
	DefaultPublishTimeout     = 5 * time.Second
	DefaultMaxInflight        = 1024
	DefaultReadTimeout        = 10 * time.Second
	DefaultWriteTimeout       = 15 * time.Second
	DefaultIdleTimeout        = 60 * time.Second
	// ProbeInflight is the separate in-flight budget of /healthz, /readyz
	// and /metrics, so that probes answer while publishes fill MaxInflight.
	ProbeInflight = 64
	// MaxHeaderBytes bounds a request's header block (431 past it).
	MaxHeaderBytes = 32 << 10
)

func (cfg *Config) applyDefaults() {
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Ready == nil {
		cfg.Ready = func() error { return nil }
	}
	if cfg.Stats == nil {
		cfg.Stats = func() Stats { return Stats{} }
	}
	if cfg.MaxPublishChannels <= 0 {
		cfg.MaxPublishChannels = DefaultMaxPublishChannels
	}
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = DefaultPublishTimeout
	}
	if cfg.MaxInflight <= 0 {
		cfg.MaxInflight = DefaultMaxInflight
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = DefaultReadTimeout
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
}

// New returns the API's http.Handler. Every route is wrapped by the
// in-flight limit and the request metrics; a wrong method on a known path
// is 405 with Allow.
func New(cfg Config) http.Handler {
	cfg.applyDefaults()
	a := &handler{cfg: cfg, metrics: newAPIMetrics()}
	main := make(chan struct{}, cfg.MaxInflight)
	probes := make(chan struct{}, ProbeInflight)
	rt := newRoutes(a)
	rt.add("POST /api/publish", endpointPublish, main, a.authed(a.publish))
	rt.add("GET /api/stats", "", main, a.authed(a.stats))
	rt.add("GET /metrics", "", probes, promhttp.HandlerFor(a.registry(), promhttp.HandlerOpts{}))
	rt.add("GET /healthz", "", probes, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") }))
	rt.add("GET /readyz", "", probes, http.HandlerFunc(a.readyz))
	extra := slices.Sorted(maps.Keys(cfg.Extra))
	for _, pattern := range extra {
		rt.add(pattern, "", main, cfg.Extra[pattern])
	}
	return rt.finish(main)
}

type handler struct {
	cfg     Config
	metrics *apiMetrics
}

func (a *handler) authed(next http.HandlerFunc) http.HandlerFunc {
	if a.cfg.APIKey == "" {
		return next
	}
	want := []byte("Bearer " + a.cfg.APIKey)
	return func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="herald"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong API key")
			return
		}
		next(w, r)
	}
}

func (a *handler) stats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.cfg.Stats())
}

func (a *handler) readyz(w http.ResponseWriter, _ *http.Request) {
	if err := a.cfg.Ready(); err != nil {
		http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	_, _ = io.WriteString(w, "ready\n")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// registry exposes the node's counters to Prometheus. Values are read at
// scrape time from the same counters /api/stats reads, so the hot paths pay
// nothing for metrics.
func (a *handler) registry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a.metrics.register(reg)
	stat := func(f func(Stats) float64) func() float64 { return func() float64 { return f(a.cfg.Stats()) } }
	gauge := func(name, help string, f func(Stats) float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "herald", Name: name, Help: help}, stat(f)))
	}
	counter := func(name, help string, f func(Stats) float64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "herald", Name: name, Help: help}, stat(f)))
	}
	gauge("connections", "Open client connections, including those still upgrading.", func(s Stats) float64 { return float64(s.Connections) })
	gauge("channels", "Channels with at least one subscriber on this node.", func(s Stats) float64 { return float64(s.Channels) })
	gauge("subscriptions", "Active subscriptions on this node.", func(s Stats) float64 { return float64(s.Subscriptions) })
	counter("messages_in_total", "WebSocket messages received from clients.", func(s Stats) float64 { return float64(s.MessagesIn) })
	counter("messages_out_total", "WebSocket messages sent to clients.", func(s Stats) float64 { return float64(s.MessagesOut) })
	counter("bytes_in_total", "Bytes received from clients.", func(s Stats) float64 { return float64(s.BytesIn) })
	counter("bytes_out_total", "Bytes written to clients.", func(s Stats) float64 { return float64(s.BytesOut) })
	counter("slow_consumer_closes_total", "Connections closed with 1008 at the write-buffer limit.", func(s Stats) float64 { return float64(s.SlowConsumerCloses) })
	counter("publications_total", "Publications delivered to this node by the broker.", func(s Stats) float64 { return float64(s.Publications) })
	counter("deliveries_total", "Messages written to subscribers.", func(s Stats) float64 { return float64(s.Deliveries) })
	counter("upgrades_total", "Successful WebSocket upgrades.", func(s Stats) float64 { return float64(s.Upgrades) })
	counter("handshake_rejects_total", "Upgrade requests answered with an HTTP error.", func(s Stats) float64 { return float64(s.HandshakeRejects) })
	counter("handshake_timeouts_total", "Connections closed for not finishing the upgrade in time.", func(s Stats) float64 { return float64(s.HandshakeTimeouts) })
	counter("idle_timeouts_total", "Connections closed for silence past the idle timeout.", func(s Stats) float64 { return float64(s.IdleTimeouts) })
	counter("protocol_errors_total", "Connections failed for breaking RFC 6455.", func(s Stats) float64 { return float64(s.ProtocolErrors) })
	return reg
}
