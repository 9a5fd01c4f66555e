package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/herald-ws/herald/broker"
)

// fakeBroker records publications and numbers them from 1 across all
// channels; publishing to a channel in fail returns that error.
type fakeBroker struct {
	mu   sync.Mutex
	pubs []string // "channel data"
	fail map[string]error
}

func (b *fakeBroker) Start(broker.DeliverFunc) error { return nil }
func (b *fakeBroker) Subscribe(string) error         { return nil }
func (b *fakeBroker) Unsubscribe(string) error       { return nil }
func (b *fakeBroker) Ready() error                   { return nil }
func (b *fakeBroker) Close() error                   { return nil }
func (b *fakeBroker) Recover(context.Context, string, uint64, bool) (broker.Recovery, error) {
	return broker.Recovery{}, nil
}

func (b *fakeBroker) Publish(ctx context.Context, channel string, data []byte, _ broker.PublishOptions) (broker.PublishResult, error) {
	if _, ok := ctx.Deadline(); !ok {
		return broker.PublishResult{}, errors.New("fake: publish without a deadline")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.fail[channel]; err != nil {
		return broker.PublishResult{}, err
	}
	b.pubs = append(b.pubs, channel+" "+string(data))
	return broker.PublishResult{Offset: uint64(len(b.pubs))}, nil
}

func (b *fakeBroker) published() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string{}, b.pubs...)
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newAPI(cfg Config) http.Handler {
	if cfg.Broker == nil {
		cfg.Broker = &fakeBroker{}
	}
	if cfg.Stats == nil {
		cfg.Stats = func() Stats { return Stats{} }
	}
	if cfg.Ready == nil {
		cfg.Ready = func() error { return nil }
	}
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	return New(cfg)
}

type response struct {
	code   int
	body   string
	header http.Header
}

func do(h http.Handler, method, path, body string, header ...string) response {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, r)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return serve(h, req)
}

func serve(h http.Handler, req *http.Request) response {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return response{w.Code, w.Body.String(), w.Header()}
}

func publishReq(body string) *http.Request {
	return httptest.NewRequest(http.MethodPost, "/api/publish", strings.NewReader(body))
}

func TestPublishOK(t *testing.T) {
	for _, c := range []struct {
		name string
		body string
		want string
		pubs []string
	}{
		{"single", `{"channel":"news","data":{"a":1}}`, `{"offset":1}`, []string{`news {"a":1}`}},
		{"single, string data", `{"channel":"news","data":"hi"}`, `{"offset":1}`, []string{`news "hi"`}},
		{"single, data kept verbatim", `{"data": [1, 2,	3] ,"channel":"user:42"}`, `{"offset":1}`, []string{`user:42 [1, 2,	3]`}},
		{"single, null data", `{"channel":"news","data":null}`, `{"offset":1}`, []string{`news null`}},
		{"single, 255-byte name", `{"channel":"` + strings.Repeat("n", 255) + `","data":0}`, `{"offset":1}`, []string{strings.Repeat("n", 255) + " 0"}},
		{"several", `{"channels":["b","a","c.d"],"data":true}`, `{"offsets":{"a":2,"b":1,"c.d":3}}`, []string{"b true", "a true", "c.d true"}},
		{"one in channels", `{"channels":["news"],"data":1}`, `{"offsets":{"news":1}}`, []string{"news 1"}},
		{"empty channel with channels", `{"channel":"","channels":["a","b"],"data":1}`, `{"offsets":{"a":1,"b":2}}`, []string{"a 1", "b 1"}},
		{"unknown fields ignored", `{"channel":"news","data":1,"extra":"x"}`, `{"offset":1}`, []string{"news 1"}},
	} {
		b := &fakeBroker{}
		r := do(newAPI(Config{Broker: b}), "POST", "/api/publish", c.body)
		if r.code != http.StatusOK || r.body != c.want+"\n" || r.header.Get("Content-Type") != "application/json" {
			t.Errorf("%s: %d %q (%s), want 200 %q application/json", c.name, r.code, r.body, r.header.Get("Content-Type"), c.want)
		}
		if got := b.published(); !reflect.DeepEqual(got, c.pubs) {
			t.Errorf("%s: published %q, want %q", c.name, got, c.pubs)
		}
	}
}

func TestPublishWithMemoryBroker(t *testing.T) {
	m := broker.NewMemory(broker.MemoryConfig{HistorySize: 4})
	if err := m.Start(func(broker.Publication) {}); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	h := newAPI(Config{Broker: m, Ready: m.Ready})
	var first, second struct{ Offset uint64 }
	for _, out := range []*struct{ Offset uint64 }{&first, &second} {
		r := do(h, "POST", "/api/publish", `{"channel":"news","data":1}`)
		if r.code != http.StatusOK || json.Unmarshal([]byte(r.body), out) != nil {
			t.Fatalf("publish: %d %q", r.code, r.body)
		}
	}
	if second.Offset != first.Offset+1 {
		t.Fatalf("offsets %d then %d, want them one apart", first.Offset, second.Offset)
	}
	_ = m.Close()
	r := do(h, "POST", "/api/publish", `{"channel":"news","data":1}`)
	if r.code != http.StatusServiceUnavailable || r.body != `{"error":"not ready: broker: closed"}`+"\n" {
		t.Fatalf("publish to a closed broker: %d %q", r.code, r.body)
	}
}

func TestPublishBadRequest(t *testing.T) {
	for _, c := range []struct {
		name string
		body string
		want string // the error message, or its prefix when it ends in "..."
	}{
		{"empty body", ``, `invalid JSON: ...`},
		{"not JSON", `channel=news&data=1`, `invalid JSON: ...`},
		{"truncated", `{"channel":"news","data":1`, `invalid JSON: ...`},
		{"trailing garbage", `{"channel":"news","data":1} x`, `invalid JSON: ...`},
		{"array", `[{"channel":"news","data":1}]`, `invalid JSON: ...`},
		{"channel not a string", `{"channel":5,"data":1}`, `invalid JSON: ...`},
		{"channels not a list", `{"channels":"news","data":1}`, `invalid JSON: ...`},
		{"bad data", `{"channel":"news","data":nope}`, `invalid JSON: ...`},
		{"missing data", `{"channel":"news"}`, `"data" is required`},
		{"null body", `null`, `"data" is required`},
		{"empty object", `{}`, `"data" is required`},
		{"both", `{"channel":"a","channels":["b"],"data":1}`, `give "channel" or "channels", not both`},
		{"both, same name", `{"channel":"a","channels":["a"],"data":1}`, `give "channel" or "channels", not both`},
		{"neither", `{"data":1}`, `"channel" or "channels" is required`},
		{"empty channel", `{"channel":"","data":1}`, `"channel" or "channels" is required`},
		{"empty channels", `{"channels":[],"data":1}`, `"channel" or "channels" is required`},
		{"null channels", `{"channels":null,"data":1}`, `"channel" or "channels" is required`},
		{"space in name", `{"channel":"a b","data":1}`, `invalid channel name a b`},
		{"slash in name", `{"channel":"news/eu","data":1}`, `invalid channel name news/eu`},
		{"wildcard name", `{"channel":"news*","data":1}`, `invalid channel name news*`},
		{"unicode name", `{"channel":"café","data":1}`, `invalid channel name café`},
		{"256-byte name", `{"channel":"` + strings.Repeat("n", 256) + `","data":1}`, `invalid channel name ` + strings.Repeat("n", 256)},
		{"empty name in channels", `{"channels":["a",""],"data":1}`, `invalid channel name `},
		{"bad name after good ones", `{"channels":["a","b","c d"],"data":1}`, `invalid channel name c d`},
	} {
		b := &fakeBroker{}
		r := do(newAPI(Config{Broker: b}), "POST", "/api/publish", c.body)
		var got struct{ Error string }
		if err := json.Unmarshal([]byte(r.body), &got); err != nil || r.code != http.StatusBadRequest {
			t.Errorf("%s: %d %q, want 400 with a JSON error", c.name, r.code, r.body)
			continue
		}
		if prefix, ok := strings.CutSuffix(c.want, "..."); ok {
			if !strings.HasPrefix(got.Error, prefix) || len(got.Error) == len(prefix) {
				t.Errorf("%s: error %q, want %q followed by the reason", c.name, got.Error, prefix)
			}
		} else if got.Error != c.want {
			t.Errorf("%s: error %q, want %q", c.name, got.Error, c.want)
		}
		if pubs := b.published(); len(pubs) != 0 {
			t.Errorf("%s: a rejected request published %q", c.name, pubs)
		}
	}
}

func TestPublishBodyLimit(t *testing.T) {
	const limit = 64
	prefix, suffix := `{"channel":"news","data":"`, `"}`
	body := func(n int) string { return prefix + strings.Repeat("x", n-len(prefix)-len(suffix)) + suffix }
	for _, c := range []struct {
		size int
		code int
		want string
	}{
		{limit, http.StatusOK, `{"offset":1}`},
		{limit + 1, http.StatusRequestEntityTooLarge, `{"error":"body over the limit of 64 bytes"}`},
		{4 * limit, http.StatusRequestEntityTooLarge, `{"error":"body over the limit of 64 bytes"}`},
	} {
		b := &fakeBroker{}
		r := do(newAPI(Config{Broker: b, MaxBody: limit}), "POST", "/api/publish", body(c.size))
		if r.code != c.code || r.body != c.want+"\n" {
			t.Errorf("%d-byte body: %d %q, want %d %q", c.size, r.code, r.body, c.code, c.want)
		}
		if c.code != http.StatusOK && len(b.published()) != 0 {
			t.Errorf("%d-byte body over the limit was published", c.size)
		}
	}
	// The default limit is 1 MiB.
	big := body(1<<20 + 1)
	if r := do(newAPI(Config{}), "POST", "/api/publish", big); r.code != http.StatusRequestEntityTooLarge {
		t.Errorf("1 MiB + 1 body with the default limit: %d, want 413", r.code)
	}
	if r := do(newAPI(Config{}), "POST", "/api/publish", body(1<<20)); r.code != http.StatusOK {
		t.Errorf("1 MiB body with the default limit: %d %q, want 200", r.code, r.body)
	}
}

func TestAPIKey(t *testing.T) {
	h := newAPI(Config{APIKey: "k3y", Extra: map[string]http.Handler{
		"GET /extra": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "extra") }),
	}})
	const unauthorized = `{"error":"missing or wrong API key"}` + "\n"
	for _, c := range []struct {
		method, path, body string
		auth               string // Authorization header; "" sends none
		code               int
	}{
		{"POST", "/api/publish", `{"channel":"a","data":1}`, "", 401},
		{"POST", "/api/publish", `{"channel":"a","data":1}`, "Bearer nope", 401},
		{"POST", "/api/publish", `{"channel":"a","data":1}`, "k3y", 401},
		{"POST", "/api/publish", `{"channel":"a","data":1}`, "Basic k3y", 401},
		{"POST", "/api/publish", `{"channel":"a","data":1}`, "Bearer k3y2", 401},
		{"POST", "/api/publish", `{"channel":"a","data":1}`, "Bearer k3", 401},
		{"POST", "/api/publish", `{"channel":"a","data":1}`, "Bearer k3y", 200},
		{"POST", "/api/publish", `{bad`, "", 401}, // the key is checked first
		{"GET", "/api/stats", "", "", 401},
		{"GET", "/api/stats", "", "Bearer k3y", 200},
		{"GET", "/api/nope", "", "", 401},
		{"GET", "/api/nope", "", "Bearer k3y", 404},
		{"GET", "/metrics", "", "", 200},
		{"GET", "/healthz", "", "", 200},
		{"GET", "/readyz", "", "", 200},
		{"GET", "/extra", "", "", 200},
	} {
		var hdr []string
		if c.auth != "" {
			hdr = []string{"Authorization", c.auth}
		}
		r := do(h, c.method, c.path, c.body, hdr...)
		if r.code != c.code {
			t.Errorf("%s %s with %q: %d %q, want %d", c.method, c.path, c.auth, r.code, r.body, c.code)
		}
		if c.code == 401 && (r.body != unauthorized || r.header.Get("WWW-Authenticate") != `Bearer realm="herald"`) {
			t.Errorf("%s %s with %q: 401 body %q, WWW-Authenticate %q", c.method, c.path, c.auth, r.body, r.header.Get("WWW-Authenticate"))
		}
	}
	// Without a key, /api/* is open.
	open := newAPI(Config{})
	for _, p := range []struct{ method, path, body string }{{"POST", "/api/publish", `{"channel":"a","data":1}`}, {"GET", "/api/stats", ""}} {
		if r := do(open, p.method, p.path, p.body); r.code != http.StatusOK {
			t.Errorf("no key: %s %s: %d %q, want 200", p.method, p.path, r.code, r.body)
		}
	}
	if r := do(open, "GET", "/api/nope", ""); r.code != http.StatusNotFound || r.body != `{"error":"no such endpoint"}`+"\n" {
		t.Errorf("no key: GET /api/nope: %d %q", r.code, r.body)
	}
}

func TestPublishUnavailable(t *testing.T) {
	notReady := errors.New("draining")
	b := &fakeBroker{}
	r := do(newAPI(Config{Broker: b, Ready: func() error { return notReady }}), "POST", "/api/publish", `{"channel":"news","data":1}`)
	if r.code != http.StatusServiceUnavailable || r.body != `{"error":"not ready: draining"}`+"\n" || len(b.published()) != 0 {
		t.Errorf("not ready: %d %q, published %q; want 503 and nothing published", r.code, r.body, b.published())
	}
	// Validation comes before readiness: a bad request is still a 400.
	r = do(newAPI(Config{Ready: func() error { return notReady }}), "POST", "/api/publish", `{"channel":"news"}`)
	if r.code != http.StatusBadRequest {
		t.Errorf("bad request while not ready: %d %q, want 400", r.code, r.body)
	}

	b = &fakeBroker{fail: map[string]error{"news": broker.ErrUnavailable}}
	r = do(newAPI(Config{Broker: b}), "POST", "/api/publish", `{"channel":"news","data":1}`)
	if r.code != http.StatusServiceUnavailable || r.body != `{"error":"publish to news: not stored: broker: unavailable"}`+"\n" {
		t.Errorf("broker fails: %d %q, want 503", r.code, r.body)
	}
	b = &fakeBroker{fail: map[string]error{"b": broker.ErrUnavailable}}
	r = do(newAPI(Config{Broker: b}), "POST", "/api/publish", `{"channels":["a","b","c"],"data":1}`)
	if r.code != http.StatusServiceUnavailable || r.body != `{"offsets":{"a":1},"errors":{"b":"not stored: broker: unavailable","c":"not attempted: the broker is unavailable"},`+
		`"error":"stored on 1 of 3 channels; 2 not stored (see errors): retrying those is safe"}`+"\n" {
		t.Errorf("broker fails on the second of three: %d %q, want 503", r.code, r.body)
	}
	// The channels before the failure were published; the rest were not.
	if got := b.published(); !reflect.DeepEqual(got, []string{"a 1"}) {
		t.Errorf("broker fails on the second of three: published %q, want [a 1]", got)
	}
}

func fullStats() Stats {
	return Stats{
		Connections: 1, Channels: 2, Subscriptions: 3, MessagesIn: 4, MessagesOut: 5,
		BytesIn: 6, BytesOut: 7, SlowConsumerCloses: 8, Publications: 9, Deliveries: 10,
		Upgrades: 11, HandshakeRejects: 12, HandshakeTimeouts: 13, IdleTimeouts: 14, ProtocolErrors: 1 << 40,
	}
}

func TestStats(t *testing.T) {
	want := fullStats()
	r := do(newAPI(Config{Stats: func() Stats { return want }}), "GET", "/api/stats", "")
	if r.code != http.StatusOK || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /api/stats: %d %q (%s)", r.code, r.body, r.header.Get("Content-Type"))
	}
	var got Stats
	dec := json.NewDecoder(strings.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil || got != want {
		t.Fatalf("GET /api/stats = %+v (%v), want %+v", got, err, want)
	}
	// The field names are part of the API.
	var raw map[string]int64
	if err := json.Unmarshal([]byte(r.body), &raw); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]int64{
		"connections": 1, "channels": 2, "subscriptions": 3, "messages_in": 4, "messages_out": 5,
		"bytes_in": 6, "bytes_out": 7, "slow_consumer_closes": 8, "publications": 9, "deliveries": 10,
		"upgrades": 11, "handshake_rejects": 12, "handshake_timeouts": 13, "idle_timeouts": 14, "protocol_errors": 1 << 40,
	} {
		if got, ok := raw[name]; !ok || got != v {
			t.Errorf("stats %q = %d (present %v), want %d", name, got, ok, v)
		}
	}
	if len(raw) != 15 {
		t.Errorf("stats has %d fields, want 15: %s", len(raw), r.body)
	}
}

func TestHealthAndReady(t *testing.T) {
	var mu sync.Mutex
	var readyErr error
	h := newAPI(Config{Ready: func() error { mu.Lock(); defer mu.Unlock(); return readyErr }})
	if r := do(h, "GET", "/healthz", ""); r.code != 200 || r.body != "ok\n" {
		t.Errorf("/healthz: %d %q", r.code, r.body)
	}
	if r := do(h, "GET", "/readyz", ""); r.code != 200 || r.body != "ready\n" {
		t.Errorf("/readyz while ready: %d %q", r.code, r.body)
	}
	mu.Lock()
	readyErr = broker.ErrUnavailable
	mu.Unlock()
	if r := do(h, "GET", "/readyz", ""); r.code != 503 || r.body != "not ready: broker: unavailable\n" {
		t.Errorf("/readyz while not ready: %d %q", r.code, r.body)
	}
	if r := do(h, "GET", "/healthz", ""); r.code != 200 {
		t.Errorf("/healthz while not ready: %d, want 200 (alive, just not ready)", r.code)
	}
}

func TestMetrics(t *testing.T) {
	var mu sync.Mutex
	current := fullStats()
	h := newAPI(Config{Stats: func() Stats { mu.Lock(); defer mu.Unlock(); return current }})
	scrape := func() map[string]*dto.MetricFamily {
		t.Helper()
		r := do(h, "GET", "/metrics", "")
		if r.code != 200 {
			t.Fatalf("/metrics: %d %q", r.code, r.body)
		}
		p := expfmt.NewTextParser(model.LegacyValidation)
		fams, err := p.TextToMetricFamilies(strings.NewReader(r.body))
		if err != nil {
			t.Fatalf("/metrics is not the Prometheus text format: %v\n%s", err, r.body)
		}
		return fams
	}
	type series struct {
		name    string
		counter bool
		value   func(Stats) int64
	}
	all := []series{
		{"herald_connections", false, func(s Stats) int64 { return s.Connections }},
		{"herald_channels", false, func(s Stats) int64 { return int64(s.Channels) }},
		{"herald_subscriptions", false, func(s Stats) int64 { return s.Subscriptions }},
		{"herald_messages_in_total", true, func(s Stats) int64 { return s.MessagesIn }},
		{"herald_messages_out_total", true, func(s Stats) int64 { return s.MessagesOut }},
		{"herald_bytes_in_total", true, func(s Stats) int64 { return s.BytesIn }},
		{"herald_bytes_out_total", true, func(s Stats) int64 { return s.BytesOut }},
		{"herald_slow_consumer_closes_total", true, func(s Stats) int64 { return s.SlowConsumerCloses }},
		{"herald_publications_total", true, func(s Stats) int64 { return s.Publications }},
		{"herald_deliveries_total", true, func(s Stats) int64 { return s.Deliveries }},
		{"herald_upgrades_total", true, func(s Stats) int64 { return s.Upgrades }},
		{"herald_handshake_rejects_total", true, func(s Stats) int64 { return s.HandshakeRejects }},
		{"herald_handshake_timeouts_total", true, func(s Stats) int64 { return s.HandshakeTimeouts }},
		{"herald_idle_timeouts_total", true, func(s Stats) int64 { return s.IdleTimeouts }},
		{"herald_protocol_errors_total", true, func(s Stats) int64 { return s.ProtocolErrors }},
	}
	check := func(want Stats) {
		t.Helper()
		fams := scrape()
		herald := 0
		for name := range fams {
			if strings.HasPrefix(name, "herald_") && !apiMetricNames[name] { // apimetrics_test.go checks those
				herald++
			}
		}
		if herald != len(all) {
			t.Errorf("%d herald_* families, want %d", herald, len(all))
		}
		for _, s := range all {
			f := fams[s.name]
			if f == nil || len(f.GetMetric()) != 1 {
				t.Errorf("%s missing or not a single series", s.name)
				continue
			}
			m := f.GetMetric()[0]
			var got float64
			if s.counter {
				if f.GetType() != dto.MetricType_COUNTER {
					t.Errorf("%s is %v, want a counter", s.name, f.GetType())
				}
				got = m.GetCounter().GetValue()
			} else {
				if f.GetType() != dto.MetricType_GAUGE {
					t.Errorf("%s is %v, want a gauge", s.name, f.GetType())
				}
				got = m.GetGauge().GetValue()
			}
			if got != float64(s.value(want)) || f.GetHelp() == "" {
				t.Errorf("%s = %v (help %q), want %d with help", s.name, got, f.GetHelp(), s.value(want))
			}
		}
		if fams["go_goroutines"] == nil {
			t.Errorf("Go runtime metrics missing")
		}
	}
	check(current)
	// Values are read at scrape time.
	mu.Lock()
	current.Connections, current.MessagesOut, current.ProtocolErrors = 0, 77, 3
	next := current
	mu.Unlock()
	check(next)
}
