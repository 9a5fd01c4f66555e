package server

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/herald-ws/herald/broker"
)

// Reconnecter is implemented by a broker that keeps a connection to a
// server (the NATS broker): Reconnects is how many times it reconnected
// since it started. It feeds herald_broker_reconnects_total; a broker
// without it reports 0.
type Reconnecter interface {
	Reconnects() int64
}

// Publish results, the values of herald_broker_publishes_total{result}.
const (
	publishAccepted  = "accepted"  // stored, new
	publishDuplicate = "duplicate" // an earlier publish with the same idempotency key was stored
	publishFailed    = "failed"    // not stored
	publishUnknown   = "unknown"   // broker.ErrUnknownOutcome: may have been stored
)

// meteredBroker counts and times every call the node makes to its broker:
// the API's and the clients' publishes, the hub's interest changes and
// recoveries. Deliveries from the broker (Start's callback) pass through
// untouched; the hub measures those.
type meteredBroker struct {
	broker.Broker
	publishes map[string]prometheus.Counter // by result
	errs      map[string]prometheus.Counter // by op, for the ops other than publish
	durations map[string]prometheus.Observer
	collect   []prometheus.Collector
}

// BrokerBuckets are the upper bounds of herald_broker_request_duration_seconds.
var BrokerBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

func newMeteredBroker(b broker.Broker) *meteredBroker {
	m := &meteredBroker{
		Broker:    b,
		publishes: map[string]prometheus.Counter{},
		errs:      map[string]prometheus.Counter{},
		durations: map[string]prometheus.Observer{},
	}
	publishes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "herald", Name: "broker_publishes_total",
		Help: "Publishes this node handed to the broker (HTTP API and client publishes), by result: accepted, duplicate (idempotency key seen), failed (not stored), unknown (may have been stored).",
	}, []string{"result"})
	for _, r := range []string{publishAccepted, publishDuplicate, publishFailed, publishUnknown} {
		m.publishes[r] = publishes.WithLabelValues(r)
	}
	durations := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "herald", Name: "broker_request_duration_seconds",
		Help:    "Duration of broker calls made by this node, by op: publish, recover (a subscribe's history and top offset), subscribe and unsubscribe (the node's interest in a channel).",
		Buckets: BrokerBuckets,
	}, []string{"op"})
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "herald", Name: "broker_errors_total",
		Help: "Broker calls other than publish that failed, by op: recover, subscribe, unsubscribe.",
	}, []string{"op"})
	for _, op := range []string{"publish", "recover", "subscribe", "unsubscribe"} {
		m.durations[op] = durations.WithLabelValues(op)
		if op != "publish" {
			m.errs[op] = errs.WithLabelValues(op)
		}
	}
	up := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "herald", Name: "broker_up",
		Help: "1 when the broker reports it can accept publications (Ready), 0 when not.",
	}, func() float64 {
		if b.Ready() != nil {
			return 0
		}
		return 1
	})
	reconnects := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: "herald", Name: "broker_reconnects_total",
		Help: "Times the broker reconnected to its server since the node started (always 0 for the in-memory broker).",
	}, func() float64 {
		if r, ok := b.(Reconnecter); ok {
			return float64(r.Reconnects())
		}
		return 0
	})
	m.collect = []prometheus.Collector{publishes, durations, errs, up, reconnects}
	return m
}

// Collectors returns the collectors to register on /metrics.
func (m *meteredBroker) Collectors() []prometheus.Collector { return m.collect }

func (m *meteredBroker) Publish(ctx context.Context, channel string, data []byte, opts broker.PublishOptions) (broker.PublishResult, error) {
	start := time.Now()
	res, err := m.Broker.Publish(ctx, channel, data, opts)
	m.durations["publish"].Observe(time.Since(start).Seconds())
	m.publishes[publishResult(res, err)].Inc()
	return res, err
}

func publishResult(res broker.PublishResult, err error) string {
	switch {
	case errors.Is(err, broker.ErrUnknownOutcome):
		return publishUnknown
	case err != nil:
		return publishFailed
	case res.Duplicate:
		return publishDuplicate
	}
	return publishAccepted
}

func (m *meteredBroker) Recover(ctx context.Context, channel string, since uint64, history bool) (broker.Recovery, error) {
	start := time.Now()
	rec, err := m.Broker.Recover(ctx, channel, since, history)
	m.done("recover", start, err)
	return rec, err
}

func (m *meteredBroker) Subscribe(channel string) error {
	start := time.Now()
	err := m.Broker.Subscribe(channel)
	m.done("subscribe", start, err)
	return err
}

// SubscribeTop implements broker.TopSubscriber for a broker that does;
// for one that does not it is Subscribe, with fresh false.
func (m *meteredBroker) SubscribeTop(channel string) (uint64, bool, error) {
	ts, ok := m.Broker.(broker.TopSubscriber)
	if !ok {
		return 0, false, m.Subscribe(channel)
	}
	start := time.Now()
	top, fresh, err := ts.SubscribeTop(channel)
	m.done("subscribe", start, err)
	return top, fresh, err
}

func (m *meteredBroker) Unsubscribe(channel string) error {
	start := time.Now()
	err := m.Broker.Unsubscribe(channel)
	m.done("unsubscribe", start, err)
	return err
}

func (m *meteredBroker) done(op string, start time.Time, err error) {
	m.durations[op].Observe(time.Since(start).Seconds())
	if err != nil {
		m.errs[op].Inc()
	}
}

// counts reads the publish counters, by result.
func (m *meteredBroker) counts() map[string]int64 {
	out := make(map[string]int64, len(m.publishes))
	for r, c := range m.publishes {
		var d dto.Metric
		if c.Write(&d) == nil {
			out[r] = int64(d.GetCounter().GetValue())
		}
	}
	return out
}

// nonblockingMetered is a meteredBroker around a broker.Nonblocking: the
// wrapper must not hide that the hub may call it on the event loops.
type nonblockingMetered struct{ *meteredBroker }

func (nonblockingMetered) Nonblocking() {}

// forHub is the metered broker as the hub should see it.
func (m *meteredBroker) forHub() broker.Broker {
	if _, ok := m.Broker.(broker.Nonblocking); ok {
		return nonblockingMetered{m}
	}
	return m
}
