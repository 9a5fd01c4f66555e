package hub

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-ws/herald/broker"
	"github.com/herald-ws/herald/session"
)

// ErrBusy answers a subscribe when the broker work queue is full.
var ErrBusy = errors.New("hub: server busy, try again")

// ErrUnsubscribed answers a subscribe whose subscription was removed (by an
// unsubscribe or the connection closing) before its history arrived.
var ErrUnsubscribed = errors.New("hub: unsubscribed before the subscribe completed")

// Config configures a Hub.
type Config struct {
	Broker broker.Broker
	// Compression and CompressionMinSize mirror the server's
	// permessage-deflate settings so the hub knows whether to build a
	// compressed variant of each frame.
	Compression        bool
	CompressionMinSize int
	// Workers run broker calls that may block (history, publish) off the
	// event loops. Default 8.
	Workers int
	// MaxPending bounds the live publications held back for one recovering
	// subscription; past it the subscriber is closed as a slow consumer.
	// Default 10,000.
	MaxPending int
	Logger     *slog.Logger
}

// Hub routes publications to subscribed sessions.
type Hub struct {
	cfg    Config
	broker broker.Broker
	log    *slog.Logger

	mu       sync.RWMutex // guards channels and each channel's loops
	channels map[string]*channel

	// interestMu serialises broker Subscribe/Unsubscribe calls per channel
	// (striped, so one slow channel does not hold up the others).
	interestMu [64]sync.Mutex

	subscriptions atomic.Int64
	delivered     atomic.Int64 // frames written to subscribers
	publications  atomic.Int64 // publications received from the broker
	metrics       *Metrics

	jobs      chan func()
	stop      chan struct{}
	closeOnce sync.Once
	workers   sync.WaitGroup
}

// channel is the set of loops with at least one subscriber.
type channel struct {
	name     string
	loops    []*loopIndex
	wanted   bool // some loop has subscribers (guarded by Hub.mu)
	inBroker bool // broker.Subscribe done (guarded by interestMu)

	subs atomic.Int64 // subscriptions on every loop (TopChannels)
}

// loopIndex is one event loop's subscriptions. Only that loop touches it.
type loopIndex struct {
	loop *session.Loop
	subs map[string]*subscriberList
}

type subscriberList struct {
	list []*Subscription
	ch   *channel // the registry entry, which outlives the list
}

// Subscription is one session's subscription to one channel. It is owned by
// the session's loop.
type Subscription struct {
	Channel string
	sess    *session.Session
	idx     *loopIndex
	slot    int32
	last    uint64 // highest offset sent to the client
	pending bool   // recovering: live publications are held in held
	closed  bool
	held    []broker.Publication
}

// Closed reports whether the subscription was removed.
func (s *Subscription) Closed() bool { return s.closed }

// Session returns the subscribed session.
func (s *Subscription) Session() *session.Session { return s.sess }

// New returns a hub delivering publications from cfg.Broker. Call Start.
func New(cfg Config) *Hub {
	if cfg.Workers <= 0 {
		cfg.Workers = 8
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 10_000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Hub{
		cfg:      cfg,
		broker:   cfg.Broker,
		log:      cfg.Logger,
		channels: map[string]*channel{},
		jobs:     make(chan func(), 1<<16),
		stop:     make(chan struct{}),
		metrics:  newMetrics(),
	}
}

// Start starts the worker pool and the broker's delivery into the hub.
func (h *Hub) Start() error {
	for range h.cfg.Workers {
		h.workers.Add(1)
		go h.work()
	}
	return h.broker.Start(h.Deliver)
}

// Close stops the workers; later calls do nothing. It waits at most two
// seconds for a worker still inside a broker call (a clustered broker's
// calls time out after ten), so a shutdown is not held up by an unreachable
// NATS. The broker is closed by its owner.
func (h *Hub) Close() {
	h.closeOnce.Do(func() {
		close(h.stop)
		done := make(chan struct{})
		go func() {
			h.workers.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			h.log.Warn("hub: workers still busy with the broker at shutdown")
		}
	})
}

func (h *Hub) work() {
	defer h.workers.Done()
	for {
		select {
		case <-h.stop:
			return
		case job := <-h.jobs:
			job()
		}
	}
}

// Go queues job for the worker pool and reports whether it was accepted;
// it never blocks the caller. A full queue means the broker cannot keep up:
// the caller answers its client with an error instead of piling up
// goroutines.
func (h *Hub) Go(job func()) bool {
	select {
	case h.jobs <- job:
		return true
	default:
		return false
	}
}

// Stats are the hub's counters.
type Stats struct {
	Channels      int
	Subscriptions int64
	Publications  int64
	Delivered     int64
}

// Stats returns a snapshot of the hub's counters.
func (h *Hub) Stats() Stats {
	h.mu.RLock()
	n := len(h.channels)
	h.mu.RUnlock()
	return Stats{Channels: n, Subscriptions: h.subscriptions.Load(), Publications: h.publications.Load(), Delivered: h.delivered.Load()}
}

func (h *Hub) loopIndexOf(s *session.Session) *loopIndex {
	l := s.Loop()
	if idx, ok := l.App.(*loopIndex); ok {
		return idx
	}
	idx := &loopIndex{loop: l, subs: map[string]*subscriberList{}}
	l.App = idx
	return idx
}

// Deliver is the broker's callback: it encodes p once and gives each loop
// with subscribers one task that writes it to all of them. It may run on
// any goroutine and never blocks.
func (h *Hub) Deliver(p broker.Publication) {
	h.publications.Add(1)
	var stack [16]*loopIndex
	loops := stack[:0]
	h.mu.RLock()
	if ch := h.channels[p.Channel]; ch != nil {
		loops = append(loops, ch.loops...)
	}
	h.mu.RUnlock()
	if len(loops) == 0 {
		return
	}
	f := encode(p, h.cfg.Compression, h.cfg.CompressionMinSize, len(loops))
	for _, idx := range loops {
		// An Exec error means the engine is stopping; whether the task
		// still runs is then unknown, so the frame is not released here
		// (releasing twice would hand it to the pool while in use). At
		// worst it is left to the garbage collector.
		_ = idx.loop.Exec(func() {
			h.deliverOnLoop(idx, p, f)
			f.release()
		})
	}
}

// deliverOnLoop runs on idx's loop.
func (h *Hub) deliverOnLoop(idx *loopIndex, p broker.Publication, f *sharedFrame) {
	sl := idx.subs[p.Channel]
	if sl == nil {
		return
	}
	start := time.Now()
	var sent int64
	// Backwards, with a bounds check: a write can find a peer gone, and
	// gnet then closes the connection inside Write, whose OnClose
	// unsubscribes it here, swapping the last entry into its slot (one we
	// have already visited).
	for i := len(sl.list) - 1; i >= 0; i-- {
		if i >= len(sl.list) {
			continue
		}
		sub := sl.list[i]
		if sub.closed {
			continue
		}
		if sub.pending {
			if len(sub.held) >= h.cfg.MaxPending {
				sub.sess.Abort(session.CloseSlowConsumer)
				continue
			}
			sub.held = append(sub.held, p)
			continue
		}
		if p.Offset <= sub.last {
			continue // already sent (history, or a publication that raced the subscribe)
		}
		sub.last = p.Offset
		sub.sess.SendFrame(f.frameFor(sub.sess.Deflate()))
		if !sub.sess.Flush() {
			sub.sess.Abort(session.CloseSlowConsumer)
			continue
		}
		sent++
	}
	h.delivered.Add(sent)
	h.metrics.observeFanOut(p, start, sent)
}

// SubscribeResult is what a subscribe came to, handed to the ack callback
// on the session's loop before any message of the channel is sent.
type SubscribeResult struct {
	Offset    uint64 // the channel's top offset at subscribe time
	Recovered bool   // false when since reached back past the history
	Err       error
}

// Subscribe subscribes s to channel. With since != nil the publications
// after *since are replayed first. ack runs on s's loop once the
// subscription is live (or failed); the hub then sends the replayed
// publications and flushes. Must run on s's loop.
func (h *Hub) Subscribe(s *session.Session, channelName string, since *uint64, ack func(SubscribeResult)) *Subscription {
	idx := h.loopIndexOf(s)
	sub := &Subscription{Channel: channelName, sess: s, idx: idx, pending: true}
	sl := idx.subs[channelName]
	if sl == nil {
		sl = &subscriberList{}
		idx.subs[channelName] = sl
		sl.ch = h.addLoop(channelName, idx)
	}
	sl.ch.subs.Add(1)
	sub.slot = int32(len(sl.list))
	sl.list = append(sl.list, sub)
	h.subscriptions.Add(1)
	var from uint64
	history := since != nil
	if history {
		from = *since
	}
	// Broker calls may block (a clustered broker does network round trips),
	// so they run on the worker pool. Interest is settled before the
	// history is read: whatever is published after the read reaches this
	// node live, and until then the subscription holds live messages back.
	accepted := h.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var rec broker.Recovery
		err := h.reconcile(channelName)
		if err == nil {
			rec, err = h.broker.Recover(ctx, channelName, from, history)
		}
		_ = s.Loop().Exec(func() { h.finishSubscribe(sub, rec, err, history, from, ack) })
	})
	if !accepted {
		h.finishSubscribe(sub, broker.Recovery{}, ErrBusy, history, from, ack)
	}
	return sub
}

// finishSubscribe runs on the subscription's loop.
func (h *Hub) finishSubscribe(sub *Subscription, rec broker.Recovery, err error, history bool, since uint64, ack func(SubscribeResult)) {
	if sub.closed {
		ack(SubscribeResult{Err: ErrUnsubscribed})
		// The ack's reply sits in the loop's shared output buffer: flush it
		// now, or the next session to flush on this loop writes it into its
		// own connection.
		if !sub.sess.Flush() {
			sub.sess.Abort(session.ClosePolicy)
		}
		return
	}
	s := sub.sess
	if err != nil {
		h.Unsubscribe(sub)
		ack(SubscribeResult{Err: err})
		s.Flush()
		return
	}
	sub.pending = false
	sub.last = rec.Top
	ack(SubscribeResult{Offset: rec.Top, Recovered: !history || rec.Recovered})
	var buf []byte
	if history {
		// The client has everything up to since; a broker whose top is
		// below it (history expired or reset) must not make the held live
		// messages at or below since go out again.
		sub.last = since
		for _, p := range rec.Publications {
			buf = h.sendOne(sub, p, buf)
		}
		if sub.last < rec.Top {
			sub.last = rec.Top
		}
	}
	for _, p := range sub.held {
		buf = h.sendOne(sub, p, buf)
	}
	sub.held = nil
	if !s.Flush() {
		s.Abort(session.ClosePolicy)
	}
}

func (h *Hub) sendOne(sub *Subscription, p broker.Publication, buf []byte) []byte {
	if p.Offset <= sub.last {
		return buf
	}
	sub.last = p.Offset
	buf = AppendMessageJSON(buf[:0], p)
	sub.sess.Send(1, buf) // ws.OpText
	h.delivered.Add(1)
	return buf
}

// Unsubscribe removes sub. Must run on its session's loop. It is a no-op
// for a subscription already removed.
func (h *Hub) Unsubscribe(sub *Subscription) {
	if sub == nil || sub.closed {
		return
	}
	sub.closed = true
	sub.held = nil
	idx := sub.idx
	sl := idx.subs[sub.Channel]
	last := len(sl.list) - 1
	moved := sl.list[last]
	sl.list[sub.slot] = moved
	moved.slot = sub.slot
	sl.list[last] = nil
	sl.list = sl.list[:last]
	sl.ch.subs.Add(-1)
	h.subscriptions.Add(-1)
	if len(sl.list) == 0 {
		delete(idx.subs, sub.Channel)
		h.removeLoop(sub.Channel, idx)
		name := sub.Channel
		drop := func() {
			if err := h.reconcile(name); err != nil {
				h.log.Warn("broker unsubscribe", "channel", name, "err", err)
			}
		}
		if !h.Go(drop) {
			go drop() // must not be lost, or the node keeps the channel's traffic
		}
	}
}

func (h *Hub) addLoop(name string, idx *loopIndex) *channel {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch := h.channels[name]
	if ch == nil {
		ch = &channel{name: name}
		h.channels[name] = ch
	}
	ch.loops = append(ch.loops, idx)
	ch.wanted = true
	return ch
}

func (h *Hub) removeLoop(name string, idx *loopIndex) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch := h.channels[name]
	if ch == nil {
		return
	}
	for i, l := range ch.loops {
		if l == idx {
			ch.loops = append(ch.loops[:i], ch.loops[i+1:]...)
			break
		}
	}
	if len(ch.loops) == 0 {
		// The entry stays until the reconcile that Unsubscribe queues
		// drops it under interestMu: deleting it here, while a reconcile
		// may be inside broker.Subscribe, would orphan the interest that
		// call registers.
		ch.wanted = false
	}
}

// reconcile brings the broker's interest in name in line with whether any
// loop has subscribers. It runs on the worker pool only (a broker call may
// block), takes interestMu, and never holds Hub.mu while calling the broker:
// the memory broker calls Deliver (which takes Hub.mu) while holding its
// channel lock, and Subscribe takes that lock.
func (h *Hub) reconcile(name string) error {
	mu := &h.interestMu[stripe(name)]
	mu.Lock()
	defer mu.Unlock()
	h.mu.RLock()
	ch := h.channels[name]
	var wanted, in bool
	if ch != nil {
		wanted, in = ch.wanted, ch.inBroker
	}
	h.mu.RUnlock()
	if ch == nil {
		return nil
	}
	if wanted == in {
		h.dropIfUnused(name, ch)
		return nil
	}
	var err error
	if wanted {
		err = h.broker.Subscribe(name)
	} else {
		err = h.broker.Unsubscribe(name)
	}
	if err != nil {
		return err
	}
	h.mu.Lock()
	ch.inBroker = wanted
	h.mu.Unlock()
	h.dropIfUnused(name, ch)
	return nil
}

// stripe picks the interest lock of a channel (FNV-1a).
func stripe(name string) int {
	h := uint32(2166136261)
	for i := 0; i < len(name); i++ {
		h ^= uint32(name[i])
		h *= 16777619
	}
	return int(h % 64)
}

// dropIfUnused forgets ch when no loop wants it and the broker holds no
// interest for it. The caller holds the channel's interest lock, so no
// broker call for the channel is in flight.
func (h *Hub) dropIfUnused(name string, ch *channel) {
	h.mu.Lock()
	if !ch.wanted && !ch.inBroker && len(ch.loops) == 0 && h.channels[name] == ch {
		delete(h.channels, name)
	}
	h.mu.Unlock()
}
