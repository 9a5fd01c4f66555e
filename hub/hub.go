package hub

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-ws/herald/broker"
	"github.com/herald-ws/herald/internal/workpool"
	"github.com/herald-ws/herald/session"
)

// ErrBusy answers a subscribe when the broker work queue is full.
var ErrBusy = errors.New("hub: server busy, try again")

// ErrTooManyChannels refuses a subscription that would make this node hold
// more channels than Config.MaxChannels.
var ErrTooManyChannels = errors.New("hub: server channel limit reached")

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
	// Pool runs broker calls that may block (interest, history, publish)
	// off the event loops. Nil: the hub starts its own with the defaults.
	// Brokers that implement broker.Nonblocking are called on the loop.
	Pool *workpool.Pool
	// MaxChannels bounds the channels with local subscribers; a subscribe
	// that would add one more fails with ErrTooManyChannels. 0: no limit.
	MaxChannels int
	// MaxPending bounds the live publications held back for one recovering
	// subscription; past it the subscriber is closed as a slow consumer.
	// Default 10,000.
	MaxPending int
	// InboxPublications and InboxBytes bound each event loop's inbox of
	// publications waiting to be delivered (defaults
	// DefaultInboxPublications, DefaultInboxBytes); AdmitWait is the
	// longest Admit waits for a loop behind them (DefaultAdmitWait).
	InboxPublications int
	InboxBytes        int
	AdmitWait         time.Duration
	// Conflate reports whether a channel is conflated: a subscriber that is
	// behind gets only its newest publication. Nil: none is.
	Conflate func(channel string) bool
	Logger   *slog.Logger
}

// Hub routes publications to subscribed sessions.
type Hub struct {
	cfg    Config
	broker broker.Broker
	log    *slog.Logger

	mu       sync.RWMutex // guards channels and each channel's loops
	channels map[string]*channel
	// channelsPeak is the most channels held since the map was last
	// copied (shrunk); guarded by mu.
	channelsPeak int
	inline       bool // the broker never blocks: call it on the loop
	ownPool      bool

	// interestMu serialises broker Subscribe/Unsubscribe calls per channel
	// (striped, so one slow channel does not hold up the others).
	interestMu [64]sync.Mutex

	// inboxes are the event loops' inboxes (guarded by mu); inboxList is
	// the same, copied on change, for the metrics to read without a lock.
	inboxes   map[*session.Loop]*inbox
	inboxList atomic.Pointer[[]*inbox]

	subscriptions atomic.Int64
	delivered     atomic.Int64 // frames written to subscribers
	publications  atomic.Int64 // publications received from the broker
	gaps          atomic.Int64
	conflated     atomic.Int64 // deliveries skipped by conflation
	overflows     atomic.Int64 // publications a full inbox did not take (recovered from history)
	refused       atomic.Int64 // publishes refused by Admit or Overloaded
	metrics       *Metrics

	pool *workpool.Pool
	tops topReads // coalesced top reads of subscribes without a position

	// dirty are channels whose broker interest may need dropping, settled
	// by one reconciler goroutine. A set, so it is bounded by the number of
	// channels however many unsubscribes arrive.
	dirtyMu   sync.Mutex
	dirty     map[string]struct{}
	dirtyWake chan struct{}
	stop      chan struct{}
	closeOnce sync.Once
	reconDone chan struct{}
	started   atomic.Bool
}

// channel is the set of loops with at least one subscriber. Its fields
// are guarded by Hub.mu (inBroker is written under the channel's interest
// lock as well).
type channel struct {
	loops    []*loopSubs
	subs     atomic.Int32 // subscriptions on every loop (TopChannels)
	wanted   bool         // some loop has subscribers
	inBroker bool         // broker.Subscribe done
}

// loopSubs is one event loop's subscribers of one channel. Which loopSubs
// a channel has is guarded by Hub.mu; list is touched only by that loop.
//
// It is 48 bytes (a malloc size class), as a node holds one per channel
// per loop: what the inbox needs to know of it while publications are
// queued lives in the inbox, and goes with the queue.
type loopSubs struct {
	name  string // the channel
	inbox *inbox // the loop's; inbox.loop is the loop
	list  []*Subscription
}

// Subscription is one session's subscription to one channel. It is owned by
// the session's loop. It is small (48 bytes): a node may hold millions.
type Subscription struct {
	sess    *session.Session
	ls      *loopSubs
	last    uint64                // highest offset sent to the client
	held    *[]broker.Publication // while pending: live publications held back
	slot    int32                 // index in ls.list
	pending bool                  // recovering: live publications are held in held
	closed  bool
	// regap: continuity was lost while pending, possibly after the
	// history being replayed was read; replay resyncs once it is done.
	regap bool
}

// Channel is the subscribed channel's name.
func (s *Subscription) Channel() string { return s.ls.name }

// Removed reports whether the subscription was removed (unsubscribed, or
// its subscribe failed).
func (s *Subscription) Removed() bool { return s.closed }

// Session returns the subscribed session.
func (s *Subscription) Session() *session.Session { return s.sess }

// New returns a hub delivering publications from cfg.Broker. Call Start.
func New(cfg Config) *Hub {
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 10_000
	}
	if cfg.InboxPublications <= 0 {
		cfg.InboxPublications = DefaultInboxPublications
	}
	if cfg.InboxBytes <= 0 {
		cfg.InboxBytes = DefaultInboxBytes
	}
	if cfg.AdmitWait <= 0 {
		cfg.AdmitWait = DefaultAdmitWait
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	h := &Hub{
		cfg:       cfg,
		broker:    cfg.Broker,
		log:       cfg.Logger,
		channels:  map[string]*channel{},
		inboxes:   map[*session.Loop]*inbox{},
		pool:      cfg.Pool,
		dirty:     map[string]struct{}{},
		dirtyWake: make(chan struct{}, 1),
		stop:      make(chan struct{}),
		reconDone: make(chan struct{}),
		metrics:   newMetrics(),
	}
	_, h.inline = cfg.Broker.(broker.Nonblocking)
	if h.pool == nil {
		h.pool = workpool.New(workpool.Config{Logger: cfg.Logger})
		h.ownPool = true
	}
	return h
}

// Start starts the reconciler and the broker's delivery into the hub.
func (h *Hub) Start() error {
	h.started.Store(true)
	go h.reconcileLoop()
	return h.broker.Start(h.Deliver)
}

// Close stops the reconciler (and the worker pool, when the hub started
// its own); later calls do nothing. The broker is closed by its owner.
func (h *Hub) Close() {
	h.closeOnce.Do(func() {
		close(h.stop)
		if h.ownPool {
			h.pool.Close(2 * time.Second)
		}
		if !h.started.Load() {
			return
		}
		select {
		case <-h.reconDone:
		case <-time.After(2 * time.Second):
			h.log.Warn("hub: reconciler still inside a broker call at shutdown")
		}
	})
}

// Pool is the worker pool broker calls run on.
func (h *Hub) Pool() *workpool.Pool { return h.pool }

// markDirty asks the reconciler to settle name's broker interest.
func (h *Hub) markDirty(name string) {
	h.dirtyMu.Lock()
	h.dirty[name] = struct{}{}
	h.dirtyMu.Unlock()
	select {
	case h.dirtyWake <- struct{}{}:
	default:
	}
}

// reconcileLoop drops the broker interest of channels their last local
// subscriber left, one at a time, off the loops.
func (h *Hub) reconcileLoop() {
	defer close(h.reconDone)
	for {
		select {
		case <-h.stop:
			return
		case <-h.dirtyWake:
		}
		for {
			h.dirtyMu.Lock()
			var name string
			found := false
			for n := range h.dirty {
				name, found = n, true
				delete(h.dirty, n)
				break
			}
			if len(h.dirty) == 0 && found {
				h.dirty = map[string]struct{}{} // a drained map keeps its buckets
			}
			h.dirtyMu.Unlock()
			if !found {
				break
			}
			if err := h.reconcile(name); err != nil {
				h.log.Warn("broker unsubscribe", "channel", name, "err", err)
				select {
				case <-h.stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
				h.markDirty(name) // retried: the node must not keep the channel's traffic
			}
		}
	}
}

// Stats are the hub's counters.
type Stats struct {
	Channels      int
	Subscriptions int64
	Publications  int64
	Delivered     int64
	Gaps          int64 // continuity losses reported by the broker
	Conflated     int64 // deliveries skipped by conflation (and publications a full inbox replaced)
	Overflows     int64 // publications a full inbox did not take; their subscribers recovered from history
	Refused       int64 // publishes refused as overloaded (Admit, Overloaded)
}

// Stats returns a snapshot of the hub's counters.
func (h *Hub) Stats() Stats {
	h.mu.RLock()
	n := len(h.channels)
	h.mu.RUnlock()
	return Stats{
		Channels: n, Subscriptions: h.subscriptions.Load(), Publications: h.publications.Load(),
		Delivered: h.delivered.Load(), Gaps: h.gaps.Load(),
		Conflated: h.conflated.Load(), Overflows: h.overflows.Load(), Refused: h.refused.Load(),
	}
}

// Deliver is the broker's callback: it encodes p once and queues it in
// the inbox of each event loop with subscribers of the channel (see
// inbox.go); each loop then delivers everything queued with one write per
// subscriber. It may run on any goroutine and never blocks. A gap (p.Gap)
// makes every local subscriber of the channel recover from history.
func (h *Hub) Deliver(p broker.Publication) {
	var stack [16]*loopSubs
	loops := stack[:0]
	h.mu.RLock()
	if ch := h.channels[p.Channel]; ch != nil {
		loops = append(loops, ch.loops...)
	}
	h.mu.RUnlock()
	if p.Gap {
		h.gaps.Add(1)
		for _, ls := range loops {
			h.pushGap(ls.inbox, ls)
		}
		return
	}
	h.publications.Add(1)
	if len(loops) == 0 {
		return
	}
	f := encode(p, h.cfg.Compression, h.cfg.CompressionMinSize, len(loops))
	conflate := h.cfg.Conflate != nil && h.cfg.Conflate(p.Channel) // once per publication, not per loop
	for _, ls := range loops {
		h.push(ls.inbox, ls, p, f, conflate)
	}
}

// recoverLoop runs on sl's loop after the broker lost continuity on its
// channel (or the loop's inbox overflowed): each subscriber re-reads the
// history after the last offset it was sent, holding live publications
// back meanwhile, exactly as a subscribe with since does; one already
// recovering does so when that recovery ends.
func (h *Hub) recoverLoop(sl *loopSubs) {
	for i := len(sl.list) - 1; i >= 0; i-- {
		if i >= len(sl.list) {
			continue
		}
		switch sub := sl.list[i]; {
		case sub.closed:
		case sub.pending:
			// Its history may have been read before what was lost was
			// stored: it recovers again once this recovery is done.
			sub.regap = true
		default:
			h.resync(sub)
		}
	}
}

// resync re-runs recovery for a live subscription. A subscriber whose
// history cannot be read, or no longer reaches back to what it was sent,
// is closed with 1012 (service restart) so its client reconnects and
// learns from the subscribe ack (recovered:false) that it missed messages:
// a connection is never left open over a silent hole.
func (h *Hub) resync(sub *Subscription) {
	sub.pending = true
	sub.held = nil // allocated when the first publication is held back
	from := sub.last
	s := sub.sess
	finish := func(rec broker.Recovery, err error) {
		if sub.closed {
			return
		}
		if err != nil || !rec.Recovered {
			sub.pending = false
			sub.held = nil
			s.Abort(session.CloseResync)
			return
		}
		h.replay(sub, rec, true, from)
	}
	h.run(s, func() (broker.Recovery, error) {
		ctx, cancel := h.callContext()
		defer cancel()
		return h.broker.Recover(ctx, sub.Channel(), from, true)
	}, finish)
}

// callContext bounds one broker call. A broker that never blocks needs
// no bound, and a subscribe then allocates no timer.
func (h *Hub) callContext() (context.Context, context.CancelFunc) {
	if h.inline {
		return context.Background(), func() {}
	}
	return context.WithTimeout(context.Background(), 10*time.Second)
}

// run calls call off the loop (on the worker pool) and then done on s's
// loop; with a broker that never blocks, both run here and now. A full
// pool calls done with ErrBusy at once.
func (h *Hub) run(s *session.Session, call func() (broker.Recovery, error), done func(broker.Recovery, error)) {
	if h.inline {
		rec, err := call()
		done(rec, err)
		return
	}
	accepted := h.pool.Submit(func() {
		rec, err := call()
		if s.Loop().Exec(func() { done(rec, err) }) != nil {
			return // the engine is stopping; the session goes with it
		}
	})
	if !accepted {
		done(broker.Recovery{}, ErrBusy)
	}
}

// SubscribeResult is what a subscribe came to, handed to the ack callback
// on the session's loop before any message of the channel is sent.
type SubscribeResult struct {
	Offset    uint64 // the channel's top offset at subscribe time
	Recovered bool   // false when since reached back past the history (or above the top)
	Err       error
}

// Subscribe subscribes s to channel. With since != nil the publications
// after *since are replayed first. ack runs on s's loop once the
// subscription is live (or failed); the hub then sends the replayed
// publications and flushes. It returns nil when the subscribe failed at
// once (ack has then already run with the error), so that nothing of a
// refused subscription is left behind. Must run on s's loop.
func (h *Hub) Subscribe(s *session.Session, channelName string, since *uint64, ack func(SubscribeResult)) *Subscription {
	sl := h.loopSubsOf(channelName, s.Loop())
	if sl == nil {
		ack(SubscribeResult{Err: ErrTooManyChannels})
		return nil
	}
	sub := &Subscription{sess: s, ls: sl, pending: true}
	sub.slot = int32(len(sl.list))
	sl.list = append(sl.list, sub)
	h.subscriptions.Add(1)
	var from uint64
	history := since != nil
	if history {
		from = *since
	}
	// Interest is settled before the history is read: whatever is
	// published after the read reaches this node live, and until then the
	// subscription holds live messages back.
	finish := func(rec broker.Recovery, err error) {
		h.finishSubscribe(sub, rec, err, history, from, ack)
	}
	if !history && !h.inline {
		// Only the top is needed: one read serves every subscribe of the
		// channel that arrived while the previous one ran.
		h.readTop(s, channelName, finish)
	} else {
		h.run(s, func() (broker.Recovery, error) {
			ctx, cancel := h.callContext()
			defer cancel()
			if err := h.reconcile(channelName); err != nil {
				return broker.Recovery{}, err
			}
			return h.broker.Recover(ctx, channelName, from, history)
		}, finish)
	}
	if sub.closed {
		return nil // refused at once (a full worker pool, a broker error)
	}
	return sub
}

// finishSubscribe runs on the subscription's loop.
func (h *Hub) finishSubscribe(sub *Subscription, rec broker.Recovery, err error, history bool, since uint64, ack func(SubscribeResult)) {
	s := sub.sess
	if sub.closed {
		ack(SubscribeResult{Err: ErrUnsubscribed})
		// The ack's reply sits in the loop's shared output buffer: flush it
		// now, or the next session to flush on this loop writes it into its
		// own connection.
		if !s.Flush() {
			s.Abort(session.ClosePolicy)
		}
		return
	}
	if err != nil {
		h.Unsubscribe(sub)
		ack(SubscribeResult{Err: err})
		s.Flush()
		return
	}
	recovered := !history || rec.Recovered
	if history && since > rec.Top {
		// The client holds an offset this channel never reached (a reset
		// store, a clock step, a bogus since): it is told, and positioned
		// at the top, so every later publication reaches it.
		recovered = false
	}
	ack(SubscribeResult{Offset: rec.Top, Recovered: recovered})
	h.replay(sub, rec, history, since)
}

// replay ends a recovery on the subscription's loop: the history after
// since, then the live publications held back meanwhile, each offset at
// most once, then one flush.
func (h *Hub) replay(sub *Subscription, rec broker.Recovery, history bool, since uint64) {
	s := sub.sess
	sub.pending = false
	sub.last = rec.Top
	var buf []byte
	if history && since <= rec.Top {
		// The client has everything up to since; a broker whose history
		// starts below it must not send those again.
		sub.last = since
		for _, p := range rec.Publications {
			buf = h.sendOne(sub, p, buf)
		}
		if sub.last < rec.Top {
			sub.last = rec.Top
		}
	}
	if sub.held != nil {
		for _, p := range *sub.held {
			buf = h.sendOne(sub, p, buf)
		}
	}
	sub.held = nil
	if !s.Flush() {
		s.Abort(session.ClosePolicy)
		return
	}
	if sub.regap && !sub.closed {
		sub.regap = false
		h.resync(sub)
	}
}

func (h *Hub) sendOne(sub *Subscription, p broker.Publication, buf []byte) []byte {
	if p.Offset <= sub.last {
		return buf
	}
	sub.last = p.Offset
	buf = writeReplayed(sub.sess, p, buf)
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
	sl := sub.ls
	last := len(sl.list) - 1
	moved := sl.list[last]
	sl.list[sub.slot] = moved
	moved.slot = sub.slot
	sl.list[last] = nil
	sl.list = sl.list[:last]
	h.mu.RLock()
	if ch := h.channels[sl.name]; ch != nil { // present while sl is one of its loops
		ch.subs.Add(-1)
	}
	h.mu.RUnlock()
	h.subscriptions.Add(-1)
	if len(sl.list) == 0 {
		sl.list = nil
		h.removeLoop(sl)
		h.markDirty(sl.name)
	}
}

// loopSubsOf returns loop's subscriber list of the channel called name,
// registering it (and the channel) on first use; nil when that would pass
// MaxChannels. It counts the subscription the caller is about to add. Must
// run on loop: only loop creates or removes its own list.
func (h *Hub) loopSubsOf(name string, loop *session.Loop) *loopSubs {
	h.mu.RLock()
	if ch := h.channels[name]; ch != nil {
		for _, ls := range ch.loops {
			if ls.inbox.loop == loop {
				ch.subs.Add(1)
				h.mu.RUnlock()
				return ls
			}
		}
	}
	h.mu.RUnlock()
	h.mu.Lock()
	defer h.mu.Unlock()
	ch := h.channels[name]
	if ch == nil {
		if max := h.cfg.MaxChannels; max > 0 && len(h.channels) >= max {
			return nil
		}
		ch = &channel{}
		h.channels[name] = ch
	}
	ls := &loopSubs{name: name, inbox: h.inboxOf(loop)}
	ch.subs.Add(1)
	ch.loops = append(ch.loops, ls)
	ch.wanted = true
	return ls
}

// removeLoop drops ls, whose last subscriber left, from its channel.
func (h *Hub) removeLoop(ls *loopSubs) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch := h.channels[ls.name]
	if ch == nil {
		return
	}
	for i, l := range ch.loops {
		if l == ls {
			last := len(ch.loops) - 1
			ch.loops[i] = ch.loops[last]
			ch.loops[last] = nil
			ch.loops = ch.loops[:last]
			break
		}
	}
	if len(ch.loops) == 0 {
		// The entry stays until the reconcile that Unsubscribe queues
		// drops it under interestMu: deleting it here, while a reconcile
		// may be inside broker.Subscribe, would orphan the interest that
		// call registers.
		ch.loops = nil
		ch.wanted = false
	}
}

// reconcile brings the broker's interest in name in line with whether any
// loop has subscribers. It runs on the worker pool only (a broker call may
// block), takes interestMu, and never holds Hub.mu while calling the broker:
// the memory broker calls Deliver (which takes Hub.mu) while holding its
// channel lock, and Subscribe takes that lock.
func (h *Hub) reconcile(name string) error {
	_, _, err := h.reconcileTop(name)
	return err
}

// reconcileTop is reconcile that also returns, with fresh set, the
// channel's top when it subscribed the node through a
// broker.TopSubscriber (which read it after registering the interest).
func (h *Hub) reconcileTop(name string) (top uint64, fresh bool, err error) {
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
		return 0, false, nil
	}
	if wanted == in {
		h.dropIfUnused(name, ch)
		return 0, false, nil
	}
	switch ts, ok := h.broker.(broker.TopSubscriber); {
	case wanted && ok:
		top, fresh, err = ts.SubscribeTop(name)
	case wanted:
		err = h.broker.Subscribe(name)
	default:
		err = h.broker.Unsubscribe(name)
	}
	if err != nil {
		return 0, false, err
	}
	h.mu.Lock()
	ch.inBroker = wanted
	h.mu.Unlock()
	h.dropIfUnused(name, ch)
	return top, fresh, nil
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
		h.channels = shrunk(h.channels, &h.channelsPeak)
	}
	h.mu.Unlock()
}

// shrunk returns m, or a copy of it once it holds less than a quarter of
// the most it held (at least 1,024): a Go map keeps its buckets after
// deletes, so a burst of short-lived channels would otherwise pin their
// memory for good. peak tracks the most m held since the last copy.
func shrunk[K comparable, V any](m map[K]V, peak *int) map[K]V {
	*peak = max(*peak, len(m)+1) // +1: the entry just deleted
	if *peak < 1024 || len(m) >= *peak/4 {
		return m
	}
	c := make(map[K]V, len(m))
	for k, v := range m {
		c[k] = v
	}
	*peak = len(c)
	return c
}
