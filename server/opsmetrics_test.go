package server_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/herald-ws/herald/admin"
	"github.com/herald-ws/herald/internal/testutil"
	"github.com/herald-ws/herald/server"
)

// scrape fetches and parses n's /metrics.
func scrape(t *testing.T, n *server.Node) map[string]*dto.MetricFamily {
	t.Helper()
	status, body, err := testutil.APIRequest(n, http.MethodGet, "/metrics", "", nil)
	if err != nil || status != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", status, err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v\n%s", err, body)
	}
	return fams
}

// series finds the series of family name whose labels include labels
// ("k=v" pairs); nil when there is none.
func series(fams map[string]*dto.MetricFamily, name string, labels ...string) *dto.Metric {
	f := fams[name]
	if f == nil {
		return nil
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, lp := range m.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		for _, kv := range labels {
			k, v, _ := strings.Cut(kv, "=")
			if have[k] != v {
				continue next
			}
		}
		return m
	}
	return nil
}

// value is a counter's or gauge's value, or a histogram's sample count;
// -1 when the series is missing.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	m := series(fams, name, labels...)
	switch {
	case m == nil:
		return -1
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Histogram != nil:
		return float64(m.GetHistogram().GetSampleCount())
	}
	return -1
}

// sum adds up every series of a counter or gauge family.
func sum(fams map[string]*dto.MetricFamily, name string) float64 {
	total := 0.0
	for _, m := range fams[name].GetMetric() {
		total += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return total
}

// TestOperatorMetrics drives a real node through publishes with and
// without local subscribers, refused upgrades and closes, and checks the
// series an operator's dashboard and alerts read.
func TestOperatorMetrics(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{Options: testutil.Options{Loops: 2, MaxConns: 3}})

	// Refused for a path that does not exist (the connection had a session:
	// it ends as handshake_rejected).
	if st, _ := testutil.Upgrade(t, n, "/nope", nil); st != http.StatusNotFound {
		t.Fatalf("upgrade to /nope: %d", st)
	}
	a := testutil.DialWS(t, n, "", nil)
	b := testutil.DialWS(t, n, "", nil)
	c := testutil.DialWS(t, n, "", nil)
	// At -max-conns: refused with 503 before any session exists.
	if st, _ := testutil.Upgrade(t, n, "/ws", nil); st != http.StatusServiceUnavailable {
		t.Fatalf("upgrade past -max-conns: %d", st)
	}
	a.Subscribe("m", 1)
	b.Subscribe("m", 1)
	for range 5 {
		testutil.Publish(t, n, "m", `{"k":"v"}`)
	}
	// Publishes to a channel nobody here subscribes to: the broker takes
	// them, the hub never sees them.
	for range 3 {
		testutil.Publish(t, n, "nobody", `1`)
	}
	for range 5 {
		a.ExpectMessage("m")
		b.ExpectMessage("m")
	}
	// The peer closes c with a close frame.
	if err := c.SendClose(ws.StatusNormalClosure); err != nil {
		t.Fatal(err)
	}
	c.ExpectClose()

	var fams map[string]*dto.MetricFamily
	deadline := time.Now().Add(10 * time.Second)
	for {
		fams = scrape(t, n)
		if value(fams, "herald_connection_closes_total", "reason=peer") == 1 && value(fams, "herald_connections") == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("c's close never counted: closes %v, connections %v", value(fams, "herald_connection_closes_total", "reason=peer"), value(fams, "herald_connections"))
		}
		time.Sleep(20 * time.Millisecond)
	}

	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"herald_broker_publishes_total", []string{"result=accepted"}, 8},
		{"herald_broker_publishes_total", []string{"result=failed"}, 0},
		{"herald_broker_publishes_total", []string{"result=duplicate"}, 0},
		{"herald_broker_publishes_total", []string{"result=unknown"}, 0},
		{"herald_publications_total", nil, 5}, // received from the broker: only "m" has local interest
		{"herald_broker_request_duration_seconds", []string{"op=publish"}, 8},
		{"herald_broker_request_duration_seconds", []string{"op=subscribe"}, 1},
		{"herald_broker_request_duration_seconds", []string{"op=recover"}, 2},
		{"herald_broker_errors_total", []string{"op=recover"}, 0},
		{"herald_broker_up", nil, 1},
		{"herald_broker_reconnects_total", nil, 0},
		{"herald_upgrades_refused_total", []string{"status=404"}, 1},
		{"herald_upgrades_refused_total", []string{"status=503"}, 1},
		{"herald_upgrades_refused_total", []string{"status=401"}, 0},
		{"herald_handshake_rejects_total", nil, 2},
		{"herald_connection_closes_total", []string{"reason=handshake_rejected"}, 1},
		{"herald_connection_closes_total", []string{"reason=slow_consumer"}, 0},
		{"herald_max_connections", nil, 3},
		{"herald_overload_refusals_total", nil, 0},
		{"herald_conflated_total", nil, 0},
		{"herald_loop_inbox_overflows_total", nil, 0},
		{"herald_connections_refused_rate_total", nil, 0},
		{"herald_connections_refused_per_ip_total", nil, 0},
	} {
		if got := value(fams, tc.name, tc.labels...); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	if got, want := sum(fams, "herald_connection_close_codes_total"), sum(fams, "herald_connection_closes_total"); got != want || got == 0 {
		t.Errorf("closes by code sum to %v, closes by reason to %v", got, want)
	}
	if got := value(fams, "herald_connection_close_codes_total", "code=none"); got < 1 {
		t.Errorf(`herald_connection_close_codes_total{code="none"} = %v, want the refused upgrade counted`, got)
	}
	if got, want := sum(fams, "herald_upgrades_refused_total"), value(fams, "herald_handshake_rejects_total"); got != want {
		t.Errorf("refusals by status sum to %v, herald_handshake_rejects_total is %v", got, want)
	}
	if got := len(fams["herald_loop_connections"].GetMetric()); got != 2 {
		t.Errorf("%d herald_loop_connections series, want one per loop (2)", got)
	}
	if got, want := sum(fams, "herald_loop_connections"), value(fams, "herald_connections"); got != want {
		t.Errorf("per-loop connections sum to %v, herald_connections is %v", got, want)
	}
	var reasons []string
	for _, m := range fams["herald_connection_closes_total"].GetMetric() {
		reasons = append(reasons, m.GetLabel()[0].GetValue())
	}
	sort.Strings(reasons)
	if got := strings.Join(reasons, ","); got != "close_timeout,disconnected,going_away,handshake_rejected,handshake_timeout,idle_timeout,inbound_budget,keepalive_timeout,peer,policy,protocol_error,resync,slow_consumer,token_expired" {
		t.Errorf("close reasons exported: %s", got)
	}

	// One latency observation per publication per loop with subscribers
	// (a and b sit on one loop or on two); one fan-out, lag and
	// deliveries-per-write observation per drain, and a drain may carry
	// several publications.
	lat, fan := value(fams, "herald_publish_delivery_latency_seconds"), value(fams, "herald_fanout_duration_seconds")
	if (lat != 5 && lat != 10) || fan < 1 || fan > lat {
		t.Errorf("latency %v and fan-out %v observations for 5 publications to subscribers on at most 2 loops", lat, fan)
	}
	if lag, pw := value(fams, "herald_loop_inbox_lag_seconds"), value(fams, "herald_deliveries_per_write"); lag != fan || pw != fan {
		t.Errorf("inbox lag %v and deliveries-per-write %v observations, want one per drain (%v)", lag, pw, fan)
	}
	if got := len(fams["herald_loop_inbox_publications"].GetMetric()); got < 1 || got > 2 {
		t.Errorf("%d herald_loop_inbox_publications series, want one per loop with subscribers", got)
	}
	if got := sum(fams, "herald_loop_inbox_publications") + sum(fams, "herald_loop_inbox_bytes"); got != 0 {
		t.Errorf("inboxes hold %v at rest, want 0", got)
	}
	h := series(fams, "herald_publish_delivery_latency_seconds").GetHistogram()
	if mean := h.GetSampleSum() / float64(h.GetSampleCount()); mean <= 0 || mean > 5 {
		t.Errorf("mean publish-to-delivery latency %vs", mean)
	}
	for _, name := range []string{"herald_publish_delivery_latency_seconds", "herald_fanout_duration_seconds", "herald_broker_request_duration_seconds", "herald_loop_inbox_lag_seconds", "herald_deliveries_per_write"} {
		if f := fams[name]; f.GetType() != dto.MetricType_HISTOGRAM || f.GetHelp() == "" {
			t.Errorf("%s: type %v, help %q", name, f.GetType(), f.GetHelp())
		}
	}
	if t.Failed() {
		_, body, _ := testutil.APIRequest(n, http.MethodGet, "/metrics", "", nil)
		t.Logf("%s", body)
	}
}

// TestAdminStats: the admin page's JSON on a real node, behind the API key.
func TestAdminStats(t *testing.T) {
	t.Parallel()
	const key = "k"
	n := testutil.StartNode(t, testutil.NodeOptions{APIKey: key, Options: testutil.Options{MaxConns: 9}})
	for _, k := range []string{"", "wrong"} {
		if st, _, err := testutil.APIRequest(n, http.MethodGet, "/api/admin/stats", k, nil); err != nil || st != http.StatusUnauthorized {
			t.Fatalf("key %q: %d %v", k, st, err)
		}
	}
	a := testutil.DialWS(t, n, "", nil)
	b := testutil.DialWS(t, n, "", nil)
	a.Subscribe("two", 1)
	b.Subscribe("two", 1)
	b.Subscribe("one", 2)
	for range 3 {
		if _, err := testutil.PublishKey(n, key, "two", `1`); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		a.ExpectMessage("two")
		b.ExpectMessage("two")
	}
	st, body, err := testutil.APIRequest(n, http.MethodGet, "/api/admin/stats", key, nil)
	if err != nil || st != http.StatusOK {
		t.Fatalf("GET /api/admin/stats: %d %v %s", st, err, body)
	}
	var s admin.Snapshot
	if err := json.Unmarshal(body, &s); err != nil {
		t.Fatal(err)
	}
	top, _ := json.Marshal(s.TopChannels)
	if string(top) != `[{"channel":"two","subscribers":2},{"channel":"one","subscribers":1}]` {
		t.Errorf("top channels %s", top)
	}
	if s.Stats.Connections != 2 || s.Stats.Subscriptions != 3 || s.Stats.Deliveries != 6 || s.MaxConnections != 9 || len(s.LoopConnections) != 2 {
		t.Errorf("stats %+v, max %d, loops %v", s.Stats, s.MaxConnections, s.LoopConnections)
	}
	if s.Publishes["accepted"] != 3 || !s.BrokerUp || len(s.Nodes) != 1 || !s.Node.Ready || s.Node.ClientAddr != n.Addr().String() || s.Node.Started == 0 {
		t.Errorf("publishes %v, broker up %v, nodes %+v", s.Publishes, s.BrokerUp, s.Nodes)
	}
	// One latency observation per publication per loop with subscribers
	// of "two"; one fan-out observation per drain, which may carry several.
	if c := s.Latency.Count; c != 3 && c != 6 || s.FanOut.Count < 1 || s.FanOut.Count > c || len(s.Latency.Counts) != len(s.Latency.Bounds)+1 || s.Latency.Counts[len(s.Latency.Counts)-1] != c {
		t.Errorf("latency %+v, fan-out count %d", s.Latency, s.FanOut.Count)
	}
	// The page itself needs no key.
	if st, page, _ := testutil.APIRequest(n, http.MethodGet, "/admin/", "", nil); st != http.StatusOK || !strings.Contains(string(page), "admin.js") {
		t.Errorf("GET /admin/: %d", st)
	}
}
