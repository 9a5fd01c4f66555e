package loadtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestParseThresholds(t *testing.T) {
	tests := []struct {
		in   string
		want []Threshold
		err  string // substring of the error; "" for none
	}{
		{in: "", want: nil},
		{in: " , ", want: nil},
		{in: "p99<50ms", want: []Threshold{{Text: "p99<50ms", Metric: "p99", Op: "<", Value: 50000}}},
		{in: "p99 <= 1.5s, errors=0", want: []Threshold{
			{Text: "p99 <= 1.5s", Metric: "p99", Op: "<=", Value: 1.5e6},
			{Text: "errors=0", Metric: "errors", Op: "=", Value: 0},
		}},
		{in: "p999<200us,max<900µs,connect_p99>=2ms", want: []Threshold{
			{Text: "p999<200us", Metric: "p999", Op: "<", Value: 200},
			{Text: "max<900µs", Metric: "max", Op: "<", Value: 900},
			{Text: "connect_p99>=2ms", Metric: "connect_p99", Op: ">=", Value: 2000},
		}},
		{in: "rss_per_conn<1KiB,rss_per_conn<2mib,rss_per_conn<1.5KB,rss_per_conn<=800", want: []Threshold{
			{Text: "rss_per_conn<1KiB", Metric: "rss_per_conn", Op: "<", Value: 1024},
			{Text: "rss_per_conn<2mib", Metric: "rss_per_conn", Op: "<", Value: 2 << 20},
			{Text: "rss_per_conn<1.5KB", Metric: "rss_per_conn", Op: "<", Value: 1500},
			{Text: "rss_per_conn<=800", Metric: "rss_per_conn", Op: "<=", Value: 800},
		}},
		{in: "lost==0,duplicates!=1,msgs_per_s>1e4,P50>0", want: []Threshold{
			{Text: "lost==0", Metric: "lost", Op: "=", Value: 0},
			{Text: "duplicates!=1", Metric: "duplicates", Op: "!=", Value: 1},
			{Text: "msgs_per_s>1e4", Metric: "msgs_per_s", Op: ">", Value: 10000},
			{Text: "P50>0", Metric: "p50", Op: ">", Value: 0},
		}},
		{in: "cpu_per_msg<5us", want: []Threshold{{Text: "cpu_per_msg<5us", Metric: "cpu_per_msg", Op: "<", Value: 5}}},
		{in: "p98<5ms", err: `unknown metric "p98"`},
		{in: "<5ms", err: "no metric name"},
		{in: "p99 50ms", err: "no operator"},
		{in: "p99~50ms", err: "no operator"},
		{in: "p99<", err: "no value"},
		{in: "p99<50", err: "needs a unit"},
		{in: "p99<50parsecs", err: "not a duration"},
		{in: "p99<-5ms", err: "not a duration"},
		{in: "errors<5ms", err: "not a number"},
		{in: "rss_per_conn<1 KiX", err: "not a size"},
		{in: "rss_per_conn<-1KiB", err: "not a size"},
		{in: "errors=0,p99", err: "no operator"},
	}
	for _, tt := range tests {
		got, err := ParseThresholds(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) || !errors.Is(err, ErrThreshold) {
				t.Errorf("ParseThresholds(%q) error %v, want ErrThreshold with %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseThresholds(%q): %v", tt.in, err)
			continue
		}
		if len(got) != len(tt.want) {
			t.Errorf("ParseThresholds(%q) = %+v, want %+v", tt.in, got, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("ParseThresholds(%q)[%d] = %+v, want %+v", tt.in, i, got[i], tt.want[i])
			}
		}
	}
}

func TestCheckThresholds(t *testing.T) {
	push := &Result{
		Scenario:   "push",
		ErrorCount: 0,
		Failures:   0,
		Messages:   1000,
		MsgsPerSec: 500,
		Push: &PushResult{
			Lost:         1,
			Latency:      Percentiles{Count: 1000, P50: 800, P99: 30000, Max: 60000},
			LastDelivery: Percentiles{Count: 10, P99: 45000},
		},
		Server: &ServerUsage{CPUPerMessage: 3.5},
	}
	connect := &Result{Scenario: "connect", Opened: 100, Connect: Percentiles{Count: 100, P99: 900}, Server: &ServerUsage{RSSPerConn: 812}}
	tests := []struct {
		r      *Result
		in     string
		pass   []bool
		allOK  bool
		values []float64
	}{
		{push, "p99<50ms,errors=0,lost=0", []bool{true, true, false}, false, []float64{30000, 0, 1}},
		{push, "p99<30ms,p99<=30ms,max>59ms,max!=60ms", []bool{false, true, true, false}, false, []float64{30000, 30000, 60000, 60000}},
		{push, "last_p99<50ms,msgs_per_s>=500,cpu_per_msg<4us", []bool{true, true, true}, true, []float64{45000, 500, 3.5}},
		{push, "rss_per_conn<1KiB", []bool{false}, false, []float64{0}}, // not measured in push
		{connect, "rss_per_conn<1KiB,p99<1ms,connect_p99<1ms,opened=100", []bool{true, true, true, true}, true, []float64{812, 900, 900, 100}},
		{connect, "lost=0", []bool{false}, false, []float64{0}}, // no push in connect
		{connect, "", nil, true, nil},
	}
	for _, tt := range tests {
		ths, err := ParseThresholds(tt.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := tt.r.CheckThresholds(ths); got != tt.allOK {
			t.Errorf("%s %q: all pass %v, want %v", tt.r.Scenario, tt.in, got, tt.allOK)
		}
		if len(tt.r.Thresholds) != len(tt.pass) {
			t.Fatalf("%q: %d results", tt.in, len(tt.r.Thresholds))
		}
		for i, tr := range tt.r.Thresholds {
			if tr.Pass != tt.pass[i] || tr.Value != tt.values[i] || tr.Threshold != ths[i].Text {
				t.Errorf("%s %q: %+v, want pass %v value %v", tt.r.Scenario, tt.in, tr, tt.pass[i], tt.values[i])
			}
		}
	}
	// The table and the JSON list every threshold with its verdict.
	ths, _ := ParseThresholds("p99<50ms,lost=0")
	push.CheckThresholds(ths)
	var table bytes.Buffer
	push.WriteTable(&table)
	if !strings.Contains(table.String(), "p99<50ms  pass (30ms)") || !strings.Contains(table.String(), "lost=0  FAIL (1)") {
		t.Errorf("table:\n%s", table.String())
	}
	b, _ := json.Marshal(push)
	if !strings.Contains(string(b), `{"threshold":"lost=0","metric":"lost","value":1,"measured":true,"observed":"1","pass":false}`) {
		t.Errorf("json: %s", b)
	}
}
