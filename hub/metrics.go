package hub

import (
	"cmp"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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
	// FanOut is how long one loop took to deliver one drain of its inbox
	// (every publication queued for it) to its subscribers.
	FanOut prometheus.Histogram
	// InboxLag is, once per drain, how long the oldest publication of the
	// drain waited from its acceptance to the drain's start.
	InboxLag prometheus.Histogram
	// PerWrite is, once per drain, the deliveries per socket write: the
	// coalescing factor.
	PerWrite prometheus.Histogram
}

// LatencyBuckets and FanOutBuckets are the histograms' upper bounds, in
// seconds.
var (
	LatencyBuckets  = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
	FanOutBuckets   = []float64{0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1}
	PerWriteBuckets = []float64{1, 1.5, 2, 3, 5, 10, 20, 50, 100, 500}
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
			Help:      "Time one event loop spent delivering one drain of its inbox (every publication queued for it) to its subscribers.",
			Buckets:   FanOutBuckets,
		}),
		InboxLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "herald",
			Name:      "loop_inbox_lag_seconds",
			Help:      "Time from the acceptance of the oldest publication of an event loop's inbox drain to the start of that drain; one observation per drain.",
			Buckets:   LatencyBuckets,
		}),
		PerWrite: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "herald",
			Name:      "deliveries_per_write",
			Help:      "Deliveries per socket write in one event loop drain (the coalescing factor); one observation per drain that wrote.",
			Buckets:   PerWriteBuckets,
		}),
	}
}

// Collectors returns the collectors to register on /metrics.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.Latency, m.FanOut, m.InboxLag, m.PerWrite}
}

// observeDrain runs on a loop at the end of a drain that started at start
// and sent msgs messages with writes socket writes. A drain that wrote
// nothing observes nothing.
func (m *Metrics) observeDrain(start, end time.Time, msgs, writes int64) {
	if writes == 0 {
		return
	}
	m.FanOut.Observe(end.Sub(start).Seconds())
	m.PerWrite.Observe(float64(msgs) / float64(writes))
}

// InboxDepth is one event loop's inbox: publications and bytes waiting.
type InboxDepth struct {
	Loop         int
	Publications int64
	Bytes        int64
}

// Inboxes returns the depth of every event loop's inbox. Safe from any
// goroutine; it takes no lock.
func (h *Hub) Inboxes() []InboxDepth {
	list := h.inboxList.Load()
	if list == nil {
		return nil
	}
	out := make([]InboxDepth, 0, len(*list))
	for _, in := range *list {
		out = append(out, InboxDepth{Loop: in.index, Publications: in.depth.Load(), Bytes: in.depthBytes.Load()})
	}
	return out
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
