package loadtest

import (
	"fmt"
	"strings"
	"sync"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// partReport is what one part of a run measured. A single-process run has
// one part; a multi-process run merges its workers' reports, which travel
// as JSON, into one before it computes the Result, so both paths share
// every formula.
type partReport struct {
	Opened         int                    `json:"opened"`
	Failures       int                    `json:"failures"`
	Errors         []string               `json:"errors,omitempty"`
	ErrorCount     int64                  `json:"error_count"`
	Connect        *hdrhistogram.Snapshot `json:"connect"`
	ConnectSeconds float64                `json:"connect_seconds"`
	Messages       int64                  `json:"messages"`
	RTT            *hdrhistogram.Snapshot `json:"rtt,omitempty"`
	Push           *pushReport            `json:"push,omitempty"`
	Churn          *churnReport           `json:"churn,omitempty"`
}

// pushReport is a part's delivery accounting. Received and LastNs are
// indexed by publication sequence number, so that parts that never saw the
// publisher's list can still be tallied against it exactly.
type pushReport struct {
	PerChannel []int   `json:"per_channel"` // measured subscribers on each channel
	Received   []int32 `json:"received"`    // per publication: subscribers that got it at least once
	LastNs     []int64 `json:"last_ns"`     // per publication: latest delivery latency, ns
	Duplicates int64   `json:"duplicates"`
	OutOfOrder int64   `json:"out_of_order"`
	Closes     int     `json:"server_closes"`
	// Latency holds every first delivery's latency, µs.
	Latency *hdrhistogram.Snapshot `json:"latency"`
}

// churnReport is a part's churn accounting.
type churnReport struct {
	Stable      int                    `json:"stable"`
	Pool        int                    `json:"pool"`
	Connects    int64                  `json:"connects"`
	Disconnects int64                  `json:"disconnects"`
	Failures    int64                  `json:"failures"`
	Connect     *hdrhistogram.Snapshot `json:"connect"`
}

// Errors are kept by kind (the stage that failed: connect, subscribe,
// publish, read, echo, ...): the first maxErrorsPerKind distinct messages of
// each of at most maxErrorKinds kinds, so that a flood of one kind cannot
// hide the first error of another, and memory stays bounded.
const (
	maxErrorsPerKind = 3
	maxErrorKinds    = 8
)

// errLog counts errors and keeps the first few distinct messages of each
// kind. Safe for concurrent use.
type errLog struct {
	mu    sync.Mutex
	count int64
	first []string // "kind: message", in the order first seen
}

// add counts err and keeps its text as "kind: message".
func (e *errLog) add(kind string, err error) {
	msg := err.Error()
	if kind != "" {
		msg = kind + ": " + msg
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.count++
	e.keep(msg)
}

// keep records msg unless it is known or its kind already has
// maxErrorsPerKind messages. Lock held.
func (e *errLog) keep(msg string) {
	kind := errorKind(msg)
	n, kinds := 0, map[string]bool{}
	for _, m := range e.first {
		if m == msg {
			return
		}
		k := errorKind(m)
		kinds[k] = true
		if k == kind {
			n++
		}
	}
	if n >= maxErrorsPerKind || !kinds[kind] && len(kinds) >= maxErrorKinds {
		return
	}
	e.first = append(e.first, msg)
}

// errorKind is the kind of a kept message: the text before the first ": ".
func errorKind(msg string) string {
	k, _, _ := strings.Cut(msg, ": ")
	return k
}

// mergeErrorTexts keeps the first few distinct messages of each kind
// across lists, in order.
func mergeErrorTexts(lists ...[]string) []string {
	var e errLog
	for _, l := range lists {
		for _, m := range l {
			e.keep(m)
		}
	}
	return e.first
}

func (e *errLog) snapshot() (int64, []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.count, append([]string(nil), e.first...)
}

// exportHist snapshots h for the wire. Trailing empty buckets are dropped
// (Import leaves missing buckets at zero), which keeps a worker's report
// small.
func exportHist(h *hdrhistogram.Histogram) *hdrhistogram.Snapshot {
	s := h.Export()
	n := len(s.Counts)
	for n > 0 && s.Counts[n-1] == 0 {
		n--
	}
	s.Counts = s.Counts[:n]
	return s
}

// importHist turns a snapshot from a worker back into a histogram; nil
// gives an empty one.
func importHist(s *hdrhistogram.Snapshot) (*hdrhistogram.Histogram, error) {
	if s == nil {
		return newHistogram(), nil
	}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("loadtest: histogram from a worker: %w", err)
	}
	return hdrhistogram.Import(s), nil
}

// mergeHists imports and merges snapshots.
func mergeHists(snaps []*hdrhistogram.Snapshot) (*hdrhistogram.Histogram, error) {
	out := newHistogram()
	for _, s := range snaps {
		h, err := importHist(s)
		if err != nil {
			return nil, err
		}
		if dropped := out.Merge(h); dropped > 0 {
			return nil, fmt.Errorf("loadtest: merging histograms dropped %d values", dropped)
		}
	}
	return out, nil
}

// merged is every part's report combined.
type merged struct {
	partReport
	connect, rtt, latency, churnConnect *hdrhistogram.Histogram
}

// mergeReports adds up the parts' counters, merges their histograms and
// keeps the first few distinct errors across them.
func mergeReports(reps []*partReport) (*merged, error) {
	m := &merged{}
	var errs errLog
	var connect, rtt, latency, churnConnect []*hdrhistogram.Snapshot
	for _, r := range reps {
		m.Opened += r.Opened
		m.Failures += r.Failures
		m.ErrorCount += r.ErrorCount
		for _, e := range r.Errors {
			errs.keep(e)
		}
		connect = append(connect, r.Connect)
		m.ConnectSeconds = max(m.ConnectSeconds, r.ConnectSeconds)
		m.Messages += r.Messages
		if r.RTT != nil {
			rtt = append(rtt, r.RTT)
		}
		if p := r.Push; p != nil {
			if m.Push == nil {
				m.Push = &pushReport{}
			}
			mp := m.Push
			mp.PerChannel = addInts(mp.PerChannel, p.PerChannel)
			if len(p.Received) != len(p.LastNs) {
				return nil, fmt.Errorf("%w: %d receipt counts but %d latencies", ErrWorker, len(p.Received), len(p.LastNs))
			}
			for len(mp.Received) < len(p.Received) {
				mp.Received = append(mp.Received, 0)
				mp.LastNs = append(mp.LastNs, 0)
			}
			for i := range p.Received {
				mp.Received[i] += p.Received[i]
				mp.LastNs[i] = max(mp.LastNs[i], p.LastNs[i])
			}
			mp.Duplicates += p.Duplicates
			mp.OutOfOrder += p.OutOfOrder
			mp.Closes += p.Closes
			latency = append(latency, p.Latency)
		}
		if c := r.Churn; c != nil {
			if m.Churn == nil {
				m.Churn = &churnReport{}
			}
			mc := m.Churn
			mc.Stable += c.Stable
			mc.Pool += c.Pool
			mc.Connects += c.Connects
			mc.Disconnects += c.Disconnects
			mc.Failures += c.Failures
			churnConnect = append(churnConnect, c.Connect)
		}
	}
	_, m.Errors = errs.snapshot()
	var err error
	if m.connect, err = mergeHists(connect); err != nil {
		return nil, err
	}
	if m.rtt, err = mergeHists(rtt); err != nil {
		return nil, err
	}
	if m.latency, err = mergeHists(latency); err != nil {
		return nil, err
	}
	if m.churnConnect, err = mergeHists(churnConnect); err != nil {
		return nil, err
	}
	return m, nil
}

func addInts(dst, src []int) []int {
	for len(dst) < len(src) {
		dst = append(dst, 0)
	}
	for i, v := range src {
		dst[i] += v
	}
	return dst
}
