package loadtest

import (
	"context"
	"io"
	"net"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// churner replaces the oldest connection of its pool with a new one Rate
// times a second, so that about Conns connections stay open while the
// server keeps accepting and tearing down. A new connection subscribes
// when its URL's path is /ws and then joins the pool on the event loops.
type churner struct {
	pp   *pushPart
	rate float64 // replacements per second
	next int     // local index of the next new connection

	mu          sync.Mutex
	queue       []io.Closer // the pool, oldest first: gnet.Conn, or *conn for wss://
	pool        int         // connections in the pool after set-up
	connects    int64
	disconnects int64
	failures    int64
	connect     *hdrhistogram.Histogram
}

// churnInFlight bounds the replacements dialing at once.
const churnInFlight = 64

// run churns until stop closes or ctx ends. It makes at most Rate x
// (Duration + 2 s) replacements, and waits for the ones in flight.
func (ch *churner) run(ctx context.Context, stop <-chan struct{}) {
	cfg := ch.pp.cfg
	interval := time.Duration(float64(time.Second) / ch.rate)
	ticks := int(ch.rate*(cfg.Duration+2*time.Second).Seconds()) + 1
	sem := make(chan struct{}, churnInFlight)
	var wg sync.WaitGroup
	defer wg.Wait()
	start := time.Now()
	t := time.NewTimer(0)
	defer t.Stop()
	<-t.C
	for k := range ticks {
		if wait := time.Until(start.Add(time.Duration(k) * interval)); wait > 0 {
			t.Reset(wait)
			select {
			case <-t.C:
			case <-stop:
				return
			case <-ctx.Done():
				return
			}
		}
		select {
		case sem <- struct{}{}:
		case <-stop:
			return
		case <-ctx.Done():
			return
		}
		ch.closeOldest()
		i := ch.next
		ch.next++
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			ch.replace(ctx, i)
		}()
	}
}

// closeOldest closes the pool's oldest connection, if any is left.
func (ch *churner) closeOldest() {
	ch.mu.Lock()
	if len(ch.queue) == 0 {
		ch.mu.Unlock()
		return
	}
	c := ch.queue[0]
	ch.queue[0] = nil
	ch.queue = ch.queue[1:]
	ch.disconnects++
	ch.mu.Unlock()
	_ = c.Close() // safe from any goroutine; OnClose runs on c's loop, or readStream ends
}

// replace opens local connection i, subscribes it on /ws, and adds it to
// the pool.
func (ch *churner) replace(ctx context.Context, i int) {
	pp := ch.pp
	cfg := pp.cfg
	var src net.IP
	if len(cfg.SourceIPs) > 0 {
		src = cfg.SourceIPs[i%len(cfg.SourceIPs)]
	}
	t0 := time.Now()
	u := pp.urlOf(i)
	c, err := dial(ctx, u, src, cfg.DialTimeout, cfg.tlsFor(u))
	d := max(time.Since(t0).Microseconds(), 1)
	stage := "churn connect"
	if err == nil && pp.subscribes(i) {
		if err = subscribe(c, pp.channelName(i), i+1); err != nil {
			stage = "churn subscribe"
			_ = c.Close()
		}
	}
	var gc io.Closer
	if err == nil {
		if gc, err = pp.enroll(c, churned{}); err != nil {
			stage = "churn enroll"
		}
	}
	if err != nil {
		ch.mu.Lock()
		ch.failures++
		ch.mu.Unlock()
		pp.p.errs.add(stage, err)
		return
	}
	pp.m.open.Add(1)
	if !publishes(cfg) {
		pp.m.record(d)
	}
	ch.mu.Lock()
	ch.connects++
	_ = ch.connect.RecordValue(d)
	ch.queue = append(ch.queue, gc)
	ch.mu.Unlock()
}
