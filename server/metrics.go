package server

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-ws/herald/admin"
	"github.com/herald-ws/herald/broker"
	"github.com/herald-ws/herald/engine"
	"github.com/herald-ws/herald/session"
)

// connCollector exports the client listener's labelled series, read at
// scrape time from the engine's counters (the loops pay one atomic add per
// close or refusal, nothing per message).
type connCollector struct {
	eng                                  *engine.Server
	closes, codes, refused, max, perLoop *prometheus.Desc
}

func newConnCollector(eng *engine.Server) *connCollector {
	return &connCollector{
		eng: eng,
		closes: prometheus.NewDesc("herald_connection_closes_total",
			"Client connections that ended, by reason (peer, protocol_error, handshake_rejected, handshake_timeout, idle_timeout, slow_consumer, going_away, policy, close_timeout, inbound_budget, resync, disconnected, token_expired; unknown for any other).",
			[]string{"reason"}, nil),
		codes: prometheus.NewDesc("herald_connection_close_codes_total",
			"Client connections that ended, by the WebSocket close code the server sent or echoed (none: no close frame, e.g. an HTTP refusal or a dropped connection; other: a code a peer chose, 1010, 1013 or 3000-4999).",
			[]string{"code"}, nil),
		refused: prometheus.NewDesc("herald_upgrades_refused_total",
			"Upgrade requests answered with an HTTP error instead of 101, by status (0: a status outside 100-599). Sums to herald_handshake_rejects_total.",
			[]string{"status"}, nil),
		max: prometheus.NewDesc("herald_max_connections",
			"The configured connection limit (-max-conns); 0 means no limit.", nil, nil),
		perLoop: prometheus.NewDesc("herald_loop_connections",
			"Open client connections on each event loop (loop 0 to -loops minus 1).",
			[]string{"loop"}, nil),
	}
}

func (c *connCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.closes
	ch <- c.codes
	ch <- c.refused
	ch <- c.max
	ch <- c.perLoop
}

func (c *connCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.eng.Stats()
	st.Closes(func(r session.CloseReason, n int64) {
		ch <- prometheus.MustNewConstMetric(c.closes, prometheus.CounterValue, float64(n), r.String())
	})
	st.CloseCodes(func(code string, n int64) {
		ch <- prometheus.MustNewConstMetric(c.codes, prometheus.CounterValue, float64(n), code)
	})
	st.Refused(func(status int, n int64) {
		ch <- prometheus.MustNewConstMetric(c.refused, prometheus.CounterValue, float64(n), strconv.Itoa(status))
	})
	ch <- prometheus.MustNewConstMetric(c.max, prometheus.GaugeValue, float64(c.eng.MaxConns()))
	for i, n := range c.eng.LoopConns() {
		ch <- prometheus.MustNewConstMetric(c.perLoop, prometheus.GaugeValue, float64(n), strconv.Itoa(i))
	}
}

// collectors are the node's series beyond api.Stats.
func (n *Node) collectors() []prometheus.Collector {
	c := []prometheus.Collector{newConnCollector(n.engine)}
	st := n.engine.Stats()
	pool := n.pool
	c = append(c,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "herald", Name: "inbound_buffered_bytes",
			Help: "Inbound bytes connections hold for unfinished messages (bounded by -max-inbound-buffer)."},
			func() float64 { return float64(st.InboundBuffered.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "herald", Name: "work_queue_depth",
			Help: "Broker calls waiting for a worker (bounded by -work-queue)."},
			func() float64 { return float64(pool.Queued()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "herald", Name: "work_refused_total",
			Help: "Broker calls refused because the work queue was full (answered unavailable)."},
			func() float64 { return float64(pool.Refused()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "herald", Name: "broker_gaps_total",
			Help: "Continuity losses the broker reported; each made the channel's local subscribers recover from history."},
			func() float64 { return float64(n.hub.Stats().Gaps) }),
	)
	c = append(c, newOverloadCollector(n))
	c = append(c, n.hub.Metrics().Collectors()...)
	return append(c, n.metered.Collectors()...)
}

// overloadCollector exports the overload policy's series (README,
// "Overload"): each loop's inbox, read at scrape time, and the counters of
// what the policy refused, replaced or dropped.
type overloadCollector struct {
	n                                              *Node
	depth, bytes, refused, conflated, overflows    *prometheus.Desc
	upgradesRefusedRate, upgradesRefusedPerAddress *prometheus.Desc
}

func newOverloadCollector(n *Node) *overloadCollector {
	return &overloadCollector{
		n: n,
		depth: prometheus.NewDesc("herald_loop_inbox_publications",
			"Publications waiting in each event loop's inbox (bounded by -loop-inbox-publications).", []string{"loop"}, nil),
		bytes: prometheus.NewDesc("herald_loop_inbox_bytes",
			"Bytes of encoded publications waiting in each event loop's inbox (bounded by -loop-inbox-bytes).", []string{"loop"}, nil),
		refused: prometheus.NewDesc("herald_overload_refusals_total",
			"Publishes refused because a loop delivering the channel was behind: API 503 overloaded and client publishes answered unavailable. Nothing of them was stored.", nil, nil),
		conflated: prometheus.NewDesc("herald_conflated_total",
			"Deliveries skipped by conflation (-conflate-channels): a subscriber that was behind got a newer publication of the channel instead.", nil, nil),
		overflows: prometheus.NewDesc("herald_loop_inbox_overflows_total",
			"Publications a full loop inbox could not take; the loop's subscribers of the channel recovered them from history.", nil, nil),
		upgradesRefusedRate: prometheus.NewDesc("herald_connections_refused_rate_total",
			"Connections refused with 503 past -upgrade-rate.", nil, nil),
		upgradesRefusedPerAddress: prometheus.NewDesc("herald_connections_refused_per_ip_total",
			"Connections refused with 429 past -max-conns-per-ip.", nil, nil),
	}
}

func (c *overloadCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.depth, c.bytes, c.refused, c.conflated, c.overflows, c.upgradesRefusedRate, c.upgradesRefusedPerAddress} {
		ch <- d
	}
}

func (c *overloadCollector) Collect(ch chan<- prometheus.Metric) {
	for _, in := range c.n.hub.Inboxes() {
		loop := strconv.Itoa(in.Loop)
		ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(in.Publications), loop)
		ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(in.Bytes), loop)
	}
	hs := c.n.hub.Stats()
	ch <- prometheus.MustNewConstMetric(c.refused, prometheus.CounterValue, float64(hs.Refused))
	ch <- prometheus.MustNewConstMetric(c.conflated, prometheus.CounterValue, float64(hs.Conflated))
	ch <- prometheus.MustNewConstMetric(c.overflows, prometheus.CounterValue, float64(hs.Overflows))
	as := c.n.engine.Admission()
	ch <- prometheus.MustNewConstMetric(c.upgradesRefusedRate, prometheus.CounterValue, float64(as.RefusedRate))
	ch <- prometheus.MustNewConstMetric(c.upgradesRefusedPerAddress, prometheus.CounterValue, float64(as.RefusedPerIP))
}

// httpExtra are the handlers mounted on the API listener besides the API:
// Options.HTTPExtra and the admin page.
func (n *Node) httpExtra() map[string]http.Handler {
	extra := admin.Handlers(admin.Config{APIKey: n.opts.APIKey, Snapshot: n.adminSnapshot})
	maps.Copy(extra, n.opts.HTTPExtra)
	return extra
}

// selfNode describes this node for the admin page and the cluster's node
// directory. Its ID is the host name and the client listener's address,
// unique however many nodes share a machine.
func (n *Node) selfNode() admin.Node {
	self := admin.Node{
		ID:      hostname(),
		Version: buildVersion(),
		Broker:  strings.TrimPrefix(fmt.Sprintf("%T", n.broker), "*"),
		Started: n.started.UnixMilli(),
	}
	if a := n.Addr(); a != nil {
		self.ClientAddr = a.String()
	}
	if a := n.APIAddr(); a != nil {
		self.APIAddr = a.String()
	}
	if a := n.Addr(); a != nil {
		self.ID += "/" + a.String()
	}
	if err := n.Ready(); err != nil {
		self.NotReady = err.Error()
	} else {
		self.Ready = true
	}
	return self
}

// announceSelf makes a clustered broker announce this node to the others.
func (n *Node) announceSelf() {
	if d, ok := n.broker.(broker.Directory); ok {
		d.Announce(func() []byte {
			b, _ := json.Marshal(n.selfNode())
			return b
		})
	}
}

// clusterNodes lists the nodes the broker's directory heard from (self
// first); only self without a clustered broker.
func (n *Node) clusterNodes(self admin.Node) []admin.Node {
	nodes := []admin.Node{self}
	d, ok := n.broker.(broker.Directory)
	if !ok {
		return nodes
	}
	for _, raw := range d.Nodes() {
		var o admin.Node
		if json.Unmarshal(raw, &o) == nil && o.ID != self.ID {
			nodes = append(nodes, o)
		}
	}
	return nodes
}

// adminSnapshot gathers what the admin page shows.
func (n *Node) adminSnapshot() admin.Snapshot {
	self := n.selfNode()
	hm := n.hub.Metrics()
	return admin.Snapshot{
		Time:            time.Now().UnixMilli(),
		Node:            self,
		Nodes:           n.clusterNodes(self),
		Stats:           n.Stats(),
		MaxConnections:  n.engine.MaxConns(),
		LoopConnections: n.engine.LoopConns(),
		BrokerUp:        n.broker.Ready() == nil,
		Publishes:       n.metered.counts(),
		Latency:         admin.HistogramOf(hm.Latency),
		FanOut:          admin.HistogramOf(hm.FanOut),
		TopChannels:     n.hub.TopChannels(admin.TopChannels),
	}
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "herald"
	}
	return h
}

// buildVersion is the module version and VCS revision the binary was
// built from, as far as the build recorded them.
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " " + s.Value[:12]
		}
	}
	return v
}
