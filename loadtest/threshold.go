package loadtest

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Threshold is one pass/fail condition on a metric of a Result, such as
// p99<50ms: like a k6 threshold, a run fails when any does not hold.
type Threshold struct {
	Text   string  // as written
	Metric string  // a name from ThresholdMetrics
	Op     string  // <, <=, >, >=, = or !=
	Value  float64 // in the metric's unit: µs, bytes or a plain number
}

// ThresholdResult is a threshold with what the run measured.
type ThresholdResult struct {
	Threshold string  `json:"threshold"`
	Metric    string  `json:"metric"`
	Value     float64 `json:"value"`    // observed, in the metric's unit (µs, bytes or a count)
	Measured  bool    `json:"measured"` // false: the run has no such figure, which fails
	Observed  string  `json:"observed"` // Value for people, e.g. "1.2ms"
	Pass      bool    `json:"pass"`
}

type metricKind int

const (
	kindCount metricKind = iota
	kindTime             // µs
	kindBytes
)

type metric struct {
	name string
	kind metricKind
	get  func(r *Result) (float64, bool)
}

// metrics lists every name a threshold may use, in the order the help
// shows them.
var metrics = []metric{
	{"p50", kindTime, mainLatency(func(p Percentiles) float64 { return p.P50 })},
	{"p90", kindTime, mainLatency(func(p Percentiles) float64 { return p.P90 })},
	{"p99", kindTime, mainLatency(func(p Percentiles) float64 { return p.P99 })},
	{"p999", kindTime, mainLatency(func(p Percentiles) float64 { return p.P999 })},
	{"max", kindTime, mainLatency(func(p Percentiles) float64 { return p.Max })},
	{"mean", kindTime, mainLatency(func(p Percentiles) float64 { return p.Mean })},
	{"connect_p50", kindTime, connectLatency(func(p Percentiles) float64 { return p.P50 })},
	{"connect_p99", kindTime, connectLatency(func(p Percentiles) float64 { return p.P99 })},
	{"connect_max", kindTime, connectLatency(func(p Percentiles) float64 { return p.Max })},
	{"last_p50", kindTime, lastLatency(func(p Percentiles) float64 { return p.P50 })},
	{"last_p99", kindTime, lastLatency(func(p Percentiles) float64 { return p.P99 })},
	{"last_max", kindTime, lastLatency(func(p Percentiles) float64 { return p.Max })},
	{"churn_connect_p99", kindTime, func(r *Result) (float64, bool) {
		if r.Churn == nil || r.Churn.Connect.Count == 0 {
			return 0, false
		}
		return r.Churn.Connect.P99, true
	}},
	{"errors", kindCount, func(r *Result) (float64, bool) { return float64(r.ErrorCount), true }},
	{"failures", kindCount, func(r *Result) (float64, bool) { return float64(r.Failures), true }},
	{"opened", kindCount, func(r *Result) (float64, bool) { return float64(r.Opened), true }},
	{"connect_rate", kindCount, func(r *Result) (float64, bool) { return r.ConnectRate, true }},
	{"messages", kindCount, func(r *Result) (float64, bool) { return float64(r.Messages), r.Scenario != "connect" }},
	{"msgs_per_s", kindCount, func(r *Result) (float64, bool) { return r.MsgsPerSec, r.Scenario != "connect" }},
	{"lost", kindCount, pushFigure(func(p *PushResult) float64 { return float64(p.Lost) })},
	{"duplicates", kindCount, pushFigure(func(p *PushResult) float64 { return float64(p.Duplicates) })},
	{"out_of_order", kindCount, pushFigure(func(p *PushResult) float64 { return float64(p.OutOfOrder) })},
	{"delivered", kindCount, pushFigure(func(p *PushResult) float64 { return float64(p.Delivered) })},
	{"publish_errors", kindCount, pushFigure(func(p *PushResult) float64 { return float64(p.PublishErrs) })},
	{"server_closes", kindCount, pushFigure(func(p *PushResult) float64 { return float64(p.ServerCloses) })},
	{"churn_connects", kindCount, churnFigure(func(c *ChurnResult) float64 { return float64(c.Connects) })},
	{"churn_disconnects", kindCount, churnFigure(func(c *ChurnResult) float64 { return float64(c.Disconnects) })},
	{"churn_failures", kindCount, churnFigure(func(c *ChurnResult) float64 { return float64(c.Failures) })},
	{"churn_rate", kindCount, churnFigure(func(c *ChurnResult) float64 { return c.ConnectsPerSec })},
	{"rss_per_conn", kindBytes, func(r *Result) (float64, bool) {
		if r.Server == nil || r.Scenario != "connect" {
			return 0, false
		}
		return r.Server.RSSPerConn, true
	}},
	{"cpu_per_msg", kindTime, func(r *Result) (float64, bool) {
		if r.Server == nil || r.Messages == 0 {
			return 0, false
		}
		return r.Server.CPUPerMessage, true
	}},
	{"server_cpu", kindCount, func(r *Result) (float64, bool) {
		if r.Server == nil {
			return 0, false
		}
		return r.Server.CPUUtilisation, true
	}},
}

// mainLatency reads the scenario's main latency: connect time (connect),
// round trip (echo), delivery (push; churn when it publishes, else the
// churned connections' connect time).
func mainLatency(f func(Percentiles) float64) func(*Result) (float64, bool) {
	return func(r *Result) (float64, bool) {
		var p *Percentiles
		switch {
		case r.Scenario == "connect":
			p = &r.Connect
		case r.Scenario == "echo":
			p = r.RTT
		case r.Push != nil:
			p = &r.Push.Latency
		case r.Scenario == "churn" && r.Churn != nil:
			p = &r.Churn.Connect
		}
		if p == nil || p.Count == 0 {
			return 0, false
		}
		return f(*p), true
	}
}

func connectLatency(f func(Percentiles) float64) func(*Result) (float64, bool) {
	return func(r *Result) (float64, bool) { return f(r.Connect), r.Connect.Count > 0 }
}

func lastLatency(f func(Percentiles) float64) func(*Result) (float64, bool) {
	return func(r *Result) (float64, bool) {
		if r.Push == nil || r.Push.LastDelivery.Count == 0 {
			return 0, false
		}
		return f(r.Push.LastDelivery), true
	}
}

func pushFigure(f func(*PushResult) float64) func(*Result) (float64, bool) {
	return func(r *Result) (float64, bool) {
		if r.Push == nil {
			return 0, false
		}
		return f(r.Push), true
	}
}

func churnFigure(f func(*ChurnResult) float64) func(*Result) (float64, bool) {
	return func(r *Result) (float64, bool) {
		if r.Churn == nil {
			return 0, false
		}
		return f(r.Churn), true
	}
}

func lookupMetric(name string) (metric, bool) {
	for _, m := range metrics {
		if m.name == name {
			return m, true
		}
	}
	return metric{}, false
}

// ThresholdMetrics lists the metric names thresholds may use.
func ThresholdMetrics() string {
	names := make([]string, len(metrics))
	for i, m := range metrics {
		names[i] = m.name
	}
	return strings.Join(names, ", ")
}

// ParseThresholds parses a comma-separated list of thresholds such as
// "p99<50ms,errors=0,lost=0,rss_per_conn<1KiB". Latencies take a unit
// (ns, us or µs, ms, s; 0 may go without), sizes take B, KiB, MiB, GiB, KB,
// MB or GB (none: bytes), counts and rates are plain numbers.
func ParseThresholds(s string) ([]Threshold, error) {
	var out []Threshold
	for _, term := range strings.Split(s, ",") {
		term = strings.TrimSpace(term)
		if term == "" {
			continue
		}
		t, err := parseThreshold(term)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

var operators = []string{"<=", ">=", "!=", "==", "<", ">", "="}

func parseThreshold(term string) (Threshold, error) {
	i := 0
	for i < len(term) && (term[i] == '_' || term[i] >= 'a' && term[i] <= 'z' || term[i] >= 'A' && term[i] <= 'Z' || term[i] >= '0' && term[i] <= '9') {
		i++
	}
	name := strings.ToLower(term[:i])
	if name == "" {
		return Threshold{}, fmt.Errorf("%w %q: no metric name", ErrThreshold, term)
	}
	m, ok := lookupMetric(name)
	if !ok {
		return Threshold{}, fmt.Errorf("%w %q: unknown metric %q (known: %s)", ErrThreshold, term, name, ThresholdMetrics())
	}
	rest := strings.TrimSpace(term[i:])
	op := ""
	for _, o := range operators {
		if strings.HasPrefix(rest, o) {
			op = o
			break
		}
	}
	if op == "" {
		return Threshold{}, fmt.Errorf("%w %q: no operator (< <= > >= = !=)", ErrThreshold, term)
	}
	raw := strings.TrimSpace(rest[len(op):])
	if op == "==" {
		op = "="
	}
	v, err := parseValue(raw, m.kind)
	if err != nil {
		return Threshold{}, fmt.Errorf("%w %q: %v", ErrThreshold, term, err)
	}
	return Threshold{Text: term, Metric: name, Op: op, Value: v}, nil
}

// parseValue reads a threshold's value in the unit of kind.
func parseValue(s string, kind metricKind) (float64, error) {
	if s == "" {
		return 0, fmt.Errorf("no value")
	}
	switch kind {
	case kindTime:
		if v, err := strconv.ParseFloat(s, 64); err == nil {
			if v == 0 {
				return 0, nil
			}
			return 0, fmt.Errorf("latency %q needs a unit (us, ms, s)", s)
		}
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			return 0, fmt.Errorf("%q is not a duration such as 50ms", s)
		}
		return float64(d) / float64(time.Microsecond), nil
	case kindBytes:
		num, mult := s, 1.0
		lower := strings.ToLower(s)
		for _, u := range []struct {
			suffix string
			mult   float64
		}{{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"b", 1}} {
			if strings.HasSuffix(lower, u.suffix) {
				num, mult = strings.TrimSpace(s[:len(s)-len(u.suffix)]), u.mult
				break
			}
		}
		v, err := strconv.ParseFloat(num, 64)
		if err != nil || v < 0 {
			return 0, fmt.Errorf("%q is not a size such as 1KiB", s)
		}
		return v * mult, nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	return v, nil
}

// holds reports whether observed satisfies t.
func (t Threshold) holds(observed float64) bool {
	switch t.Op {
	case "<":
		return observed < t.Value
	case "<=":
		return observed <= t.Value
	case ">":
		return observed > t.Value
	case ">=":
		return observed >= t.Value
	case "=":
		return observed == t.Value
	case "!=":
		return observed != t.Value
	}
	return false
}

// CheckThresholds evaluates ths against r, records each outcome in
// r.Thresholds and reports whether all of them hold. A metric the run did
// not measure (rss_per_conn without a server PID, lost outside push)
// fails its threshold.
func (r *Result) CheckThresholds(ths []Threshold) bool {
	r.Thresholds = nil
	all := true
	for _, t := range ths {
		m, _ := lookupMetric(t.Metric)
		tr := ThresholdResult{Threshold: t.Text, Metric: t.Metric, Observed: "not measured"}
		if m.get != nil {
			tr.Value, tr.Measured = m.get(r)
		}
		if tr.Measured {
			tr.Observed = formatMetric(tr.Value, m.kind)
			tr.Pass = t.holds(tr.Value)
		}
		all = all && tr.Pass
		r.Thresholds = append(r.Thresholds, tr)
	}
	return all
}

func formatMetric(v float64, kind metricKind) string {
	switch kind {
	case kindTime:
		if v < 1 {
			return strconv.FormatFloat(v, 'f', 3, 64) + "µs"
		}
		return us(v)
	case kindBytes:
		return strconv.FormatFloat(v, 'f', 0, 64) + " B"
	}
	return strconv.FormatFloat(v, 'g', 6, 64)
}
