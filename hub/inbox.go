package hub

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-ws/herald/broker"
	"github.com/herald-ws/herald/session"
)

// ErrOverloaded refuses a publish while an event loop that must deliver it
// is too far behind: nothing was published, and a retry later is safe.
var ErrOverloaded = errors.New("hub: overloaded, retry later")

// Inbox bounds, per event loop, and how long Admit waits for room.
const (
	DefaultInboxPublications = 4096
	DefaultInboxBytes        = 64 << 20
	DefaultAdmitWait         = time.Second
)

// inbox is one event loop's queue of publications waiting to be delivered
// by it. Deliver appends under mu and hands the loop one drain task when
// the inbox was empty; the drain takes everything queued at once and
// delivers it with one write per subscriber (see drain). Its bounds are
// Config.InboxPublications and InboxBytes: a publication that would pass
// them is not queued (see push).
type inbox struct {
	loop  *session.Loop
	index int // order of creation, the metrics' loop label

	mu   sync.Mutex
	q    []queued
	live int // entries of q not superseded (dead ones wait for the drain)
	dead int // superseded entries of q, dropped by compact
	// compactions counts compact calls (diagnostics: compaction must stay
	// amortised over the replacements that make dead entries).
	compactions int
	bytes       int // frame bytes of the live entries
	scheduled   bool
	spare       []queued // the drained batch's slice, reused

	depth      atomic.Int64 // live entries, for Admit and the gauges
	depthBytes atomic.Int64
	// room is closed (and replaced) when a drain leaves the inbox below
	// its high-water mark while an Admit waits on it (roomWanted).
	// Guarded by mu.
	room       chan struct{}
	roomWanted bool

	// Guarded by mu, and emptied when the queue is taken, so they hold
	// at most the queue's own entries (nothing per channel outlives a
	// drain): conf is where the newest publication of each conflated
	// channel sits in q (none once a gap note follows it), gaps the
	// channels with a gap note queued.
	conf map[*loopSubs]int32
	gaps map[*loopSubs]struct{}

	// Owned by the loop's goroutine (the drain).
	touched  []*session.Session
	early    []queued               // see peekRun; emptied after each run
	gathered int                    // bytes queued on touched sessions since they were corked
	seen     map[*loopSubs]struct{} // the conflation pass's channels seen, emptied after it
	scratch  []byte                 // writeLive's
	drainFn  func()
}

// queued is one entry of an inbox.
type queued struct {
	ls *loopSubs
	p  broker.Publication
	f  *sharedFrame
	// conflate: the channel is conflated (Config.Conflate), decided
	// once when the publication is queued.
	conflate bool
	// gap: ls lost publications (the inbox was full); its subscribers
	// recover from history instead.
	gap bool
	// dead: superseded by a newer publication of a conflated channel
	// while the inbox was full; its frame is already released.
	dead bool
	// superseded: a newer publication of the same conflated channel is in
	// the same drain; subscribers that are behind skip this one.
	superseded bool
	wrote      bool // the drain queued it for at least one subscriber
}

func (h *Hub) newInbox(l *session.Loop, index int) *inbox {
	in := &inbox{loop: l, index: index, room: make(chan struct{}),
		conf: map[*loopSubs]int32{}, gaps: map[*loopSubs]struct{}{}, seen: map[*loopSubs]struct{}{}}
	in.drainFn = func() { h.drain(in) }
	return in
}

// inboxOf returns loop's inbox, creating it on first use. Callers hold
// h.mu for writing.
func (h *Hub) inboxOf(l *session.Loop) *inbox {
	in := h.inboxes[l]
	if in == nil {
		in = h.newInbox(l, len(h.inboxes))
		h.inboxes[l] = in
		h.inboxList.Store(appendInbox(h.inboxList.Load(), in))
	}
	return in
}

func appendInbox(old *[]*inbox, in *inbox) *[]*inbox {
	var list []*inbox
	if old != nil {
		list = append(list, *old...)
	}
	list = append(list, in)
	return &list
}

// highWater is the depth (in publications or bytes) past which a loop
// counts as behind for Admit: three quarters of the inbox bounds, so a
// publish admitted at the mark still finds room when it arrives.
func (h *Hub) overHighWater(in *inbox) bool {
	return in.depth.Load()*4 >= int64(h.cfg.InboxPublications)*3 ||
		in.depthBytes.Load()*4 >= int64(h.cfg.InboxBytes)*3
}

// push queues p (encoded as f, one reference of which belongs to this
// loop) for ls's loop. It never blocks on the loop. Past the inbox bounds
// the publication is not queued: for a conflated channel it replaces the
// channel's publication still queued, if any (a loop that far behind
// gets the newest only); otherwise ls's subscribers are marked to recover
// from history, which holds what they missed, so nothing is lost silently.
// conflate says whether the channel is conflated (Config.Conflate).
func (h *Hub) push(in *inbox, ls *loopSubs, p broker.Publication, f *sharedFrame, conflate bool) {
	size := len(f.plain)
	schedule := false
	in.mu.Lock()
	full := in.live >= h.cfg.InboxPublications || (in.live > 0 && in.bytes+size > h.cfg.InboxBytes)
	if !full {
		in.q = append(in.q, queued{ls: ls, p: p, f: f, conflate: conflate})
		in.live++
		in.bytes += size
		if conflate {
			in.conf[ls] = int32(len(in.q) - 1)
		}
	} else if at, ok := in.conf[ls]; conflate && ok && in.bytes-len(in.q[at].f.plain)+size <= h.cfg.InboxBytes {
		old := &in.q[at]
		old.dead = true
		in.bytes -= len(old.f.plain) // before the release: the frame may be reused at once
		old.f.release()
		old.f = nil
		in.dead++
		in.q = append(in.q, queued{ls: ls, p: p, f: f, conflate: true})
		in.bytes += size
		in.conf[ls] = int32(len(in.q) - 1)
		h.conflated.Add(1)
		if in.dead >= 64 && in.dead >= in.live {
			in.compact() // amortised: at least as many dead entries as live ones go
		}
	} else {
		f.release()
		h.overflows.Add(1)
		in.queueGap(ls)
	}
	if !in.scheduled {
		in.scheduled = true
		schedule = true
	}
	in.depth.Store(int64(in.live))
	in.depthBytes.Store(int64(in.bytes))
	in.mu.Unlock()
	if schedule {
		// An Exec error means the engine is stopping: the loop's sessions
		// go with it, and the queued frames are left to the collector.
		_ = in.loop.Exec(in.drainFn)
	}
}

// queueGap queues a gap note for ls unless one is queued already; no
// publication queued before it may be replaced afterwards. Callers hold
// mu.
func (in *inbox) queueGap(ls *loopSubs) bool {
	if _, ok := in.gaps[ls]; ok {
		return false
	}
	in.gaps[ls] = struct{}{}
	in.q = append(in.q, queued{ls: ls, gap: true})
	delete(in.conf, ls)
	return true
}

// pushGap queues a note that ls's channel lost continuity in the broker:
// the drain has its subscribers recover from history, in order with the
// publications queued before it. It is not bounded by the inbox limits:
// a loopSubs has at most one such note queued.
func (h *Hub) pushGap(in *inbox, ls *loopSubs) {
	in.mu.Lock()
	queue := in.queueGap(ls)
	schedule := queue && !in.scheduled
	if schedule {
		in.scheduled = true
	}
	in.mu.Unlock()
	if schedule {
		_ = in.loop.Exec(in.drainFn)
	}
}

// compact drops the dead entries of a full inbox whose conflated channels
// keep replacing their queued publication. Callers hold mu.
func (in *inbox) compact() {
	in.compactions++
	q := in.q[:0]
	for _, it := range in.q {
		if it.dead {
			continue
		}
		q = append(q, it)
		switch {
		case it.gap:
			delete(in.conf, it.ls)
		case it.conflate:
			in.conf[it.ls] = int32(len(q) - 1)
		}
	}
	clear(in.q[len(q):])
	in.q = q
	in.dead = 0
}

// emptied empties m for reuse, or replaces it when it grew large: a Go
// map keeps its buckets when cleared, and a burst over many channels must
// not pin them.
func emptied[K comparable, V any](m map[K]V) map[K]V {
	if len(m) > 1024 {
		return make(map[K]V)
	}
	clear(m)
	return m
}

// take swaps the inbox's queue for an empty one and returns it.
func (in *inbox) take() []queued {
	in.mu.Lock()
	batch := in.q
	in.q = in.spare[:0]
	in.spare = nil
	in.live, in.bytes, in.dead = 0, 0, 0
	in.conf = emptied(in.conf)
	in.gaps = emptied(in.gaps)
	in.depth.Store(0)
	in.depthBytes.Store(0)
	in.mu.Unlock()
	return batch
}

// finish returns the drained batch's slice and hands the loop the next
// drain when more publications arrived meanwhile.
func (in *inbox) finish(batch []queued, h *Hub) {
	clear(batch)
	in.mu.Lock()
	if cap(batch) <= 4*h.cfg.InboxPublications {
		in.spare = batch[:0]
	}
	again := len(in.q) > 0
	in.scheduled = again
	if in.roomWanted && !h.overHighWater(in) {
		close(in.room)
		in.room = make(chan struct{})
		in.roomWanted = false
	}
	in.mu.Unlock()
	if again {
		_ = in.loop.Exec(in.drainFn)
	}
}

// drain runs on in's loop: it delivers everything queued so far, each
// subscriber corked so that all of the batch meant for one connection
// goes out with one write, in the order the publications arrived.
func (h *Hub) drain(in *inbox) {
	batch := in.take()
	start := time.Now()
	if len(batch) > 0 && !batch[0].p.Time.IsZero() {
		h.metrics.InboxLag.Observe(max(start.Sub(batch[0].p.Time), 0).Seconds())
	}
	// Conflation: mark every publication of a conflated channel that a
	// newer one of the same channel follows in this batch.
	for i := len(batch) - 1; i >= 0; i-- {
		it := &batch[i]
		if it.conflate && !it.gap && !it.dead {
			if _, ok := in.seen[it.ls]; ok {
				it.superseded = true
			} else {
				in.seen[it.ls] = struct{}{}
			}
		}
	}
	in.seen = emptied(in.seen)
	var sent int64
	for i := 0; i < len(batch); {
		it := &batch[i]
		switch {
		case it.dead:
			i++
		case it.gap:
			// Recovery may replay history into these sessions, inline
			// with a broker that never blocks: what they gathered goes
			// out first, so the replay is neither reordered nor held
			// corked outside the drain's budget.
			in.uncorkAll()
			h.recoverLoop(it.ls)
			i++
		default:
			j := runEnd(batch, i)
			sent += h.deliverRun(in, batch[i:j], j == len(batch))
			i = j
		}
	}
	in.uncorkAll()
	msgs, writes := in.loop.Gathered()
	end := time.Now()
	for i := range batch {
		if it := &batch[i]; !it.dead && !it.gap {
			if it.wrote && !it.p.Time.IsZero() {
				h.metrics.Latency.Observe(max(end.Sub(it.p.Time), 0).Seconds())
			}
			it.f.release()
		}
	}
	h.delivered.Add(sent)
	h.metrics.observeDrain(start, end, msgs, writes)
	in.finish(batch, h)
}

// runEnd returns the end of the run of batch that starts at i: the
// publications of i's channel that follow it with nothing queued between
// them but superseded (dead) entries.
func runEnd(batch []queued, i int) int {
	ls := batch[i].ls
	j := i + 1
	for ; j < len(batch); j++ {
		if it := &batch[j]; !it.dead && (it.gap || it.ls != ls) {
			break
		}
	}
	return j
}

// deliverRun queues a run of one channel's publications (see runEnd) on
// each of its loop's subscribers of the channel and returns how many
// deliveries it queued. It goes subscriber by subscriber, all of the run
// for one before the next: the gather budget is checked between
// subscribers, so however large the run, a subscriber's part of it goes
// out in one write (up to session.GatherLimit), and what is written
// early when the budget fills is whole runs, not slices of them. Nothing
// else is queued in between, so per-connection order is the batch's.
//
// last says the run ends the batch. Then publications of the channel
// queued since the drain began are delivered early to the subscribers
// still to come (see peekRun), and the next drain skips them there by
// offset: the last subscriber of a publication is reached one drain's
// time after it was queued, where it would otherwise wait for the drain
// under way to end and then for its own.
func (h *Hub) deliverRun(in *inbox, run []queued, last bool) (sent int64) {
	sl := run[0].ls
	peek := last && !run[0].conflate
	defer in.endRun()
	// Backwards, with a bounds check: a subscriber can be removed while
	// we iterate (a failed write closes its session), and removal swaps
	// the last entry into its slot, one we have already visited.
	for i, visited := len(sl.list)-1, 0; i >= 0; i, visited = i-1, visited+1 {
		if i >= len(sl.list) {
			continue
		}
		if peek && visited > 0 && visited%peekEvery == 0 {
			in.peekRun(sl)
		}
		sub := sl.list[i]
		for k := range run {
			it := &run[k]
			if it.dead {
				continue
			}
			if sub.closed {
				break
			}
			p := it.p
			if sub.pending {
				if sub.held == nil {
					sub.held = new([]broker.Publication) // the first held back
				}
				if len(*sub.held) >= h.cfg.MaxPending {
					sub.sess.Abort(session.CloseSlowConsumer)
					break
				}
				*sub.held = append(*sub.held, p)
				continue
			}
			if p.Offset <= sub.last {
				continue // already sent (history, or a publication that raced the subscribe)
			}
			if it.superseded && sub.sess.Behind() {
				h.conflated.Add(1)
				continue // a newer publication of the channel follows in this batch
			}
			in.send(sub, p, it.f)
			it.wrote = true
			sent++
		}
		// Then what arrived since the drain began, after all of the
		// batch.
		for k := range in.early {
			it := &in.early[k]
			if sub.closed || sub.pending || it.p.Offset <= sub.last {
				continue // pending: held back by the next drain, with the rest
			}
			in.send(sub, it.p, it.f)
			sent++
		}
		if last {
			// Nothing later in the batch is for this subscriber: its part
			// goes out now. The drain's writes are then spread over its
			// visits instead of all at its end, which is what lets peekRun
			// catch what arrives meanwhile.
			uncork(sub.sess)
			continue
		}
		// What corked sessions hold is bounded per loop as well as per
		// connection: past DrainGatherBudget they are written now, in
		// order, and the drain corks them again as it goes on.
		if in.gathered >= DrainGatherBudget {
			in.uncorkAll()
		}
	}
	return sent
}

// send queues p (encoded as f) on sub's session, corked, and counts it
// against the drain's gather budget. Corked again each time: a write at
// GatherLimit or one that failed may have ended the cork.
func (in *inbox) send(sub *Subscription, p broker.Publication, f *sharedFrame) {
	sub.last = p.Offset
	if sub.sess.Cork() {
		in.touched = append(in.touched, sub.sess)
	}
	in.scratch = writeLive(sub.sess, p, f, in.scratch)
	in.gathered += len(f.plain)
}

// uncork writes what s gathered; a session whose peer is gone is closed.
func uncork(s *session.Session) {
	if !s.Uncork() {
		s.Abort(session.CloseSlowConsumer)
	}
}

// peekEvery is how many subscribers a run visits between looks at what
// was queued since its drain began (peekRun).
const peekEvery = 64

// peekRun appends to in.early the publications of ls queued since the
// drain took its batch, as long as nothing else was queued before them (a
// subscriber of another channel too must get that first): the drain under
// way delivers them to the subscribers it has still to visit, and they
// stay queued for the next drain, which delivers them to the others. A
// gap note or a conflated channel ends it: those are the next drain's.
// Each one kept holds a reference to its frame until endRun.
func (in *inbox) peekRun(ls *loopSubs) {
	if in.depth.Load() <= int64(len(in.early)) {
		return // nothing new: no lock
	}
	in.mu.Lock()
	for k := len(in.early); k < len(in.q); k++ {
		it := in.q[k]
		if it.gap || it.dead || it.conflate || it.ls != ls {
			break
		}
		it.f.refs.Add(1)
		in.early = append(in.early, it)
	}
	in.mu.Unlock()
}

// endRun drops what peekRun kept for a run.
func (in *inbox) endRun() {
	for k := range in.early {
		in.early[k].f.release()
	}
	clear(in.early)
	in.early = in.early[:0]
}

// DrainGatherBudget bounds the bytes one drain gathers over all the
// corked sessions of its loop before it writes them (each session also
// writes at session.GatherLimit): a large batch for many subscribers
// never holds more than this at once.
const DrainGatherBudget = 4 << 20

// uncorkAll writes what every corked session gathered, each with one
// write; a session whose peer is gone is closed.
func (in *inbox) uncorkAll() {
	for i, s := range in.touched {
		uncork(s)
		in.touched[i] = nil
	}
	in.touched = in.touched[:0]
	in.gathered = 0
}

// Admit waits, up to the end of ctx or Config.AdmitWait, until every event
// loop that would deliver a publication to channel has room for it, and
// returns ErrOverloaded if one stays behind. A publish that Admit refused
// was not made; one it admitted is delivered (or, should the inbox fill
// up regardless, recovered from history by its subscribers). Safe from
// any goroutine.
func (h *Hub) Admit(ctx context.Context, channel string) error {
	in := h.behind(channel)
	if in == nil {
		return nil
	}
	timer := time.NewTimer(h.cfg.AdmitWait)
	defer timer.Stop()
	for in != nil {
		in.mu.Lock()
		room := in.room
		in.roomWanted = true
		in.mu.Unlock()
		if !h.overHighWater(in) {
			in = h.behind(channel)
			continue
		}
		select {
		case <-room:
		case <-ctx.Done():
			h.refused.Add(1)
			return ErrOverloaded
		case <-timer.C:
			h.refused.Add(1)
			return ErrOverloaded
		}
		in = h.behind(channel)
	}
	return nil
}

// Overloaded reports, without waiting, whether a loop that would deliver a
// publication to channel is behind: a client publishing over its own
// connection is told to retry rather than held (the loop it runs on must
// not block). It counts a refusal.
func (h *Hub) Overloaded(channel string) bool {
	if h.behind(channel) == nil {
		return false
	}
	h.refused.Add(1)
	return true
}

// behind returns an inbox of a loop with subscribers of channel that is
// over its high-water mark, or nil.
func (h *Hub) behind(channel string) *inbox {
	h.mu.RLock()
	defer h.mu.RUnlock()
	ch := h.channels[channel]
	if ch == nil {
		return nil
	}
	for _, ls := range ch.loops {
		if h.overHighWater(ls.inbox) {
			return ls.inbox
		}
	}
	return nil
}
