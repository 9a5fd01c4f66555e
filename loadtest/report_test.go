package loadtest

import (
	"encoding/json"
	"math/rand/v2"
	"testing"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// TestHistogramAcrossProcesses checks what a multi-process run relies on:
// histograms exported by workers, sent as JSON, imported and merged equal
// one histogram fed every value.
func TestHistogramAcrossProcesses(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	single := newHistogram()
	var wire [][]byte
	for w := range 3 {
		h := newHistogram()
		for range 10000 {
			// Spread over the whole range: 1 µs .. ~5 min, log-uniform.
			v := int64(1) << rng.IntN(28)
			v += rng.Int64N(v)
			if w == 2 {
				v = 7 // one worker with a narrow distribution
			}
			if err := h.RecordValue(v); err != nil {
				t.Fatal(err)
			}
			_ = single.RecordValue(v)
		}
		b, err := json.Marshal(exportHist(h))
		if err != nil {
			t.Fatal(err)
		}
		wire = append(wire, b)
	}
	var snaps []*hdrhistogram.Snapshot
	for _, b := range wire {
		s := &hdrhistogram.Snapshot{}
		if err := json.Unmarshal(b, s); err != nil {
			t.Fatal(err)
		}
		snaps = append(snaps, s)
	}
	merged, err := mergeHists(snaps)
	if err != nil {
		t.Fatal(err)
	}
	if !merged.Equals(single) {
		t.Fatalf("merged %d values (p99 %d, max %d), single %d (p99 %d, max %d)",
			merged.TotalCount(), merged.ValueAtQuantile(99), merged.Max(), single.TotalCount(), single.ValueAtQuantile(99), single.Max())
	}
	if summarise(merged) != summarise(single) {
		t.Fatalf("summaries differ: %+v vs %+v", summarise(merged), summarise(single))
	}
	// The trimmed snapshot of an empty histogram is tiny and still imports.
	empty := exportHist(newHistogram())
	if len(empty.Counts) != 0 {
		t.Fatalf("empty histogram exports %d counts", len(empty.Counts))
	}
	if h, err := importHist(empty); err != nil || h.TotalCount() != 0 {
		t.Fatalf("import empty: %v %v", h, err)
	}
	bad := exportHist(single)
	bad.Counts[0] = -1
	if _, err := importHist(bad); err == nil {
		t.Fatal("a negative count imported without error")
	}
}

// TestMergeReports checks the push accounting of two parts against one
// publisher's list: receipts add up, the latest delivery is the max.
func TestMergeReports(t *testing.T) {
	h := newHistogram()
	_ = h.RecordValue(100)
	a := &partReport{Opened: 3, Failures: 1, ErrorCount: 1, Errors: []string{"connect: refused"}, Connect: exportHist(h), ConnectSeconds: 2,
		Push: &pushReport{PerChannel: []int{2, 1}, Received: []int32{2, 1}, LastNs: []int64{5000, 9000}, Duplicates: 1, Latency: exportHist(h)}}
	b := &partReport{Opened: 2, ErrorCount: 1, Errors: []string{"connect: refused"}, Connect: exportHist(h), ConnectSeconds: 1,
		Push: &pushReport{PerChannel: []int{2}, Received: []int32{2, 0, 1}, LastNs: []int64{7000, 0, 3000}, Latency: exportHist(h)}}
	m, err := mergeReports([]*partReport{a, b})
	if err != nil {
		t.Fatal(err)
	}
	if m.Opened != 5 || m.Failures != 1 || m.ErrorCount != 2 || len(m.Errors) != 1 || m.ConnectSeconds != 2 || m.connect.TotalCount() != 2 {
		t.Fatalf("merged %+v", m.partReport)
	}
	p := m.Push
	if len(p.PerChannel) != 2 || p.PerChannel[0] != 4 || p.PerChannel[1] != 1 {
		t.Fatalf("per channel %v", p.PerChannel)
	}
	if len(p.Received) != 3 || p.Received[0] != 4 || p.Received[1] != 1 || p.Received[2] != 1 || p.LastNs[0] != 7000 || p.LastNs[1] != 9000 {
		t.Fatalf("received %v last %v", p.Received, p.LastNs)
	}
	// Publications 0 and 2 on channel 0 (4 subscribers), 1 on channel 1;
	// publication 2 failed at the API, so it is not expected anywhere.
	pub := &publisher{pubs: []*publication{{channel: 0, ok: true}, {channel: 1, ok: true}, {channel: 0}}}
	r := &Result{}
	r.fillPush(Config{Push: PushConfig{Channels: 2}}, m, pub, 1, 1e9)
	if r.Push.Expected != 5 || r.Push.Delivered != 5 || r.Push.Lost != 0 || r.Push.Duplicates != 1 || r.Push.LastDelivery.Count != 2 || r.ErrorCount != 1 {
		t.Fatalf("push %+v, errors %d", r.Push, r.ErrorCount)
	}
	if _, err := mergeReports([]*partReport{{Push: &pushReport{Received: []int32{1}}}}); err == nil {
		t.Fatal("receipts without latencies merged")
	}
}
