package loadtest

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// meter keeps the figures the live progress line shows: connections open,
// messages received, and the latencies of the current interval. Its
// methods are safe for concurrent use.
type meter struct {
	open atomic.Int64
	msgs atomic.Int64

	mu       sync.Mutex
	interval *hdrhistogram.Histogram // nil when no one reads progress
}

func newMeter(live bool) *meter {
	m := &meter{}
	if live {
		m.interval = newHistogram()
	}
	return m
}

// record adds one latency (µs) of the scenario's main kind to the current
// interval; it costs nothing when no one reads progress.
func (m *meter) record(us int64) {
	if m.interval == nil {
		return
	}
	m.mu.Lock()
	_ = m.interval.RecordValue(us)
	m.mu.Unlock()
}

// recordAll records latencies given in nanoseconds, under one lock.
func (m *meter) recordAll(ns []int64) {
	if m.interval == nil {
		return
	}
	m.mu.Lock()
	for _, v := range ns {
		_ = m.interval.RecordValue(max(v/1000, 1))
	}
	m.mu.Unlock()
}

// merge adds a worker's interval to the current one.
func (m *meter) merge(h *hdrhistogram.Histogram) {
	if m.interval == nil {
		return
	}
	m.mu.Lock()
	m.interval.Merge(h)
	m.mu.Unlock()
}

// takeInterval returns the current interval's latencies and starts a new
// interval.
func (m *meter) takeInterval() *hdrhistogram.Histogram {
	if m.interval == nil {
		return newHistogram()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.interval.Clone()
	m.interval.Reset()
	return h
}

// progressLine prints one line to w every `every` until stop is called:
// connections open, messages per second over the interval, and the
// interval's p99. open and msgs report the current totals.
func progressLine(w io.Writer, every time.Duration, open, msgs func() int64, interval func() *hdrhistogram.Histogram) (stop func()) {
	start := time.Now()
	last, lastAt := msgs(), start
	return everyTick(every, func(now time.Time) {
		m := msgs()
		rate := float64(m-last) / now.Sub(lastAt).Seconds()
		last, lastAt = m, now
		iv := interval()
		p99 := "-"
		if iv.TotalCount() > 0 {
			p99 = us(float64(iv.ValueAtQuantile(99)))
		}
		fmt.Fprintf(w, "loadtest %5.0fs  open %7d  msgs/s %9.0f  p99 %s\n", now.Sub(start).Seconds(), open(), rate, p99)
	})
}

// everyTick calls fn every interval (default one second) on a goroutine of
// its own until the returned stop is called; stop waits for a call in
// progress.
func everyTick(every time.Duration, fn func(now time.Time)) (stop func()) {
	if every <= 0 {
		every = time.Second
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				fn(now)
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}
