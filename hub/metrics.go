package hub

import (
	"cmp"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-ws/herald/broker"
)

// Metrics are the hub's histograms, observed on the event loops once per
// publication per loop (never per subscriber) and exported on /metrics.
// Observing allocates nothing and takes no lock.
type Metrics struct {
	// Latency is the publish-to-delivery latency: from Publication.Time
	// (set by the broker when it accepted the publish; for the NATS broker
	// today it is the moment this node received it) to the moment a loop
	// finished writing the frame to its subscribers of the channel.
	Latency prometheus.Histogram
	// FanOut is how long one loop took to write one publication to all
	// its subscribers of the channel.
	FanOut prometheus.Histogram
}

// LatencyBuckets and FanOutBuckets are the histograms' upper bounds, in
// seconds.
var (
	LatencyBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
	FanOutBuckets  = []float64{0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1}
)

func newMetrics() *Metrics {
	return &Metrics{
		Latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "herald",
			Name:      "publish_delivery_latency_seconds",
			Help:      "Time from a publication's acceptance by the broker to the moment an event loop finished writing it to its local subscribers; one observation per publication per loop with subscribers.",
			Buckets:   LatencyBuckets,
		}),
		FanOut: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "herald",
			Name:      "fanout_duration_seconds",
			Help:      "Time one event loop spent writing one publication to all its subscribers of the channel.",
			Buckets:   FanOutBuckets,
		}),
	}
}

// Collectors returns the collectors to register on /metrics.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.Latency, m.FanOut}
}

// observeFanOut runs on a loop at the end of a fan-out that started at
// start and wrote p to sent subscribers. A loop that wrote nothing (every
// subscriber recovering, or already past p) observes nothing: it delivered
// nothing whose latency could be measured.
func (m *Metrics) observeFanOut(p broker.Publication, start time.Time, sent int64) {
	if sent == 0 {
		return
	}
	end := time.Now()
	m.FanOut.Observe(end.Sub(start).Seconds())
	if !p.Time.IsZero() {
		m.Latency.Observe(max(end.Sub(p.Time), 0).Seconds())
	}
}

// Metrics returns the hub's histograms.
func (h *Hub) Metrics() *Metrics { return h.metrics }

// ChannelCount is a channel and its subscriptions on this node.
type ChannelCount struct {
	Channel     string `json:"channel"`
	Subscribers int64  `json:"subscribers"`
}

// TopChannels returns at most n channels with the most subscriptions on
// this node, most first (ties by name). It walks the registry under the
// read lock, keeping only the best n, so it costs one pass over the
// channels and O(n) memory: fine for an admin page polling once a second,
// not for a hot path. Safe from any goroutine.
func (h *Hub) TopChannels(n int) []ChannelCount {
	if n <= 0 {
		return nil
	}
	better := func(a, b ChannelCount) int {
		if c := cmp.Compare(b.Subscribers, a.Subscribers); c != 0 {
			return c
		}
		return cmp.Compare(a.Channel, b.Channel)
	}
	top := make([]ChannelCount, 0, n+1)
	h.mu.RLock()
	for name, ch := range h.channels {
		c := ChannelCount{Channel: name, Subscribers: int64(ch.subs.Load())}
		if c.Subscribers <= 0 {
			continue // being dropped: no subscriber left
		}
		if len(top) == n && better(c, top[n-1]) >= 0 {
			continue
		}
		i, _ := slices.BinarySearchFunc(top, c, better)
		top = slices.Insert(top, i, c)
		if len(top) > n {
			top = top[:n]
		}
	}
	h.mu.RUnlock()
	return top
}
