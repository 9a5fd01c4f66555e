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
	// Collectors are registered on /metrics beside the Stats series (the
	// hub's histograms, the broker's and the listener's labelled series).
	Collectors []prometheus.Collector
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
