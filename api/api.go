package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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
	// Collectors are registered on /metrics beside the Stats series (the
	// hub's histograms, the broker's and the listener's labelled series).
	Collectors []prometheus.Collector

	// MaxPublishChannels caps "channels" in one publish, counted as
	// given, and the publications of one POST /api/batch; default 1000.
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

	// Admit is asked before each channel of a publish is sent to the
	// broker; it may wait (within ctx) for the event loops that deliver
	// the channel to catch up. An error (hub.ErrOverloaded) means the
	// channel was not published: the answer is 503 "overloaded" with
	// Retry-After. Nil admits everything.
	Admit func(ctx context.Context, channel string) error
	// Control serves the cluster-wide endpoints (control.go); nil
	// answers them 501.
	Control Control
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
	if cfg.Admit == nil {
		cfg.Admit = func(context.Context, string) error { return nil }
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
	rt.add("POST /api/batch", endpointBatch, main, a.authed(a.batch))
	rt.add("GET /api/stats", "", main, a.authed(a.stats))
	a.controlRoutes(rt, main)
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
