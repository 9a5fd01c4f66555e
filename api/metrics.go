package api

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// registry exposes the node's metrics to Prometheus. The Stats series are
// read at scrape time from the same counters /api/stats reads; the
// Collectors the node passes in (histograms observed once per publication
// per loop, counters bumped once per broker call or connection close) cost
// the hot paths no allocation and no lock.
func (a *handler) registry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a.metrics.register(reg)
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
	counter("publications_total", "Publications the broker delivered to this node (channels with local subscribers only; publishes made here are herald_broker_publishes_total).", func(s Stats) float64 { return float64(s.Publications) })
	counter("deliveries_total", "Messages written to subscribers.", func(s Stats) float64 { return float64(s.Deliveries) })
	counter("upgrades_total", "Successful WebSocket upgrades.", func(s Stats) float64 { return float64(s.Upgrades) })
	counter("handshake_rejects_total", "Upgrade requests answered with an HTTP error.", func(s Stats) float64 { return float64(s.HandshakeRejects) })
	counter("handshake_timeouts_total", "Connections closed for not finishing the upgrade in time.", func(s Stats) float64 { return float64(s.HandshakeTimeouts) })
	counter("idle_timeouts_total", "Connections closed for silence past the idle timeout.", func(s Stats) float64 { return float64(s.IdleTimeouts) })
	counter("protocol_errors_total", "Connections failed for breaking RFC 6455.", func(s Stats) float64 { return float64(s.ProtocolErrors) })
	reg.MustRegister(a.cfg.Collectors...)
	return reg
}
