// Package workpool runs the calls that may block (broker round trips) off
// the event loops: a fixed number of workers and a bounded queue. It never
// starts a goroutine per job and never blocks the caller: a full queue is
// a refusal the caller turns into an error for its client.
package workpool

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for Config's zero values.
const (
	DefaultWorkers = 16
	DefaultQueue   = 65536
)

// Config sizes a Pool.
type Config struct {
	Workers int // goroutines running jobs; default DefaultWorkers
	Queue   int // jobs waiting for a worker past which Submit refuses; default DefaultQueue
	Logger  *slog.Logger
}

// Pool is a fixed set of workers with a bounded queue. Submit is safe for
// concurrent use.
type Pool struct {
	jobs      chan func()
	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	log       *slog.Logger

	refused atomic.Int64
	ran     atomic.Int64
}

// New starts a pool.
func New(cfg Config) *Pool {
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.Queue <= 0 {
		cfg.Queue = DefaultQueue
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	p := &Pool{jobs: make(chan func(), cfg.Queue), stop: make(chan struct{}), log: cfg.Logger}
	for range cfg.Workers {
		p.wg.Add(1)
		go p.work()
	}
	return p
}

func (p *Pool) work() {
	defer p.wg.Done()
	for {
		select {
		case <-p.stop:
			return
		case job := <-p.jobs:
			job()
			p.ran.Add(1)
		}
	}
}

// Submit queues job and reports whether it was accepted. It never blocks:
// a full queue (or a closed pool) refuses, and the caller answers its
// client with an error instead of piling up work.
func (p *Pool) Submit(job func()) bool {
	select {
	case <-p.stop:
		p.refused.Add(1)
		return false
	default:
	}
	select {
	case p.jobs <- job:
		return true
	default:
		p.refused.Add(1)
		return false
	}
}

// Refused counts the jobs Submit refused.
func (p *Pool) Refused() int64 { return p.refused.Load() }

// Queued reports the jobs waiting for a worker.
func (p *Pool) Queued() int { return len(p.jobs) }

// Close stops the workers; later calls do nothing. Jobs still queued are
// dropped. It waits at most wait for workers inside a job (a clustered
// broker's calls can take seconds while NATS is unreachable), so a
// shutdown is not held up by them.
func (p *Pool) Close(wait time.Duration) {
	p.closeOnce.Do(func() {
		close(p.stop)
		done := make(chan struct{})
		go func() {
			p.wg.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(wait):
			p.log.Warn("workpool: workers still busy at shutdown")
		}
	})
}
