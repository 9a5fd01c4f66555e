package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// A multi-process run (Config.Procs > 1) re-executes the generator once per
// worker. The parent writes each worker its Assignment as one JSON line on
// stdin, then single-word commands; the worker answers with lines on
// stdout:
//
//	parent -> worker   {assignment}   go   stop
//	worker -> parent   ready N        progress {json}   result {json}   error MSG
//
// "ready N" says the worker's N connections are open (and subscribed);
// the parent starts the measured phase with "go" once every worker is
// ready (and alone publishes, for push and churn), and ends it with
// "stop", after which each worker reports its figures and exits. A worker
// exits by itself when its stdin closes (the parent went away) or its
// deadline passes.

// WorkerFlag is the hidden argument that makes `herald loadtest` a worker.
const WorkerFlag = "-worker"

// Assignment is one worker's share of a multi-process run.
type Assignment struct {
	Config Config `json:"config"`
	// Offset and Stride place the worker's connections in the run: its
	// connection i is the run's connection i*Stride+Offset.
	Offset   int       `json:"offset"`
	Stride   int       `json:"stride"`
	Deadline time.Time `json:"deadline"` // the run's hard deadline
	// Progress asks for a progress line every ProgressEvery.
	Progress      bool          `json:"progress,omitempty"`
	ProgressEvery time.Duration `json:"progress_every,omitempty"`
}

// progressReport is a worker's progress line.
type progressReport struct {
	Open     int64                  `json:"open"`
	Msgs     int64                  `json:"msgs"`
	Interval *hdrhistogram.Snapshot `json:"interval"`
}

// ReadAssignment reads a worker's assignment, the first line of in.
func ReadAssignment(in *bufio.Reader) (*Assignment, error) {
	line, err := in.ReadBytes('\n')
	if err != nil {
		return nil, fmt.Errorf("%w: reading the assignment: %v", ErrWorker, err)
	}
	a := &Assignment{}
	if err := json.Unmarshal(line, a); err != nil {
		return nil, fmt.Errorf("%w: decoding the assignment: %v", ErrWorker, err)
	}
	if a.Stride < 1 || a.Offset < 0 || a.Offset >= a.Stride || a.Deadline.IsZero() {
		return nil, fmt.Errorf("%w: malformed assignment", ErrWorker)
	}
	a.Config.Procs = 1
	if err := a.Config.defaults(); err != nil {
		return nil, err
	}
	return a, nil
}

// lineWriter writes whole protocol lines; safe for concurrent use.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineWriter) line(kind string, payload []byte) error {
	b := make([]byte, 0, len(kind)+len(payload)+2)
	b = append(b, kind...)
	if len(payload) > 0 {
		b = append(b, ' ')
		b = append(b, payload...)
	}
	b = append(b, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	_, err := l.w.Write(b)
	return err
}

// Serve runs the assignment: it opens the worker's connections, says
// ready, drives them between the parent's go and stop read from in, and
// reports its figures on out. It returns when it has reported, when in
// closes (the parent went away: ErrParentGone) or when the deadline passes
// (ErrDeadline).
func (a *Assignment) Serve(ctx context.Context, in *bufio.Reader, out io.Writer) error {
	ctx, cancel := context.WithDeadlineCause(ctx, a.Deadline, ErrDeadline)
	defer cancel()
	w := &lineWriter{w: out}
	goCh, stopCh := make(chan struct{}), make(chan struct{})
	var parentGone atomic.Bool
	go func() {
		var goOnce, stopOnce sync.Once
		for {
			line, err := in.ReadString('\n')
			switch string(bytes.TrimSpace([]byte(line))) {
			case "go":
				goOnce.Do(func() { close(goCh) })
			case "stop":
				stopOnce.Do(func() { close(stopCh) })
			}
			if err != nil {
				parentGone.Store(true)
				cancel()
				return
			}
		}
	}()

	m := newMeter(a.Progress)
	p := newPart(a.Config, share{Offset: a.Offset, Stride: a.Stride}, m)
	defer p.close()
	if a.Progress {
		stop := a.reportProgress(w, m)
		defer stop()
	}
	opened, err := p.setup(ctx)
	if err != nil {
		_ = w.line("error", []byte(err.Error()))
		return err
	}
	if err := w.line("ready", []byte(strconv.Itoa(opened))); err != nil {
		return fmt.Errorf("%w: %v", ErrWorker, err)
	}
	select {
	case <-goCh:
	case <-ctx.Done():
	}
	p.drive(ctx, stopCh) // returns at once when ctx is done, after stopping its loops
	rep, err := json.Marshal(p.report())
	if err != nil {
		return err
	}
	if err := w.line("result", rep); err != nil {
		return fmt.Errorf("%w: %v", ErrWorker, err)
	}
	switch {
	case parentGone.Load():
		return ErrParentGone
	case errors.Is(context.Cause(ctx), ErrDeadline):
		return ErrDeadline
	}
	return nil
}

// reportProgress writes a progress line every ProgressEvery until stopped.
func (a *Assignment) reportProgress(w *lineWriter, m *meter) (stop func()) {
	return everyTick(a.ProgressEvery, func(time.Time) {
		b, _ := json.Marshal(progressReport{Open: m.open.Load(), Msgs: m.msgs.Load(), Interval: exportHist(m.takeInterval())})
		_ = w.line("progress", b)
	})
}

// worker is the parent's handle on one worker process.
type worker struct {
	idx    int
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	ready  chan int         // buffered: the worker's "ready N"
	result chan *partReport // buffered: its "result"
	exited chan struct{}    // closed once its stdout closed and it was waited for
	err    error            // why it exited; read after exited closes

	open, msgs int64 // last progress, owned by the reading goroutine
}

// procFleet runs a run's connections in worker processes.
type procFleet struct {
	cfg     Config
	m       *meter
	workers []*worker
}

func newProcFleet(cfg Config, m *meter) *procFleet { return &procFleet{cfg: cfg, m: m} }

// workerCommand is the argv that starts one worker.
func workerCommand(cfg Config) []string {
	if len(cfg.WorkerArgs) > 0 {
		return cfg.WorkerArgs
	}
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	return []string{exe, "loadtest", WorkerFlag}
}

// assignments splits cfg over its workers: connections, connection rate,
// churn rate and source addresses, the addresses into disjoint ranges.
func assignments(cfg Config, deadline time.Time, progress bool) ([]*Assignment, error) {
	n := cfg.Procs
	ips, err := PartitionIPs(cfg.SourceIPs, n)
	if err != nil {
		return nil, err
	}
	out := make([]*Assignment, n)
	for i := range n {
		wc := cfg
		wc.Procs = 1
		wc.ServerPID = 0
		wc.Progress = nil
		wc.WorkerArgs = nil
		wc.Conns = shareOf(cfg.Conns, i, n)
		wc.SourceIPs = ips[i]
		if cfg.Rate > 0 {
			wc.Rate = max(shareOf(cfg.Rate, i, n), 1)
		}
		wc.Churn.Rate = cfg.Churn.Rate / float64(n)
		out[i] = &Assignment{Config: wc, Offset: i, Stride: n, Deadline: deadline, Progress: progress, ProgressEvery: cfg.progressEvery}
	}
	return out, nil
}

func (f *procFleet) setup(ctx context.Context) (int, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(f.cfg.HardDeadline())
	}
	as, err := assignments(f.cfg, deadline, f.m.interval != nil)
	if err != nil {
		return 0, err
	}
	argv := workerCommand(f.cfg)
	for i, a := range as {
		w, err := f.spawn(i, argv, a)
		if w != nil {
			f.workers = append(f.workers, w)
		}
		if err != nil {
			return 0, fmt.Errorf("%w: starting worker %d: %v", ErrWorker, i, err)
		}
	}
	opened := 0
	for _, w := range f.workers {
		select {
		case n := <-w.ready:
			opened += n
		case <-w.exited:
			select {
			case n := <-w.ready:
				opened += n
			default:
				return 0, fmt.Errorf("%w: worker %d: %v", ErrWorker, w.idx, w.err)
			}
		case <-ctx.Done():
			return 0, context.Cause(ctx)
		}
	}
	return opened, nil
}

func (f *procFleet) spawn(i int, argv []string, a *Assignment) (*worker, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stderr = os.Stderr // a worker's own complaints reach the operator as they are
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(a)
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	w := &worker{idx: i, cmd: cmd, stdin: stdin, ready: make(chan int, 1), result: make(chan *partReport, 1), exited: make(chan struct{})}
	go w.read(stdout, f.m)
	if _, err := stdin.Write(append(b, '\n')); err != nil {
		return w, err
	}
	return w, nil
}

// read handles the worker's lines until its stdout closes, then waits for
// the process.
func (w *worker) read(stdout io.Reader, m *meter) {
	var protoErr error
	br := bufio.NewReaderSize(stdout, 64<<10)
	for {
		line, err := br.ReadBytes('\n')
		if kind, payload, _ := bytes.Cut(bytes.TrimRight(line, "\n"), []byte(" ")); len(kind) > 0 {
			if e := w.handle(string(kind), payload, m); e != nil && protoErr == nil {
				protoErr = e
			}
		}
		if err != nil {
			break
		}
	}
	// Take the worker's connections out of the progress line.
	m.open.Add(-w.open)
	werr := w.cmd.Wait()
	switch {
	case protoErr != nil:
		w.err = protoErr
	case werr != nil:
		w.err = fmt.Errorf("exited: %v", werr)
	default:
		w.err = errors.New("exited without reporting")
	}
	close(w.exited)
}

// handle acts on one line from the worker. Lines of other kinds (a
// library's log line that reached stdout) are ignored.
func (w *worker) handle(kind string, payload []byte, m *meter) error {
	switch kind {
	case "ready":
		n, err := strconv.Atoi(string(payload))
		if err != nil {
			return fmt.Errorf("bad ready line %q", payload)
		}
		select {
		case w.ready <- n:
		default:
			return errors.New("a second ready line")
		}
	case "progress":
		var p progressReport
		if json.Unmarshal(payload, &p) != nil {
			return nil // progress is best effort
		}
		m.open.Add(p.Open - w.open)
		m.msgs.Add(p.Msgs - w.msgs)
		w.open, w.msgs = p.Open, p.Msgs
		if h, err := importHist(p.Interval); err == nil {
			m.merge(h)
		}
	case "result":
		rep := &partReport{}
		if err := json.Unmarshal(payload, rep); err != nil {
			return fmt.Errorf("bad result: %v", err)
		}
		select {
		case w.result <- rep:
		default:
			return errors.New("a second result")
		}
	case "error":
		return errors.New(string(payload))
	}
	return nil
}

func (f *procFleet) send(cmd string) {
	for _, w := range f.workers {
		_, _ = io.WriteString(w.stdin, cmd+"\n")
	}
}

func (f *procFleet) start() { f.send("go") }

func (f *procFleet) stop() { f.send("stop") }

// The wait for the workers' reports after stop is bounded by the run's
// StopMargin: they report as soon as their connections are stopped, which
// takes longer the more connections the machine holds.

// reports waits for every worker's figures. A cancelled ctx (an interrupt,
// which the workers see too) still waits for them, as a single-process run
// still reports; only the hard deadline abandons them.
func (f *procFleet) reports(ctx context.Context) ([]*partReport, error) {
	bound := f.cfg.StopMargin()
	timeout := time.NewTimer(bound)
	defer timeout.Stop()
	var out []*partReport
	for _, w := range f.workers {
		r, err := w.awaitResult(ctx, timeout.C, bound)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// awaitResult waits for the worker's result until it exits, timeout fires
// or the hard deadline passes.
func (w *worker) awaitResult(ctx context.Context, timeout <-chan time.Time, bound time.Duration) (*partReport, error) {
	done := ctx.Done()
	for {
		select {
		case r := <-w.result:
			return r, nil
		case <-w.exited:
			select {
			case r := <-w.result:
				return r, nil
			default:
				return nil, fmt.Errorf("%w: worker %d: %v", ErrWorker, w.idx, w.err)
			}
		case <-timeout:
			return nil, fmt.Errorf("%w: worker %d did not report within %v of stop", ErrWorker, w.idx, bound)
		case <-done:
			if errors.Is(context.Cause(ctx), ErrDeadline) {
				return nil, ErrDeadline
			}
			done = nil // interrupted: the worker reports all the same
		}
	}
}

// workerExitGrace is how long close waits for a worker to exit by itself
// before it kills it.
const workerExitGrace = 10 * time.Second

// close closes every worker's stdin, which ends a worker that is still
// running, waits for them to exit and kills those that do not.
func (f *procFleet) close() {
	for _, w := range f.workers {
		_ = w.stdin.Close()
	}
	timeout := time.NewTimer(workerExitGrace)
	defer timeout.Stop()
	expired := false
	for _, w := range f.workers {
		if !expired {
			select {
			case <-w.exited:
				continue
			case <-timeout.C:
				expired = true
			}
		}
		_ = w.cmd.Process.Kill()
		<-w.exited
	}
}
