package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/herald-ws/herald/auth"
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

// Config wires the API to the rest of the node.
type Config struct {
	Broker  broker.Broker
	Stats   func() Stats
	Ready   func() error // nil error: ready
	APIKey  string
	MaxBody int64 // largest publish body; default 1 MiB
	Logger  *slog.Logger
	// Extra mounts more handlers (the browser client and demo page).
	Extra map[string]http.Handler
}

// New returns the API's http.Handler.
func New(cfg Config) http.Handler {
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 1 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	a := &handler{cfg: cfg}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/publish", a.authed(a.publish))
	mux.HandleFunc("GET /api/stats", a.authed(a.stats))
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.registry(), promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", a.readyz)
	mux.HandleFunc("/api/", a.authed(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint")
	}))
	for path, h := range cfg.Extra {
		mux.Handle(path, h)
	}
	return mux
}

type handler struct{ cfg Config }

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

type publishRequest struct {
	Channel  string          `json:"channel"`
	Channels []string        `json:"channels"`
	Data     json.RawMessage `json:"data"`
}

func (a *handler) publish(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.cfg.MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "body over the limit")
			return
		}
		writeError(w, http.StatusBadRequest, "reading body: "+err.Error())
		return
	}
	var req publishRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid JSON: "+err.Error())
		return
	}
	if len(req.Data) == 0 {
		writeError(w, http.StatusBadRequest, `"data" is required`)
		return
	}
	channels := req.Channels
	single := req.Channel != ""
	if single {
		if len(channels) > 0 {
			writeError(w, http.StatusBadRequest, `give "channel" or "channels", not both`)
			return
		}
		channels = []string{req.Channel}
	}
	if len(channels) == 0 {
		writeError(w, http.StatusBadRequest, `"channel" or "channels" is required`)
		return
	}
	for _, ch := range channels {
		if !auth.ValidChannel(ch) {
			writeError(w, http.StatusBadRequest, "invalid channel name "+strings.ToValidUTF8(ch, "?"))
			return
		}
	}
	if err := a.cfg.Ready(); err != nil {
		writeError(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	offsets := make(map[string]uint64, len(channels))
	for _, ch := range channels {
		res, err := a.cfg.Broker.Publish(ctx, ch, req.Data, broker.PublishOptions{})
		if err != nil {
			a.cfg.Logger.Warn("publish failed", "channel", ch, "err", err)
			writeError(w, http.StatusServiceUnavailable, "publish to "+ch+" failed: "+err.Error())
			return
		}
		offsets[ch] = res.Offset
	}
	if single {
		writeJSON(w, http.StatusOK, map[string]uint64{"offset": offsets[req.Channel]})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"offsets": offsets})
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
