package loadtest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/gobwas/ws"
)

// Run executes cfg's scenario and returns its figures. It stops by itself
// after cfg.Duration plus bounded set-up and drain time, or when ctx ends;
// past cfg.HardDeadline it gives up and returns ErrDeadline.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	switch cfg.Scenario {
	case "connect", "echo", "push", "churn":
	default:
		return nil, fmt.Errorf("loadtest: unknown scenario %q (connect, echo, push, churn)", cfg.Scenario)
	}
	hard := cfg.HardDeadline()
	ctx, cancel := context.WithTimeoutCause(ctx, hard, ErrDeadline)
	defer cancel()
	r, err := run(ctx, cfg)
	if errors.Is(context.Cause(ctx), ErrDeadline) {
		return r, fmt.Errorf("%w (%v for this run)", ErrDeadline, hard.Round(time.Second))
	}
	return r, err
}

// part is one process's share of a run's connections: the whole of them in
// a single-process run, one worker's in a multi-process run.
type part interface {
	// setup opens (and subscribes) the part's connections and returns how
	// many are open.
	setup(ctx context.Context) (int, error)
	// drive runs the measured phase until stop closes or ctx ends.
	drive(ctx context.Context, stop <-chan struct{})
	// report returns what the part measured; call it after drive returned.
	report() *partReport
	// close releases the connections still open.
	close()
}

// share places a part's connections in the whole run: local connection i
// is connection i*Stride+Offset of the run, which decides its URL and
// channel, so that a run split over processes spreads exactly as one that
// is not.
type share struct {
	Offset int `json:"offset"`
	Stride int `json:"stride"`
}

func (s share) global(i int) int { return i*s.Stride + s.Offset }

func newPart(cfg Config, sh share, m *meter) part {
	switch cfg.Scenario {
	case "connect":
		return &connectPart{cfg: cfg, sh: sh, m: m}
	case "echo":
		return &echoPart{cfg: cfg, sh: sh, m: m, rtt: newHistogram()}
	}
	return newPushPart(cfg, sh, m)
}

// fleet drives the parts of a run through its phases: set up, start the
// measured phase, stop it, collect the reports.
type fleet interface {
	setup(ctx context.Context) (opened int, err error)
	start()
	stop()
	reports(ctx context.Context) ([]*partReport, error)
	close()
}

// localFleet is a run's only part, in this process. Its methods run on the
// goroutine that drives the run.
type localFleet struct {
	p        part
	ctx      context.Context
	stopping chan struct{}
	stopOnce sync.Once
	done     chan struct{} // closed when drive returned; nil before start
}

func (f *localFleet) setup(ctx context.Context) (int, error) {
	f.ctx = ctx
	return f.p.setup(ctx)
}

func (f *localFleet) start() {
	f.stopping, f.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(f.done)
		f.p.drive(f.ctx, f.stopping)
	}()
}

func (f *localFleet) stop() { f.stopOnce.Do(func() { close(f.stopping) }) }

func (f *localFleet) reports(context.Context) ([]*partReport, error) {
	// drive returns within a bounded time of stop (every wait in it has a
	// deadline), so this needs no ctx.
	<-f.done
	return []*partReport{f.p.report()}, nil
}

// close stops the measured phase if a failed run left it going, then
// releases the part's connections.
func (f *localFleet) close() {
	if f.done != nil {
		f.stop()
		<-f.done
	}
	f.p.close()
}

// run executes a validated cfg within ctx.
func run(ctx context.Context, cfg Config) (*Result, error) {
	r := &Result{Scenario: cfg.Scenario, URL: cfg.URL, Conns: cfg.Conns, Started: time.Now().UTC(), Params: cfg.params()}
	m := newMeter(cfg.Progress != nil)
	var fl fleet
	if cfg.Procs > 1 {
		r.Procs = cfg.Procs
		fl = newProcFleet(cfg, m)
	} else {
		fl = &localFleet{p: newPart(cfg, share{Offset: 0, Stride: 1}, m)}
	}
	defer fl.close()
	if cfg.Progress != nil {
		stop := progressLine(cfg.Progress, cfg.progressEvery, m.open.Load, m.msgs.Load, m.takeInterval)
		defer stop()
	}

	var before, after procSample
	sample := func(s *procSample) error {
		if cfg.ServerPID <= 0 {
			return nil
		}
		var err error
		if *s, err = sampleProc(cfg.ServerPID); err != nil {
			return fmt.Errorf("loadtest: sample server: %w", err)
		}
		return nil
	}
	if cfg.Scenario == "connect" {
		if err := sample(&before); err != nil {
			return nil, err
		}
	}
	start := time.Now()
	opened, err := fl.setup(ctx)
	if err != nil {
		return nil, err
	}
	if cfg.Scenario != "connect" {
		if err := sample(&before); err != nil {
			return nil, err
		}
	}
	var pub *publisher
	if publishes(cfg) {
		pub = newPublisher(cfg)
	}

	fl.start()
	phase := time.Now()
	var pubErrs int
	switch {
	case cfg.Scenario == "echo" && opened == 0:
		// Nothing to drive: collect the failures and say so.
	case cfg.Scenario == "connect":
		settle := min(cfg.Settle, cfg.Duration)
		sleep(ctx, settle)
		if err := sample(&after); err != nil {
			return nil, err
		}
		sleep(ctx, cfg.Duration-settle)
	case cfg.Scenario == "echo":
		sleep(ctx, cfg.Duration)
		_ = sample(&after)
	case pub != nil:
		pubErrs = pub.run(ctx, phase, cfg.Duration)
		sleep(ctx, cfg.Push.Drain) // let the last publications arrive
		_ = sample(&after)
	default:
		sleep(ctx, cfg.Duration)
		_ = sample(&after)
	}
	elapsed := time.Since(phase)
	fl.stop()
	reps, err := fl.reports(ctx)
	if err != nil {
		return nil, err
	}
	mr, err := mergeReports(reps)
	if err != nil {
		return nil, err
	}
	r.fill(mr)
	switch cfg.Scenario {
	case "connect":
		r.Seconds = time.Since(start).Seconds()
	case "echo":
		if opened == 0 {
			return r, ErrNoConnections
		}
		r.Messages = mr.Messages
		r.MsgsPerSec = float64(r.Messages) / elapsed.Seconds()
		s := summarise(mr.rtt)
		r.RTT = &s
		r.Seconds = elapsed.Seconds()
	case "push", "churn":
		r.fillPush(cfg, mr, pub, pubErrs, elapsed)
		r.Seconds = elapsed.Seconds()
	}
	if pub != nil {
		_, texts := pub.errs.snapshot()
		r.Errors = mergeErrorTexts(r.Errors, texts)
	}
	if cfg.ServerPID > 0 {
		r.Server = usage(cfg.ServerPID, before, after)
		switch {
		case cfg.Scenario == "connect" && r.Opened > 0:
			r.Server.RSSPerConn = float64(after.RSS-before.RSS) / float64(r.Opened)
		case cfg.Scenario != "connect" && r.Messages > 0:
			r.Server.CPUPerMessage = r.Server.CPUSeconds * 1e6 / float64(r.Messages)
		}
	}
	return r, nil
}

// fill copies the connection figures every scenario reports.
func (r *Result) fill(m *merged) {
	r.Opened = m.Opened
	r.Failures = m.Failures
	r.Errors = m.Errors
	r.ErrorCount = m.ErrorCount
	r.Connect = summarise(m.connect)
	if m.ConnectSeconds > 0 {
		r.ConnectRate = float64(m.Opened) / m.ConnectSeconds
	}
}

// pool is the set of connections a part opened.
type pool struct {
	conns    []*conn
	idx      []int // each connection's local index
	failures int
	errs     errLog
	connect  *hdrhistogram.Histogram
	elapsed  time.Duration
	m        *meter
}

func (p *pool) close() {
	for _, c := range p.conns {
		_ = c.Close()
		p.m.open.Add(-1)
	}
	p.conns, p.idx = nil, nil
}

// report returns the pool's figures.
func (p *pool) report() *partReport {
	count, first := p.errs.snapshot()
	return &partReport{
		Opened:         len(p.conns),
		Failures:       p.failures,
		Errors:         first,
		ErrorCount:     count,
		Connect:        exportHist(p.connect),
		ConnectSeconds: p.elapsed.Seconds(),
	}
}

// open dials n connections at rate per second (0: as fast as it can) with
// a bounded set of dialing goroutines. Connection i goes to the run's URL
// sh.global(i) round-robin, from the part's source address i round-robin.
// ready, when not nil, runs on the dialing goroutine right after the
// upgrade (to subscribe); an error closes the connection and counts it as
// failed. recordLive adds connect times to the progress line's interval.
func open(ctx context.Context, cfg Config, sh share, n, rate int, m *meter, recordLive bool, ready func(c *conn, i int) error) *pool {
	p := &pool{connect: newHistogram(), m: m}
	conns := make([]*conn, n)
	var mu sync.Mutex
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range min(n, 128) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				var src net.IP
				if len(cfg.SourceIPs) > 0 {
					src = cfg.SourceIPs[i%len(cfg.SourceIPs)]
				}
				u := cfg.urlOf(sh, i)
				t0 := time.Now()
				var c *conn
				var err error
				if cfg.streams() {
					c, err = dialPlain(ctx, u, src, cfg.DialTimeout)
				} else {
					c, err = dial(ctx, u, src, cfg.DialTimeout, cfg.tlsFor(u))
				}
				d := max(time.Since(t0).Microseconds(), 1)
				stage := "connect"
				if err == nil && ready != nil {
					if err = ready(c, i); err != nil {
						stage = "subscribe"
						_ = c.Close()
					}
				}
				mu.Lock()
				if err != nil {
					p.failures++
					mu.Unlock()
					p.errs.add(stage, err)
					continue
				}
				conns[i] = c
				_ = p.connect.RecordValue(d)
				mu.Unlock()
				m.open.Add(1)
				if recordLive {
					m.record(d)
				}
			}
		}()
	}
	start := time.Now()
	for i := 0; i < n && ctx.Err() == nil; i++ {
		if rate > 0 {
			due := start.Add(time.Duration(i) * time.Second / time.Duration(rate))
			if wait := time.Until(due); wait > 0 {
				sleep(ctx, wait)
			}
		}
		select {
		case jobs <- i:
		case <-ctx.Done():
		}
	}
	close(jobs)
	wg.Wait()
	p.elapsed = time.Since(start)
	for i, c := range conns {
		if c != nil {
			p.conns = append(p.conns, c)
			p.idx = append(p.idx, i)
		}
	}
	return p
}

// connectPart holds its connections idle.
type connectPart struct {
	cfg Config
	sh  share
	m   *meter
	p   *pool
}

func (c *connectPart) setup(ctx context.Context) (int, error) {
	c.p = open(ctx, c.cfg, c.sh, c.cfg.Conns, c.cfg.Rate, c.m, true, nil)
	return len(c.p.conns), nil
}

func (c *connectPart) drive(ctx context.Context, stop <-chan struct{}) {
	select {
	case <-stop:
	case <-ctx.Done():
	}
}

func (c *connectPart) report() *partReport { return c.p.report() }

func (c *connectPart) close() {
	if c.p != nil {
		c.p.close()
	}
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

// echoPart keeps cfg.InFlight messages in flight on every connection. Each
// message carries its send time in its first 8 bytes; the reader records
// the round trip when the echo comes back.
type echoPart struct {
	cfg      Config
	sh       share
	m        *meter
	p        *pool
	received atomic.Int64
	mu       sync.Mutex
	rtt      *hdrhistogram.Histogram
}

func (e *echoPart) setup(ctx context.Context) (int, error) {
	e.p = open(ctx, e.cfg, e.sh, e.cfg.Conns, e.cfg.Rate, e.m, false, nil)
	return len(e.p.conns), nil
}

func (e *echoPart) drive(ctx context.Context, stop <-chan struct{}) {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-stop:
		case <-runCtx.Done():
		}
		cancel()
	}()
	cfg := e.cfg
	var wg sync.WaitGroup
	fail := func(err error) {
		if runCtx.Err() == nil {
			e.p.errs.add("echo", err)
		}
	}
	for _, c := range e.p.conns {
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
					fail(err)
					return
				}
			}
		}()
		go func() { // reader
			defer wg.Done()
			local := newHistogram()
			defer func() {
				e.mu.Lock()
				e.rtt.Merge(local)
				e.mu.Unlock()
			}()
			var buf []byte
			for {
				_ = c.SetReadDeadline(time.Now().Add(cfg.Duration + 10*time.Second))
				// Checked after the deadline is set: drive cancels runCtx
				// before it expires every deadline, so a reader either sees
				// the cancellation here or has its new deadline expired.
				if runCtx.Err() != nil {
					return
				}
				f, b, err := c.readFrame(buf)
				buf = b
				if err != nil {
					fail(err)
					return
				}
				if f.OpCode != ws.OpBinary || len(f.Payload) != cfg.Size {
					fail(fmt.Errorf("unexpected echo opcode %d, %d bytes", f.OpCode, len(f.Payload)))
					return
				}
				sent := int64(binary.LittleEndian.Uint64(f.Payload))
				if runCtx.Err() != nil {
					return
				}
				d := max((time.Now().UnixNano()-sent)/1000, 1)
				_ = local.RecordValue(d)
				e.m.record(d)
				e.m.msgs.Add(1)
				e.received.Add(1)
				credits <- struct{}{}
			}
		}()
	}
	<-runCtx.Done()
	// Unblock readers waiting for echoes that will never be counted, and
	// writers stuck behind a server that stopped reading. runCtx is done
	// before any deadline is expired here (see the reader).
	for _, c := range e.p.conns {
		_ = c.SetDeadline(time.Now())
	}
	wg.Wait()
}

func (e *echoPart) report() *partReport {
	r := e.p.report()
	r.Messages = e.received.Load()
	e.mu.Lock()
	r.RTT = exportHist(e.rtt)
	e.mu.Unlock()
	return r
}

func (e *echoPart) close() {
	if e.p != nil {
		e.p.close()
	}
}
