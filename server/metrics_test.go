package server_test

import (
	"bytes"
	"net/http"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/herald-ws/herald/internal/testutil"
)

func TestMetrics(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{})
	a := testutil.DialWS(t, n, "", nil)
	b := testutil.DialWS(t, n, "", nil)
	a.Subscribe("m", 1)
	b.Subscribe("m", 1)
	for range 2 {
		a.Send(`{"op":"ping"}`)
		wantRaw(t, a.Read(), `{"op":"pong"}`)
	}
	for range 5 {
		testutil.Publish(t, n, "m", `{"k":"v"}`)
	}
	for range 5 {
		a.ExpectMessage("m")
		b.ExpectMessage("m")
	}

	status, body, err := testutil.APIRequest(n, http.MethodGet, "/metrics", "", nil)
	if err != nil || status != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", status, err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v\n%s", err, body)
	}
	for _, tc := range []struct {
		name string
		typ  dto.MetricType
		want float64
	}{
		{"herald_connections", dto.MetricType_GAUGE, 2},
		{"herald_subscriptions", dto.MetricType_GAUGE, 2},
		{"herald_channels", dto.MetricType_GAUGE, 1},
		{"herald_messages_in_total", dto.MetricType_COUNTER, 4},   // 2 subscribes, 2 pings
		{"herald_messages_out_total", dto.MetricType_COUNTER, 14}, // 2 acks, 2 pongs, 10 messages
		{"herald_deliveries_total", dto.MetricType_COUNTER, 10},
		{"herald_publications_total", dto.MetricType_COUNTER, 5},
		{"herald_slow_consumer_closes_total", dto.MetricType_COUNTER, 0},
		{"herald_upgrades_total", dto.MetricType_COUNTER, 2},
	} {
		f := families[tc.name]
		if f == nil {
			t.Errorf("%s missing", tc.name)
			continue
		}
		if f.GetType() != tc.typ || len(f.GetMetric()) != 1 || f.GetHelp() == "" {
			t.Errorf("%s: type %v, %d series, help %q; want one %v series with help", tc.name, f.GetType(), len(f.GetMetric()), f.GetHelp(), tc.typ)
			continue
		}
		m := f.GetMetric()[0]
		got := m.GetGauge().GetValue()
		if tc.typ == dto.MetricType_COUNTER {
			got = m.GetCounter().GetValue()
		}
		if got != tc.want {
			t.Errorf("%s = %v, want %v", tc.name, got, tc.want)
		}
	}
	bytesIn := families["herald_bytes_in_total"].GetMetric()[0].GetCounter().GetValue()
	bytesOut := families["herald_bytes_out_total"].GetMetric()[0].GetCounter().GetValue()
	if bytesIn <= 0 || bytesOut < 10*float64(len(`{"op":"message","channel":"m","offset":1,"data":{"k":"v"}}`)) {
		t.Errorf("bytes in %v, out %v: implausible", bytesIn, bytesOut)
	}
	if families["go_goroutines"] == nil || families["process_open_fds"] == nil {
		t.Errorf("Go and process collectors missing")
	}
}
