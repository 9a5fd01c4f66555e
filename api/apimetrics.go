package api

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Publish results, the values of herald_publish_requests_total's result
// label.
const (
	resultAccepted   = "accepted"   // stored: a new offset
	resultDuplicate  = "duplicate"  // an earlier publish with the same key was stored; nothing new
	resultRefused    = "refused"    // answered 4xx: nothing stored, do not retry unchanged
	resultFailed     = "failed"     // not stored (broker unavailable, not ready, not attempted)
	resultUnknown    = "unknown"    // the broker did not confirm in time; it may be stored
	resultOverloaded = "overloaded" // not stored: the loops delivering the channel were behind (503 with Retry-After)
)

// apiMetrics are the API's own request metrics. The label sets are bounded:
// endpoint is a route of the API or "other", code an HTTP status, result
// one of the six above.
type apiMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	publish  *prometheus.CounterVec
	results  map[string]prometheus.Counter
}

func newAPIMetrics() *apiMetrics {
	m := &apiMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "herald", Name: "api_requests_total",
			Help: "HTTP API requests answered, by endpoint (route path, or other) and status code.",
		}, []string{"endpoint", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "herald", Name: "api_request_duration_seconds",
			Help:    "Time to answer an HTTP API request, by endpoint.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"endpoint"}),
		publish: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "herald", Name: "publish_requests_total",
			Help: "POST /api/publish and /api/batch outcomes: accepted, duplicate, failed, unknown and overloaded count channels (a batch: publications); refused counts requests.",
		}, []string{"result"}),
		results: map[string]prometheus.Counter{},
	}
	for _, r := range []string{resultAccepted, resultDuplicate, resultRefused, resultFailed, resultUnknown, resultOverloaded} {
		m.results[r] = m.publish.WithLabelValues(r)
	}
	return m
}

func (m *apiMetrics) register(reg prometheus.Registerer) {
	reg.MustRegister(m.requests, m.duration, m.publish)
}

// request records one answered request. A 4xx from the publish endpoint
// (bad body, key, method, size) is a refused publish, and its 503 past the
// in-flight limit a failed one: neither reached the per-channel loop.
func (m *apiMetrics) request(endpoint string, code int, took time.Duration) {
	m.requests.WithLabelValues(endpoint, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(endpoint).Observe(took.Seconds())
	if (endpoint == endpointPublish || endpoint == endpointBatch) && code >= 400 && code < 500 {
		m.results[resultRefused].Inc()
	}
}

// published counts n channel publishes with result.
func (m *apiMetrics) published(result string, n int) {
	if n > 0 {
		m.results[result].Add(float64(n))
	}
}
