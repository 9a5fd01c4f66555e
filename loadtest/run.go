package loadtest

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/gobwas/ws"
)

// Run executes cfg's scenario and returns its figures. It stops by itself
// after cfg.Duration plus bounded set-up and drain time, or when ctx ends.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	switch cfg.Scenario {
	case "connect":
		return runConnect(ctx, cfg)
	case "echo":
		return runEcho(ctx, cfg)
	case "push":
		return runPush(ctx, cfg)
	}
	return nil, fmt.Errorf("loadtest: unknown scenario %q (connect, echo, push)", cfg.Scenario)
}

// pool is the set of connections a run opened.
type pool struct {
	conns    []*conn
	failures int
	errors   []string
	connect  *hdrhistogram.Histogram
	elapsed  time.Duration
}

func (p *pool) close() {
	for _, c := range p.conns {
		if c != nil {
			_ = c.Close()
		}
	}
}

// open dials cfg.Conns connections at cfg.Rate per second with a bounded
// set of dialing goroutines, spreading them over cfg.SourceIPs.
func open(ctx context.Context, cfg Config) *pool {
	u, _ := url.Parse(cfg.URL)
	p := &pool{conns: make([]*conn, cfg.Conns), connect: newHistogram()}
	var mu sync.Mutex
	seen := map[string]bool{}
	jobs := make(chan int)
	var wg sync.WaitGroup
	workers := min(cfg.Conns, 128)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				var src = cfg.SourceIPs
				t0 := time.Now()
				var c *conn
				var err error
				if len(src) > 0 {
					c, err = dial(u, src[i%len(src)], cfg.DialTimeout)
				} else {
					c, err = dial(u, nil, cfg.DialTimeout)
				}
				d := time.Since(t0)
				mu.Lock()
				if err != nil {
					p.failures++
					if msg := err.Error(); !seen[msg] && len(p.errors) < 5 {
						seen[msg] = true
						p.errors = append(p.errors, msg)
					}
				} else {
					p.conns[i] = c
					_ = p.connect.RecordValue(max(d.Microseconds(), 1))
				}
				mu.Unlock()
			}
		}()
	}
	start := time.Now()
	for i := 0; i < cfg.Conns && ctx.Err() == nil; i++ {
		if cfg.Rate > 0 {
			due := start.Add(time.Duration(i) * time.Second / time.Duration(cfg.Rate))
			if wait := time.Until(due); wait > 0 {
				select {
				case <-time.After(wait):
				case <-ctx.Done():
				}
			}
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	p.elapsed = time.Since(start)
	kept := p.conns[:0]
	for _, c := range p.conns {
		if c != nil {
			kept = append(kept, c)
		}
	}
	p.conns = kept
	return p
}

func (p *pool) fill(r *Result) {
	r.Opened = len(p.conns)
	r.Failures = p.failures
	r.Errors = p.errors
	r.Connect = summarise(p.connect)
	if s := p.elapsed.Seconds(); s > 0 {
		r.ConnectRate = float64(len(p.conns)) / s
	}
}

func runConnect(ctx context.Context, cfg Config) (*Result, error) {
	r := &Result{Scenario: "connect", URL: cfg.URL, Conns: cfg.Conns}
	var before procSample
	if cfg.ServerPID > 0 {
		var err error
		if before, err = sampleProc(cfg.ServerPID); err != nil {
			return nil, fmt.Errorf("loadtest: sample server: %w", err)
		}
	}
	start := time.Now()
	p := open(ctx, cfg)
	defer p.close()
	p.fill(r)

	settle := min(cfg.Settle, cfg.Duration)
	sleep(ctx, settle)
	if cfg.ServerPID > 0 {
		after, err := sampleProc(cfg.ServerPID)
		if err != nil {
			return nil, fmt.Errorf("loadtest: sample server: %w", err)
		}
		r.Server = usage(cfg.ServerPID, before, after)
		if r.Opened > 0 {
			r.Server.RSSPerConn = float64(after.RSS-before.RSS) / float64(r.Opened)
		}
	}
	sleep(ctx, cfg.Duration-settle)
	r.Seconds = time.Since(start).Seconds()
	return r, nil
}

func usage(pid int, before, after procSample) *ServerUsage {
	u := &ServerUsage{PID: pid, RSSBefore: before.RSS, RSSAfter: after.RSS, CPUSeconds: (after.CPU - before.CPU).Seconds()}
	if wall := after.At.Sub(before.At).Seconds(); wall > 0 {
		u.CPUUtilisation = u.CPUSeconds / wall
	}
	return u
}

func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// runEcho keeps cfg.InFlight messages in flight on every connection. Each
// message carries its send time in its first 8 bytes; the reader records
// the round trip when the echo comes back.
func runEcho(ctx context.Context, cfg Config) (*Result, error) {
	r := &Result{Scenario: "echo", URL: cfg.URL, Conns: cfg.Conns}
	p := open(ctx, cfg)
	defer p.close()
	p.fill(r)
	if len(p.conns) == 0 {
		return r, fmt.Errorf("loadtest: no connection opened")
	}

	var before procSample
	if cfg.ServerPID > 0 {
		var err error
		if before, err = sampleProc(cfg.ServerPID); err != nil {
			return nil, fmt.Errorf("loadtest: sample server: %w", err)
		}
	}
	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var (
		received atomic.Int64
		mu       sync.Mutex
		rtt      = newHistogram()
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	start := time.Now()
	for _, c := range p.conns {
		credits := make(chan struct{}, cfg.InFlight)
		for range cfg.InFlight {
			credits <- struct{}{}
		}
		wg.Add(2)
		go func() { // writer
			defer wg.Done()
			payload := make([]byte, cfg.Size)
			for i := 8; i < len(payload); i++ {
				payload[i] = 'x'
			}
			var buf []byte
			for {
				select {
				case <-runCtx.Done():
					return
				case <-credits:
				}
				binary.LittleEndian.PutUint64(payload, uint64(time.Now().UnixNano()))
				buf = appendClientFrame(buf[:0], ws.OpBinary, payload)
				_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
				if _, err := c.Write(buf); err != nil {
					if runCtx.Err() == nil {
						errOnce.Do(func() { firstErr = err })
					}
					return
				}
			}
		}()
		go func() { // reader
			defer wg.Done()
			local := newHistogram()
			defer func() {
				mu.Lock()
				rtt.Merge(local)
				mu.Unlock()
			}()
			var buf []byte
			for {
				_ = c.SetReadDeadline(time.Now().Add(cfg.Duration + 10*time.Second))
				f, b, err := c.readFrame(buf)
				buf = b
				if err != nil {
					if runCtx.Err() == nil {
						errOnce.Do(func() { firstErr = err })
					}
					return
				}
				if f.OpCode != ws.OpBinary || len(f.Payload) != cfg.Size {
					errOnce.Do(func() {
						firstErr = fmt.Errorf("loadtest: unexpected echo opcode %d, %d bytes", f.OpCode, len(f.Payload))
					})
					return
				}
				sent := int64(binary.LittleEndian.Uint64(f.Payload))
				if runCtx.Err() != nil {
					return
				}
				_ = local.RecordValue(max((time.Now().UnixNano()-sent)/1000, 1))
				received.Add(1)
				credits <- struct{}{}
			}
		}()
	}
	<-runCtx.Done()
	elapsed := time.Since(start)
	var after procSample
	if cfg.ServerPID > 0 {
		after, _ = sampleProc(cfg.ServerPID)
	}
	// Unblock readers waiting for echoes that will never be counted.
	for _, c := range p.conns {
		_ = c.SetReadDeadline(time.Now())
	}
	wg.Wait()
	r.Messages = received.Load()
	r.MsgsPerSec = float64(r.Messages) / elapsed.Seconds()
	s := summarise(rtt)
	r.RTT = &s
	r.Seconds = elapsed.Seconds()
	if cfg.ServerPID > 0 {
		r.Server = usage(cfg.ServerPID, before, after)
		if r.Messages > 0 {
			r.Server.CPUPerMessage = r.Server.CPUSeconds * 1e6 / float64(r.Messages)
		}
	}
	if firstErr != nil {
		r.Errors = append(r.Errors, firstErr.Error())
	}
	return r, nil
}
