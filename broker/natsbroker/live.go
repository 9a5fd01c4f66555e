package natsbroker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-ws/herald/broker"
)

// maxHeld bounds the live messages a channel keeps while its subscribe is
// still reading the starting point; past it they are dropped and the
// channel is checked against the stream once it is ready.
const maxHeld = 1024

// shard delivers the live messages of the channels that hash to it, one at
// a time, so each channel keeps its order. nats.go's reader pushes into in
// without blocking; when in is full nats.go drops the message and reports
// the subscription as a slow consumer, which the shard treats as a gap.
type shard struct {
	b    *Broker
	in   chan *nats.Msg // the NATS subscriptions' pending queue (capacity Config.ShardQueue)
	wake chan struct{}  // capacity 1: a channel became ready

	mu    sync.Mutex // guards chans, fresh, check, rescan and each chanState's held, ready, fresh, sub and watch
	chans map[string]*chanState
	fresh []*chanState // became ready; their held messages wait for the shard goroutine
	// check holds the channels the periodic check looks at: suspect ones
	// and those watched for drops. The check costs what is flagged, not
	// every channel of the shard: a node with a channel per user has
	// hundreds of thousands.
	check map[*chanState]struct{}
	// rescan: a channel became ready with an epoch that may be older than
	// the stream's; the next check looks at every channel's epoch.
	rescan bool

	// Shard goroutine only.
	checkedEpoch uint64 // the stream epoch every ready channel was last compared with
	polls        int    // drop counters read by checks (tests)
}

// chanState is one subscribed channel's delivery position. Fields below
// "shard goroutine only" are touched only by the shard's goroutine once
// ready is set (before that, only by Subscribe).
type chanState struct {
	channel string
	stored  string // herald.ch.<token>
	live    string // herald.live.<token>

	// Guarded by shard.mu.
	sub   *nats.Subscription
	ready bool
	held  []*nats.Msg
	fresh bool // ready was just set; held messages wait for the shard goroutine

	// suspect: messages may have been dropped on the way (slow consumer,
	// held overflow, reconnect); the periodic check compares the channel's
	// last stored sequence with last.
	suspect atomic.Bool

	// Shard goroutine only (and Subscribe before ready).
	epoch   uint64 // Broker.epoch the positions below belong to
	last    uint64 // sequence of the last publication delivered (or covered by history at subscribe)
	base    uint64 // stream sequence at subscribe when the channel was empty: every message of it is later
	dropped int    // sub.Dropped() at the last check
	// watch (guarded by shard.mu): the subscription is in a slow-consumer
	// episode. nats.go reports the first drop of an episode only, and
	// ends the episode at the next message it queues; until the check
	// sees one queued (Delivered grew) with no drop (Dropped unchanged)
	// in between, it reads the counters on every tick.
	watch        bool
	watchStarted bool  // the counters below hold a check's reading
	delivered    int64 // sub.Delivered() at the last check
}

func newShards(b *Broker, n, queue int) []*shard {
	shards := make([]*shard, n)
	for i := range shards {
		shards[i] = &shard{b: b, in: make(chan *nats.Msg, queue), wake: make(chan struct{}, 1), chans: map[string]*chanState{}, check: map[*chanState]struct{}{}}
	}
	return shards
}

// shardOf hashes channel (FNV-1a) to its shard.
func (b *Broker) shardOf(channel string) *shard {
	h := uint32(2166136261)
	for i := 0; i < len(channel); i++ {
		h = (h ^ uint32(channel[i])) * 16777619
	}
	return b.shards[h%uint32(len(b.shards))]
}

func (s *shard) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// markSuspect flags the channel whose live subject is subject, which
// nats.go reported as a slow consumer, for the next check against the
// stream, and watches its drops until the episode ends; with subject
// empty (a reconnect) it flags all of the shard's channels.
func (s *shard) markSuspect(subject string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if subject != "" {
		if st := s.chans[subject]; st != nil {
			st.suspect.Store(true)
			st.watch, st.watchStarted = true, false
			s.check[st] = struct{}{}
		}
		return
	}
	for _, st := range s.chans {
		st.suspect.Store(true)
		s.check[st] = struct{}{}
	}
}

func (s *shard) run(stop <-chan struct{}, done *sync.WaitGroup) {
	defer done.Done()
	tick := time.NewTicker(s.b.cfg.GapCheckInterval)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case m := <-s.in:
			s.handle(m)
		case <-s.wake:
			s.drainFresh()
		case <-tick.C:
			s.drainQueue()
			s.checkSuspects()
		}
	}
}

// drainQueue delivers what is already queued, and what channels that just
// became ready held, before a check looks at the stream: a queued message
// needs no round trip to deliver.
func (s *shard) drainQueue() {
	for n := len(s.in); n > 0; n-- {
		s.handle(<-s.in)
	}
	s.drainFresh()
}

// handle routes one live message to its channel's state.
func (s *shard) handle(m *nats.Msg) {
	s.mu.Lock()
	st := s.chans[m.Subject]
	if st == nil { // unsubscribed since
		s.mu.Unlock()
		return
	}
	if !st.ready {
		if len(st.held) < maxHeld {
			st.held = append(st.held, m)
		} else {
			st.suspect.Store(true)
			s.check[st] = struct{}{}
		}
		s.mu.Unlock()
		return
	}
	var held []*nats.Msg
	if st.fresh {
		held, st.held, st.fresh = st.held, nil, false
	}
	s.mu.Unlock()
	for _, h := range held {
		s.live(st, h)
	}
	s.live(st, m)
}

// drainFresh delivers the messages held for channels that became ready.
func (s *shard) drainFresh() {
	type work struct {
		st   *chanState
		msgs []*nats.Msg
	}
	var todo []work
	s.mu.Lock()
	for _, st := range s.fresh {
		if st.fresh {
			todo = append(todo, work{st, st.held})
			st.held, st.fresh = nil, false
		}
	}
	s.fresh = nil
	s.mu.Unlock()
	for _, w := range todo {
		for _, m := range w.msgs {
			s.live(w.st, m)
		}
	}
}

// live delivers one republished message of st's channel, first repairing
// from the stream whatever the channel published since the last delivered
// message and this node did not receive.
func (s *shard) live(st *chanState, m *nats.Msg) {
	if st.epoch != s.b.epoch.Load() {
		// The stream was recreated: this message's sequence belongs to the
		// new one. Rebase first; the message is then either covered by the
		// history the Gap makes subscribers read, or later than it.
		s.rebase(st, s.b.epoch.Load())
		if st.epoch != s.b.epoch.Load() {
			return // NATS did not answer; covered by the Gap delivered once it does
		}
	}
	seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil {
		s.b.log.Warn("NATS live message without a sequence", "subject", m.Subject)
		return
	}
	if seq <= st.last {
		return // delivered already, by a repair or as part of history
	}
	if prevText := m.Header.Get(jetstream.LastSequenceHeader); prevText != "" {
		prev, err := strconv.ParseUint(prevText, 10, 64)
		switch {
		case err != nil:
			s.b.log.Warn("NATS live message with a bad last sequence", "subject", m.Subject, "value", prevText)
		case prev > st.last:
			// The channel stored messages after the last one delivered
			// here that never arrived: fetch them before this one.
			s.repair(st, prev)
		case prev < st.last && st.suspect.Load():
			// The last delivered message has left the stream, and so has
			// whatever came between it and this one; with messages
			// dropped on the way, some of those may never have been
			// delivered.
			s.gap(st, seq-1)
		}
		if seq <= st.last {
			return // a predecessor at or past the message itself: not the stream's
		}
	}
	s.deliver(st, broker.Publication{Channel: st.channel, Offset: seq, Data: m.Data, Time: time.Now()})
}

func (s *shard) deliver(st *chanState, p broker.Publication) {
	st.last = p.Offset
	s.b.deliver(p)
}

// gap tells the hub that st's publications after the last delivered one,
// up to and including upTo, may be missing.
func (s *shard) gap(st *chanState, upTo uint64) {
	if upTo <= st.last {
		return
	}
	s.b.gaps.Add(1)
	s.b.log.Warn("NATS live delivery gap not repaired; subscribers recover from history", "channel", st.channel, "after", st.last, "through", upTo)
	s.deliver(st, broker.Publication{Channel: st.channel, Offset: upTo, Gap: true})
}

// repair delivers, in order, st's stored messages after st.last up to and
// including target. When they cannot all be had (the stream no longer holds
// them, or NATS does not answer), it delivers a gap through target instead.
func (s *shard) repair(st *chanState, target uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), s.b.cfg.RepairTimeout)
	defer cancel()
	if err := s.fetchThrough(ctx, st, target); err != nil {
		s.b.log.Debug("NATS gap repair failed", "channel", st.channel, "err", err)
		s.gap(st, target)
		return
	}
	s.b.repaired.Add(1)
}

var errRemoved = errors.New("natsbroker: messages of the channel left the stream")

func (s *shard) fetchThrough(ctx context.Context, st *chanState, target uint64) error {
	stream, err := s.b.currentStream()
	if err != nil {
		return err
	}
	complete, err := s.b.unbrokenAfter(ctx, stream, st)
	if err != nil {
		return err
	}
	if !complete {
		return errRemoved
	}
	for seq := st.last + 1; ; {
		m, err := stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(st.stored))
		if err != nil {
			return fmt.Errorf("get %d of %s: %w", seq, st.stored, err)
		}
		if m.Sequence > target {
			return fmt.Errorf("%w: %d is gone", errRemoved, target)
		}
		s.deliver(st, broker.Publication{Channel: st.channel, Offset: m.Sequence, Data: m.Data, Time: m.Time})
		if m.Sequence == target {
			return nil
		}
		seq = m.Sequence + 1
	}
}

// unbrokenAfter reports whether the stream still holds every message of
// st's channel after st.last. Messages leave a channel only from its oldest
// end (MaxAge, MaxMsgsPerSubject with DiscardOld), so the answer is yes
// when message st.last is still stored. Otherwise every stored message of
// the channel is newer than p (st.last, or the stream position at
// subscribe for a channel that was empty then), and none newer than p has
// left when nothing after p has expired (the stream's first sequence is at
// most p+1) and the channel holds fewer messages than its cap (a message
// pushed out by the cap leaves the channel at its cap).
func (b *Broker) unbrokenAfter(ctx context.Context, stream jetstream.Stream, st *chanState) (bool, error) {
	p := st.last
	if p > 0 {
		m, err := stream.GetMsg(ctx, p, jetstream.WithGetMsgSubject(st.stored))
		switch {
		case err == nil && m.Sequence == p:
			return true, nil
		case err != nil && !errors.Is(err, jetstream.ErrMsgNotFound):
			return false, err
		}
	} else {
		p = st.base
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(st.stored))
	if err != nil {
		return false, err
	}
	limit := info.Config.MaxMsgsPerSubject
	n := info.State.Subjects[st.stored]
	return info.State.FirstSeq <= p+1 && (limit <= 0 || n < uint64(limit)), nil
}

// checkSuspects compares, for each suspect channel, the last message the
// stream holds with the last one delivered and repairs the difference: a
// message dropped on the way with none after it is found here rather than
// when the channel's next message arrives. A watched channel whose
// subscription dropped messages since the last check becomes suspect
// first (nats.go reports a slow consumer once per episode, drops are
// counted always), and channels of a recreated stream are rebased. Only
// flagged channels are visited, and every channel's epoch only when the
// stream's changed.
func (s *shard) checkSuspects() {
	var todo, rebase []*chanState
	epoch := s.b.epoch.Load()
	s.mu.Lock()
	if epoch != s.checkedEpoch || s.rescan {
		s.checkedEpoch, s.rescan = epoch, false
		for _, st := range s.chans {
			if st.ready && st.epoch != epoch {
				rebase = append(rebase, st)
			}
		}
	}
	for st := range s.check {
		if !st.ready || st.epoch != epoch {
			continue // checked once ready; rebased above
		}
		if st.watch && st.sub != nil {
			s.polls++
			d, derr := st.sub.Dropped()
			n, nerr := st.sub.Delivered()
			switch {
			case derr != nil || nerr != nil:
				st.watch = false // unsubscribed or closed
			case d != st.dropped:
				st.dropped = d
				st.suspect.Store(true)
			case st.watchStarted && n != st.delivered:
				// A message was queued after the last drop: the episode
				// is over, and the next drop is reported again.
				st.watch = false
			}
			st.delivered, st.watchStarted = n, true
		}
		if st.suspect.Load() {
			todo = append(todo, st)
		} else if !st.watch {
			delete(s.check, st)
		}
	}
	s.mu.Unlock()
	failed := false
	for _, st := range rebase {
		s.rebase(st, epoch)
		failed = failed || st.epoch != epoch
	}
	if failed {
		s.mu.Lock()
		s.rescan = true // NATS did not answer: tried again on the next check
		s.mu.Unlock()
	}
	for _, st := range todo {
		s.checkTail(st)
	}
}

// rebase moves st onto a recreated stream: its starting point is read again
// as at subscribe, and a Gap through it makes the channel's subscribers
// recover from the new stream's history.
func (s *shard) rebase(st *chanState, epoch uint64) {
	stream, err := s.b.currentStream()
	if err != nil {
		return // tried again on the next check
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.b.cfg.RepairTimeout)
	defer cancel()
	last, base, err := startingPoint(ctx, stream, st.stored)
	if err != nil {
		return
	}
	s.b.gaps.Add(1)
	s.b.log.Warn("NATS stream recreated; subscribers recover from history", "channel", st.channel, "through", last)
	st.epoch, st.last, st.base = epoch, last, base
	st.suspect.Store(false)
	s.b.deliver(broker.Publication{Channel: st.channel, Offset: last, Gap: true})
}

func (s *shard) checkTail(st *chanState) {
	if !s.b.nc.IsConnected() {
		return // stays suspect; a request now would only fail
	}
	stream, err := s.b.currentStream()
	if err != nil {
		return // stays suspect; checked again on the next tick
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.b.cfg.RepairTimeout)
	defer cancel()
	st.suspect.Store(false)
	m, err := stream.GetLastMsgForSubject(ctx, st.stored)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		// Nothing of the channel is stored; if anything after st.last was
		// published and dropped, it has left the stream too.
		info, err := stream.Info(ctx)
		if err != nil {
			st.suspect.Store(true)
			return
		}
		if info.State.FirstSeq > st.last+1 && st.last > 0 {
			s.gap(st, info.State.LastSeq)
		}
	case err != nil:
		st.suspect.Store(true)
	case m.Sequence > st.last:
		s.repair(st, m.Sequence)
	}
}

// addChannel registers channel's state before its NATS subscription exists,
// so messages arriving before the starting point is known are held.
func (b *Broker) addChannel(channel string) (*shard, *chanState) {
	token := subjectToken(channel)
	st := &chanState{channel: channel, stored: storedPrefix + token, live: livePrefix + token}
	s := b.shardOf(channel)
	s.mu.Lock()
	s.chans[st.live] = st
	s.mu.Unlock()
	return s, st
}

func (s *shard) removeChannel(st *chanState) {
	s.mu.Lock()
	if s.chans[st.live] == st {
		delete(s.chans, st.live)
	}
	delete(s.check, st)
	s.mu.Unlock()
}

// startAt sets st's starting point: the channel's last stored message, read
// after the NATS server registered the interest, and returns it. Messages
// up to it are in the history the hub reads after Subscribe returns;
// later ones are live.
func (b *Broker) startAt(ctx context.Context, s *shard, st *chanState, sub *nats.Subscription) (uint64, error) {
	stream, err := b.currentStream()
	if err != nil {
		return 0, err
	}
	epoch := b.epoch.Load()
	last, base, err := startingPoint(ctx, stream, st.stored)
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	st.sub = sub
	st.epoch, st.last, st.base = epoch, last, base
	if d, err := sub.Dropped(); err == nil {
		st.dropped = d
	}
	if epoch != b.epoch.Load() {
		s.rescan = true // the stream changed while the starting point was read
	}
	st.ready, st.fresh = true, true
	s.fresh = append(s.fresh, st)
	s.mu.Unlock()
	s.poke()
	return last, nil
}

// startingPoint reads the sequence of the last message stored on subject
// (0 when none) and, for an empty subject, the stream's last sequence: a
// lower bound of every message of it to come. The stream position comes
// first, read in one reply with the subject's count.
func startingPoint(ctx context.Context, stream jetstream.Stream, subject string) (last, base uint64, err error) {
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return 0, 0, fmt.Errorf("stream info: %w", err)
	}
	if info.State.Subjects[subject] > 0 {
		m, err := stream.GetLastMsgForSubject(ctx, subject)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
		case err != nil:
			return 0, 0, fmt.Errorf("last message: %w", err)
		default:
			last = m.Sequence
		}
	}
	return last, info.State.LastSeq, nil
}

// subjectChannel is the live subject a slow-consumer report names.
func subjectChannel(subject string) (string, bool) {
	token, ok := strings.CutPrefix(subject, livePrefix)
	if !ok {
		return "", false
	}
	return channelOf(token), true
}
