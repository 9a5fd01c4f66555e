package loadtest

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Percentiles summarises a latency histogram, in microseconds.
type Percentiles struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50_us"`
	P90   float64 `json:"p90_us"`
	P99   float64 `json:"p99_us"`
	P999  float64 `json:"p999_us"`
	Max   float64 `json:"max_us"`
	Mean  float64 `json:"mean_us"`
}

// newHistogram records 1 µs to 5 min with 3 significant digits.
func newHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(1, int64(5*time.Minute/time.Microsecond), 3)
}

func summarise(h *hdrhistogram.Histogram) Percentiles {
	return Percentiles{
		Count: h.TotalCount(),
		P50:   float64(h.ValueAtQuantile(50)),
		P90:   float64(h.ValueAtQuantile(90)),
		P99:   float64(h.ValueAtQuantile(99)),
		P999:  float64(h.ValueAtQuantile(99.9)),
		Max:   float64(h.Max()),
		Mean:  h.Mean(),
	}
}

// ServerUsage is what sampling the server process showed.
type ServerUsage struct {
	PID            int     `json:"pid"`
	RSSBefore      int64   `json:"rss_before_bytes"`
	RSSAfter       int64   `json:"rss_after_bytes"`
	RSSPerConn     float64 `json:"rss_per_conn_bytes,omitempty"`
	CPUSeconds     float64 `json:"cpu_seconds"`
	CPUPerMessage  float64 `json:"cpu_per_message_us,omitempty"`
	CPUUtilisation float64 `json:"cpu_utilisation"` // cores busy on average
}

// Result is every figure of a run; it is what -out writes as JSON.
type Result struct {
	// Version is the herald build that ran the test; the caller sets it.
	Version  string    `json:"herald_version,omitempty"`
	Started  time.Time `json:"started"`
	Params   *Params   `json:"params,omitempty"`
	Scenario string    `json:"scenario"`
	URL      string    `json:"url"`
	Procs    int       `json:"procs,omitempty"` // worker processes, when more than one
	Conns    int       `json:"conns"`
	Opened   int       `json:"opened"`
	// Failures counts connections that did not open: TCP connect, upgrade
	// or (push, churn) subscribe failed.
	Failures int `json:"failures"`
	// Errors holds the first few distinct errors of each kind, as
	// "kind: message" (kinds: connect, subscribe, enroll, publish, read,
	// echo, churn stages).
	Errors []string `json:"errors,omitempty"`
	// ErrorCount counts every error of the run: Failures, churn failures,
	// failed publish calls and errors on open connections.
	ErrorCount  int64        `json:"error_count"`
	ConnectRate float64      `json:"connect_rate_per_s"`
	Connect     Percentiles  `json:"connect_latency"`
	Messages    int64        `json:"messages,omitempty"`
	MsgsPerSec  float64      `json:"msgs_per_s,omitempty"`
	RTT         *Percentiles `json:"rtt,omitempty"`
	Seconds     float64      `json:"seconds"`
	Server      *ServerUsage `json:"server,omitempty"`
	Push        *PushResult  `json:"push,omitempty"`
	Churn       *ChurnResult `json:"churn,omitempty"`
	// Thresholds is every -assert threshold with its outcome.
	Thresholds []ThresholdResult `json:"thresholds,omitempty"`
}

// ChurnResult holds the churn scenario's connection turnover.
type ChurnResult struct {
	Rate           float64     `json:"rate_per_s"`      // asked for
	ConnectsPerSec float64     `json:"connects_per_s"`  // achieved
	Stable         int         `json:"stable"`          // measured subscribers, never churned
	Pool           int         `json:"pool"`            // churned connections open after set-up
	Connects       int64       `json:"connects"`        // new connections opened (and subscribed)
	Disconnects    int64       `json:"disconnects"`     // connections the churner closed
	Failures       int64       `json:"failures"`        // new connections that failed
	Connect        Percentiles `json:"connect_latency"` // of the new connections
}

// PushResult holds the push scenario's delivery accounting. Lost and
// Duplicates are counted per subscriber against the publications the API
// acknowledged on its channel.
type PushResult struct {
	Subscribers  int         `json:"subscribers"`
	Channels     int         `json:"channels"`
	Publications int         `json:"publications"`
	PublishErrs  int         `json:"publish_errors"`
	Expected     int64       `json:"expected_deliveries"`
	Delivered    int64       `json:"delivered"`
	Lost         int64       `json:"lost"`
	Duplicates   int64       `json:"duplicates"`
	OutOfOrder   int64       `json:"out_of_order"`
	ServerCloses int         `json:"server_closes"`
	Latency      Percentiles `json:"delivery_latency"`
	// LastDelivery is, per publication, the time from the API call to its
	// delivery at the last subscriber.
	LastDelivery Percentiles `json:"last_delivery_latency"`
}

// WriteTable prints r as a human-readable table.
func (r *Result) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "scenario\t%s\t%s\n", r.Scenario, r.URL)
	if r.Procs > 1 {
		fmt.Fprintf(tw, "processes\t%d\n", r.Procs)
	}
	fmt.Fprintf(tw, "connections\t%d opened of %d, %d failed\n", r.Opened, r.Conns, r.Failures)
	fmt.Fprintf(tw, "connect rate\t%.0f/s\n", r.ConnectRate)
	fmt.Fprintf(tw, "connect time\tp50 %s  p99 %s  max %s\n", us(r.Connect.P50), us(r.Connect.P99), us(r.Connect.Max))
	if r.RTT != nil {
		fmt.Fprintf(tw, "messages\t%d (%.0f/s)\n", r.Messages, r.MsgsPerSec)
		fmt.Fprintf(tw, "round trip\tp50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n", us(r.RTT.P50), us(r.RTT.P90), us(r.RTT.P99), us(r.RTT.P999), us(r.RTT.Max))
	}
	if p := r.Push; p != nil {
		fmt.Fprintf(tw, "push\t%d subscribers on %d channels, %d publications (%d failed)\n", p.Subscribers, p.Channels, p.Publications, p.PublishErrs)
		fmt.Fprintf(tw, "deliveries\t%d of %d expected, %d lost, %d duplicated, %d out of order, %d server closes\n", p.Delivered, p.Expected, p.Lost, p.Duplicates, p.OutOfOrder, p.ServerCloses)
		fmt.Fprintf(tw, "delivery latency\tp50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n", us(p.Latency.P50), us(p.Latency.P90), us(p.Latency.P99), us(p.Latency.P999), us(p.Latency.Max))
		fmt.Fprintf(tw, "to last subscriber\tp50 %s  p90 %s  p99 %s  max %s\n", us(p.LastDelivery.P50), us(p.LastDelivery.P90), us(p.LastDelivery.P99), us(p.LastDelivery.Max))
	}
	if c := r.Churn; c != nil {
		fmt.Fprintf(tw, "churn\t%d connects (%.0f/s of %.0f/s asked), %d disconnects, %d failed; %d stable, %d churned\n", c.Connects, c.ConnectsPerSec, c.Rate, c.Disconnects, c.Failures, c.Stable, c.Pool)
		fmt.Fprintf(tw, "churn connect time\tp50 %s  p99 %s  max %s\n", us(c.Connect.P50), us(c.Connect.P99), us(c.Connect.Max))
	}
	if s := r.Server; s != nil {
		fmt.Fprintf(tw, "server rss\t%.1f MiB -> %.1f MiB\n", float64(s.RSSBefore)/(1<<20), float64(s.RSSAfter)/(1<<20))
		if s.RSSPerConn > 0 {
			fmt.Fprintf(tw, "server rss/conn\t%.0f B\n", s.RSSPerConn)
		}
		fmt.Fprintf(tw, "server cpu\t%.2f s (%.2f cores)\n", s.CPUSeconds, s.CPUUtilisation)
		if s.CPUPerMessage > 0 {
			fmt.Fprintf(tw, "server cpu/msg\t%.2f µs\n", s.CPUPerMessage)
		}
	}
	if r.ErrorCount > 0 {
		fmt.Fprintf(tw, "errors\t%d\n", r.ErrorCount)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(tw, "error\t%s\n", e)
	}
	for _, t := range r.Thresholds {
		verdict := "pass"
		if !t.Pass {
			verdict = "FAIL"
		}
		fmt.Fprintf(tw, "threshold\t%s  %s (%s)\n", t.Threshold, verdict, t.Observed)
	}
	_ = tw.Flush()
}

func us(v float64) string {
	return time.Duration(v * float64(time.Microsecond)).Round(time.Microsecond).String()
}

// Verdict checks ths against r (recording each outcome in r.Thresholds)
// and returns why the run failed; none means it passed. A threshold that
// does not hold fails it. So, unless a threshold names them and so decides
// instead, do connections that did not open (failures, opened or errors),
// failed publications (publish_errors or errors) and any other error
// (errors): a run that lost part of its load never passes by default.
func (r *Result) Verdict(ths []Threshold) []string {
	var reasons []string
	r.CheckThresholds(ths)
	named := map[string]bool{}
	for _, t := range ths {
		named[t.Metric] = true
	}
	for _, t := range r.Thresholds {
		if !t.Pass {
			reasons = append(reasons, fmt.Sprintf("threshold %s does not hold (%s)", t.Threshold, t.Observed))
		}
	}
	pubErrs, pubs := 0, 0
	if r.Push != nil {
		pubErrs, pubs = r.Push.PublishErrs, r.Push.Publications
	}
	if r.Failures > 0 && !named["failures"] && !named["opened"] && !named["errors"] {
		reasons = append(reasons, fmt.Sprintf("%d of %d connections did not open (-assert 'failures<N' allows some)", r.Failures, r.Conns))
	}
	if pubErrs > 0 && !named["publish_errors"] && !named["errors"] {
		reasons = append(reasons, fmt.Sprintf("%d of %d publications failed (-assert 'publish_errors<N' allows some)", pubErrs, pubs))
	}
	if other := r.ErrorCount - int64(r.Failures) - int64(pubErrs); other > 0 && !named["errors"] {
		reasons = append(reasons, fmt.Sprintf("%d errors on open connections (-assert 'errors<N' allows some)", other))
	}
	return reasons
}
