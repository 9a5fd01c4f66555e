package hub

import (
	"context"
	"sync"
	"time"

	"github.com/herald-ws/herald/broker"
	"github.com/herald-ws/herald/session"
)

// topReads coalesces the broker reads of a channel's top offset that
// subscribes without a position need. A million clients subscribing to
// one channel through 50 nodes would otherwise make a million JetStream
// requests; with coalescing each node makes one per round trip.
//
// A subscribe joins the next read of its channel, never one already in
// flight: a read that started before the subscription began holding live
// publications could return a top below a publication that reached the
// node before the subscription existed, and the client would see a gap
// that is not there. So per channel at most one read runs, and the
// subscribes that arrive meanwhile wait for the one after it.
type topReads struct {
	mu sync.Mutex
	m  map[string]*topRead // channels with a read running
}

// topRead is one channel's running read and the subscribes that wait for
// the next one.
type topRead struct {
	next []topWaiter
}

type topWaiter struct {
	s    *session.Session
	done func(broker.Recovery, error)
}

// readTop calls done on s's loop with the channel's top offset (broker
// interest settled first), read after this call began. Must run on s's
// loop; a full worker pool calls done with ErrBusy at once.
func (h *Hub) readTop(s *session.Session, name string, done func(broker.Recovery, error)) {
	t := &h.tops
	t.mu.Lock()
	if r := t.m[name]; r != nil {
		r.next = append(r.next, topWaiter{s, done})
		t.mu.Unlock()
		return
	}
	if t.m == nil {
		t.m = make(map[string]*topRead)
	}
	r := &topRead{}
	t.m[name] = r
	t.mu.Unlock()
	if !h.submitTopRead(name, r, []topWaiter{{s, done}}) {
		done(broker.Recovery{}, ErrBusy)
	}
}

// submitTopRead queues the read for batch on the pool. When the pool is
// full it removes the channel's entry, fails whoever joined it meanwhile
// with ErrBusy and returns false: the caller fails batch.
func (h *Hub) submitTopRead(name string, r *topRead, batch []topWaiter) bool {
	if h.pool.Submit(func() { h.topReadLoop(name, r, batch) }) {
		return true
	}
	t := &h.tops
	t.mu.Lock()
	waiting := r.next
	delete(t.m, name)
	t.mu.Unlock()
	for _, w := range waiting {
		h.finishTop(w, broker.Recovery{}, ErrBusy)
	}
	return false
}

// topReadLoop runs on the worker pool: it reads the top for batch, then
// has the subscribes that arrived while it read wait for the next read,
// queued behind whatever else waits for the pool: a channel that gets a
// subscribe during every read must not keep a worker to itself while
// other channels' reads wait. A full pool fails that next batch (and
// whoever joins it meanwhile) with ErrBusy.
func (h *Hub) topReadLoop(name string, r *topRead, batch []topWaiter) {
	t := &h.tops
	rec, err := h.readTopOnce(name)
	for _, w := range batch {
		h.finishTop(w, rec, err)
	}
	t.mu.Lock()
	if len(r.next) == 0 {
		delete(t.m, name)
		t.mu.Unlock()
		return
	}
	batch, r.next = r.next, nil
	t.mu.Unlock()
	if !h.submitTopRead(name, r, batch) {
		for _, w := range batch {
			h.finishTop(w, broker.Recovery{}, ErrBusy)
		}
	}
}

func (h *Hub) readTopOnce(name string) (broker.Recovery, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	top, fresh, err := h.reconcileTop(name)
	if err != nil {
		return broker.Recovery{}, err
	}
	if fresh {
		// This read subscribed the node, and the broker read the top
		// once the interest was registered: after every waiter of the
		// batch began.
		return broker.Recovery{Top: top, Recovered: true}, nil
	}
	return h.broker.Recover(ctx, name, 0, false)
}

// finishTop hands a read's result to a waiter on its loop.
func (h *Hub) finishTop(w topWaiter, rec broker.Recovery, err error) {
	// An engine that is stopping takes the session with it.
	_ = w.s.Loop().Exec(func() { w.done(rec, err) })
}
