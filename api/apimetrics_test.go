package api

import (
	"net/http"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/herald-ws/herald/broker"
)

var apiMetricNames = map[string]bool{
	"herald_api_requests_total":           true,
	"herald_api_request_duration_seconds": true,
	"herald_publish_requests_total":       true,
}

func TestAPIMetrics(t *testing.T) {
	b := newKeyBroker()
	b.fail["down"] = broker.ErrUnavailable
	b.fail["lost"] = broker.ErrUnknownOutcome
	h := newAPI(Config{Broker: b, Ready: b.Ready, APIKey: "k"})
	auth := []string{"Authorization", "Bearer k", "Idempotency-Key", "i1"}
	for _, r := range []struct {
		method, path, body string
		hdr                []string
		code               int
	}{
		{"POST", "/api/publish", `{"channel":"a","data":1}`, auth, 200},
		{"POST", "/api/publish", `{"channel":"a","data":1}`, auth, 200}, // duplicate
		{"POST", "/api/publish", `{"channels":["b","c","lost"],"data":1}`, auth, 504},
		{"POST", "/api/publish", `{"channels":["down","x","y"],"data":1}`, auth, 503},
		{"POST", "/api/publish", `{"channel":"a"}`, auth, 400},
		{"POST", "/api/publish", `{"channel":"a","data":1}`, nil, 401},
		{"GET", "/api/publish", "", auth, 405},
		{"GET", "/api/stats", "", auth, 200},
		{"GET", "/nope/1", "", nil, 404},
		{"GET", "/nope/2", "", nil, 404},
		{"GET", "/healthz", "", nil, 200},
	} {
		if got := do(h, r.method, r.path, r.body, r.hdr...); got.code != r.code {
			t.Fatalf("%s %s: %d %s, want %d", r.method, r.path, got.code, got.body, r.code)
		}
	}
	fams := scrapeFamilies(t, h)
	counter := func(name string, labels map[string]string) float64 {
		t.Helper()
		f := fams[name]
		if f == nil || f.GetType() != dto.MetricType_COUNTER || f.GetHelp() == "" {
			t.Fatalf("%s missing, not a counter or without help", name)
		}
	next:
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
		return 0
	}
	for _, c := range []struct {
		endpoint, code string
		want           float64
	}{
		{"/api/publish", "200", 2}, {"/api/publish", "504", 1}, {"/api/publish", "503", 1}, {"/api/publish", "400", 1},
		{"/api/publish", "401", 1}, {"/api/publish", "405", 1}, {"/api/stats", "200", 1}, {"other", "404", 2}, {"/healthz", "200", 1},
	} {
		if got := counter("herald_api_requests_total", map[string]string{"endpoint": c.endpoint, "code": c.code}); got != c.want {
			t.Errorf("herald_api_requests_total{endpoint=%q,code=%q} = %v, want %v", c.endpoint, c.code, got, c.want)
		}
	}
	// accepted: a, b, c; duplicate: a; unknown: lost; failed: down and the
	// two not attempted after it; refused: the 400, 401 and 405.
	for result, want := range map[string]float64{"accepted": 3, "duplicate": 1, "unknown": 1, "failed": 3, "refused": 3} {
		if got := counter("herald_publish_requests_total", map[string]string{"result": result}); got != want {
			t.Errorf("herald_publish_requests_total{result=%q} = %v, want %v", result, got, want)
		}
	}
	hist := fams["herald_api_request_duration_seconds"]
	if hist == nil || hist.GetType() != dto.MetricType_HISTOGRAM {
		t.Fatal("herald_api_request_duration_seconds missing or not a histogram")
	}
	counts := map[string]uint64{}
	for _, m := range hist.GetMetric() {
		counts[m.GetLabel()[0].GetValue()] = m.GetHistogram().GetSampleCount()
	}
	if counts["/api/publish"] != 7 || counts["other"] != 2 || counts["/api/stats"] != 1 {
		t.Errorf("histogram sample counts %v", counts)
	}
	// Every label value is bounded: endpoints are routes or "other".
	for _, m := range fams["herald_api_requests_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "endpoint" && strings.HasPrefix(l.GetValue(), "/nope") {
				t.Errorf("unknown path leaked into a label: %s", l.GetValue())
			}
		}
	}
}

func scrapeFamilies(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	r := do(h, "GET", "/metrics", "")
	if r.code != 200 {
		t.Fatalf("/metrics: %d", r.code)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(r.body))
	if err != nil {
		t.Fatalf("/metrics: %v", err)
	}
	return fams
}
