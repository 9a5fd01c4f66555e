package broker

import (
	"context"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// MemoryConfig configures the in-memory broker. Zero values take the
// documented defaults.
type MemoryConfig struct {
	HistorySize int           // publications kept per channel; 0 keeps none
	HistoryTTL  time.Duration // how long a publication stays in history; 0 means forever
	// MaxChannels bounds the channels the broker holds state for (those
	// with a subscriber on this node or with history); creating one more
	// fails with ErrTooManyChannels. 0 means no limit.
	MaxChannels int
	// IdempotencyWindow is how long an idempotency key is remembered.
	// Default 2 minutes; negative disables deduplication.
	IdempotencyWindow time.Duration
	// MaxIdempotencyKeys bounds the keys remembered at once across all
	// channels (default 1,000,000, about 100 MB at most); past it the
	// oldest keys are forgotten before their window ends.
	MaxIdempotencyKeys int
	// SweepInterval is how often expired history and idle channels are
	// dropped. Default 1 s.
	SweepInterval time.Duration
}

// DefaultIdempotencyWindow is how long idempotency keys are remembered by
// default (the same as JetStream's default duplicate window).
const DefaultIdempotencyWindow = 2 * time.Minute

// Memory is the single-node broker: channels, offsets and history live in
// this process. Offsets of a channel start at the time the channel was
// created, in microseconds since 1970, and rise by one per publication, so
// that a client holding an offset from before a restart is told it may have
// missed messages (its offset is below the new channel's start) instead of
// seeing offsets go backwards.
//
// Memory is bounded by configuration, never by what clients send: a channel
// costs a small fixed amount while someone here subscribes to it, plus what
// its history holds (grown on demand, never preallocated); a channel with
// neither is forgotten at once (no subscriber, no history) or at the next
// sweep (its history expired). The channel registry is sharded so that the
// sweep never holds one lock over all channels.
type Memory struct {
	cfg     MemoryConfig
	deliver DeliverFunc

	shards   [memShards]memShard
	channels atomic.Int64 // channels held, for MaxChannels
	forgot   atomic.Int64 // channels forgotten since memory was last handed back
	closed   atomic.Bool
	stop     chan struct{}
	done     chan struct{}
	started  bool

	dedup dedupTable
}

const memShards = 64

// memShard is a slice of the channel registry. Its mutex guards the map
// and every channel in it (a channel costs no lock of its own), and orders
// deliveries: a publication is delivered while it is held, so the hub sees
// each channel's publications in offset order.
type memShard struct {
	mu   sync.Mutex
	m    map[string]*memChannel
	peak int // the most channels m held since it was last copied (a Go map keeps its buckets)
}

// memChannel is one channel's offsets, history and interest (32 bytes).
type memChannel struct {
	start      uint64   // offset before the first publication
	top        uint64   // last offset
	hist       *history // nil while nothing is retained
	interested bool
}

// history is a channel's retained publications: a ring that grows by
// appending up to HistorySize and shrinks when expiry empties it.
type history struct {
	ring       []entry
	head, size int
}

// entry is one retained publication; the channel name is implied.
type entry struct {
	offset uint64
	at     int64 // unix nanoseconds of the publish
	data   []byte
}

func (h *history) at(i int) *entry { return &h.ring[(h.head+i)%len(h.ring)] }

// push appends e, overwriting the oldest entry when limit are held.
func (h *history) push(e entry, limit int) {
	switch {
	case h.size < len(h.ring):
		h.ring[(h.head+h.size)%len(h.ring)] = e
		h.size++
	case h.size < limit:
		// Full but below the limit: grow, unrolling the ring.
		n := min(max(2*len(h.ring), 1), limit)
		ring := make([]entry, n)
		for i := 0; i < h.size; i++ {
			ring[i] = *h.at(i)
		}
		h.ring, h.head = ring, 0
		h.ring[h.size] = e
		h.size++
	default:
		h.ring[h.head] = e
		h.head = (h.head + 1) % len(h.ring)
	}
}

// dropExpired drops entries published before cutoff (unix nanoseconds)
// and shrinks the ring when it is mostly empty. It reports whether the
// history is now empty.
func (h *history) dropExpired(cutoff int64) bool {
	for h.size > 0 && h.at(0).at < cutoff {
		*h.at(0) = entry{}
		h.head = (h.head + 1) % len(h.ring)
		h.size--
	}
	if h.size == 0 {
		return true
	}
	if len(h.ring) > 8 && h.size < len(h.ring)/4 {
		ring := make([]entry, max(h.size*2, 2))
		for i := 0; i < h.size; i++ {
			ring[i] = *h.at(i)
		}
		h.ring, h.head = ring, 0
	}
	return false
}

// NewMemory returns an in-memory broker.
func NewMemory(cfg MemoryConfig) *Memory {
	if cfg.IdempotencyWindow == 0 {
		cfg.IdempotencyWindow = DefaultIdempotencyWindow
	}
	if cfg.MaxIdempotencyKeys <= 0 {
		cfg.MaxIdempotencyKeys = 1_000_000
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = time.Second
	}
	m := &Memory{cfg: cfg, stop: make(chan struct{}), done: make(chan struct{})}
	for i := range m.shards {
		m.shards[i].m = map[string]*memChannel{}
	}
	m.dedup.keys = map[dedupKey]uint64{}
	return m
}

// Nonblocking marks the memory broker's Subscribe, Unsubscribe and Recover
// as safe to call on an event loop: they take short locks and never wait
// for I/O.
func (m *Memory) Nonblocking() {}

// Start records deliver and starts the sweeper that drops expired history
// and forgets idle channels.
func (m *Memory) Start(deliver DeliverFunc) error {
	m.deliver = deliver
	m.started = true
	go m.sweep()
	return nil
}

func nowOffset() uint64 { return uint64(time.Now().UnixMicro()) }

func (m *Memory) shard(name string) *memShard { return &m.shards[fnv32(name)%memShards] }

// fnv32 is FNV-1a, for picking a shard.
func fnv32(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

// lock locks the shard of the channel called name and returns it with
// the channel, created when create is set (nil without). The caller
// unlocks sh.mu.
func (m *Memory) lock(name string, create bool) (*memShard, *memChannel, error) {
	sh := m.shard(name)
	sh.mu.Lock()
	ch := sh.m[name]
	if ch == nil && create {
		if max := m.cfg.MaxChannels; max > 0 && m.channels.Load() >= int64(max) {
			sh.mu.Unlock()
			return nil, nil, ErrTooManyChannels
		}
		start := nowOffset()
		ch = &memChannel{start: start, top: start}
		sh.m[name] = ch
		m.channels.Add(1)
	}
	return sh, ch, nil
}

// lookup returns the channel called name, or nil (tests).
func (m *Memory) lookup(name string) *memChannel {
	sh := m.shard(name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.m[name]
}

// forgetLocked drops the channel from its shard. The caller holds sh.mu.
func (m *Memory) forgetLocked(sh *memShard, name string) {
	if _, ok := sh.m[name]; ok {
		delete(sh.m, name)
		m.channels.Add(-1)
		m.forgot.Add(1)
		sh.peak = max(sh.peak, len(sh.m)+1)
		if sh.peak >= 256 && len(sh.m) < sh.peak/4 {
			c := make(map[string]*memChannel, len(sh.m))
			for k, v := range sh.m {
				c[k] = v
			}
			sh.m, sh.peak = c, len(c)
		}
	}
}

// Publish assigns the next offset, records the publication in history and
// delivers it if this node is interested. With an idempotency key already
// used on the channel within the window it stores nothing and returns the
// first publish's offset.
func (m *Memory) Publish(_ context.Context, channel string, data []byte, opts PublishOptions) (PublishResult, error) {
	if m.closed.Load() {
		return PublishResult{}, ErrClosed
	}
	keyed := opts.IdempotencyKey != "" && m.cfg.IdempotencyWindow > 0
	if keyed {
		// A duplicate must not create a channel (or fail for the channel
		// limit) just to be answered.
		if off, ok := m.dedup.lookup(channel, opts.IdempotencyKey, time.Now().UnixNano()); ok {
			return PublishResult{Offset: off, Duplicate: true}, nil
		}
	}
	sh, ch, err := m.lock(channel, true)
	if err != nil {
		return PublishResult{}, err
	}
	defer sh.mu.Unlock()
	now := time.Now()
	if keyed {
		// Checked again under the shard lock: two publishes with one key
		// racing each other store once.
		if off, ok := m.dedup.lookup(channel, opts.IdempotencyKey, now.UnixNano()); ok {
			return PublishResult{Offset: off, Duplicate: true}, nil
		}
	}
	ch.top++
	p := Publication{Channel: channel, Offset: ch.top, Data: data, Time: now}
	if m.cfg.HistorySize > 0 {
		if ch.hist == nil {
			ch.hist = &history{}
		}
		ch.hist.push(entry{offset: p.Offset, at: now.UnixNano(), data: data}, m.cfg.HistorySize)
	}
	if keyed {
		m.dedup.store(channel, opts.IdempotencyKey, p.Offset, now.Add(m.cfg.IdempotencyWindow).UnixNano(), m.cfg.MaxIdempotencyKeys)
	}
	if ch.interested && m.deliver != nil {
		m.deliver(p)
	}
	return PublishResult{Offset: p.Offset}, nil
}

// Subscribe marks the channel as wanted by this node. It creates no
// history.
func (m *Memory) Subscribe(channel string) error {
	if m.closed.Load() {
		return ErrClosed
	}
	sh, ch, err := m.lock(channel, true)
	if err != nil {
		return err
	}
	ch.interested = true
	sh.mu.Unlock()
	return nil
}

// Unsubscribe drops this node's interest in the channel; a channel that
// then holds nothing is forgotten at once.
func (m *Memory) Unsubscribe(channel string) error {
	sh := m.shard(channel)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	ch := sh.m[channel]
	if ch == nil {
		return nil
	}
	ch.interested = false
	if m.idle(ch, m.cutoff()) {
		m.forgetLocked(sh, channel)
	}
	return nil
}

// idle reports whether ch can be forgotten: nobody here wants it and its
// history is empty or expired (dropping the expired part). A channel whose
// offsets have run ahead of the clock (over a million publications a
// second) is kept, so that a channel created again later never starts
// below offsets already handed out. The caller holds the shard's lock.
func (m *Memory) idle(ch *memChannel, cutoff int64) bool {
	if ch.interested || ch.top > nowOffset() {
		return false
	}
	if ch.hist != nil && cutoff > 0 && ch.hist.dropExpired(cutoff) {
		ch.hist = nil
	}
	return ch.hist == nil || ch.hist.size == 0
}

// Recover reports the channel's top offset and, with history, the retained
// publications after since that are younger than the TTL. A since above
// the top (the client holds an offset this channel never reached: a reset,
// a clock step, a bogus value) is answered with recovered false. Recover
// creates nothing: a channel nobody subscribes to and nobody published to
// has no state.
func (m *Memory) Recover(_ context.Context, channel string, since uint64, history bool) (Recovery, error) {
	sh, ch, _ := m.lock(channel, false)
	defer sh.mu.Unlock()
	if ch == nil {
		// Nothing retained; the channel will start at the clock when it is
		// created, above this top.
		top := nowOffset()
		return Recovery{Top: top, Recovered: !history || since == top}, nil
	}
	r := Recovery{Top: ch.top, Recovered: true}
	if !history || since == ch.top {
		return r, nil
	}
	if since > ch.top || since < ch.start {
		// Above the top: not an offset of this channel. Below the start:
		// it predates this channel's incarnation (a restart, or the
		// channel was forgotten), so messages may be lost.
		r.Recovered = false
		if since > ch.top {
			return r, nil
		}
	}
	cutoff := m.cutoff()
	oldest := ch.top + 1 // offset of the oldest publication we can return
	if h := ch.hist; h != nil {
		for i := 0; i < h.size; i++ {
			e := h.at(i)
			if e.offset <= since || (cutoff > 0 && e.at < cutoff) {
				continue
			}
			oldest = min(oldest, e.offset)
			r.Publications = append(r.Publications, Publication{Channel: channel, Offset: e.offset, Data: e.data, Time: time.Unix(0, e.at)})
		}
	}
	if oldest > since+1 && since >= ch.start {
		r.Recovered = false
	}
	return r, nil
}

// cutoff is the unix-nanosecond time before which history has expired, or
// 0 without a TTL.
func (m *Memory) cutoff() int64 {
	if m.cfg.HistoryTTL <= 0 {
		return 0
	}
	return time.Now().Add(-m.cfg.HistoryTTL).UnixNano()
}

// Ready is always nil for the in-memory broker while it is open.
func (m *Memory) Ready() error {
	if m.closed.Load() {
		return ErrClosed
	}
	return nil
}

// Close stops the sweeper; later publishes fail with ErrClosed.
func (m *Memory) Close() error {
	if m.closed.Swap(true) {
		return nil
	}
	close(m.stop)
	if m.started {
		<-m.done
	}
	return nil
}

// sweep drops expired history, forgets idle channels and expired
// idempotency keys, one shard at a time, and hands the memory back to the
// operating system after a sweep freed a lot of it.
func (m *Memory) sweep() {
	defer close(m.done)
	t := time.NewTicker(m.cfg.SweepInterval)
	defer t.Stop()
	var lastFree time.Time
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		m.forgetIdle()
		m.forgot.Add(int64(m.dedup.expire(time.Now().UnixNano())))
		// The runtime returns freed pages slowly; after a burst of
		// short-lived channels (clients subscribing to fresh names and
		// leaving, forgotten at once or by this sweep) give them back now,
		// at most every 10 s.
		if m.forgot.Load() >= freeAfterForgetting && time.Since(lastFree) > 10*time.Second {
			m.forgot.Store(0)
			debug.FreeOSMemory()
			lastFree = time.Now()
		}
	}
}

// freeAfterForgetting is how many forgotten channels (or expired
// idempotency keys) make the sweeper hand freed memory back to the OS.
const freeAfterForgetting = 10_000

// forgetIdle forgets every idle channel and reports how many.
func (m *Memory) forgetIdle() int {
	cutoff := m.cutoff()
	forgot := 0
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		for name, ch := range sh.m {
			if m.idle(ch, cutoff) {
				m.forgetLocked(sh, name)
				forgot++
			}
		}
		sh.mu.Unlock()
	}
	return forgot
}

// Channels reports how many channels the broker holds state for.
func (m *Memory) Channels() int { return int(m.channels.Load()) }

// dedupTable remembers idempotency keys for a window. Keys expire in the
// order they were stored (one window for all), so a FIFO finds the expired
// ones without scanning.
type dedupTable struct {
	mu   sync.Mutex
	keys map[dedupKey]uint64
	fifo []dedupEntry // ring
	head int
	size int
}

type dedupKey struct{ channel, key string }

type dedupEntry struct {
	k       dedupKey
	expires int64
}

func (d *dedupTable) lookup(channel, key string, now int64) (uint64, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.expireLocked(now)
	off, ok := d.keys[dedupKey{channel, key}]
	return off, ok
}

func (d *dedupTable) store(channel, key string, off uint64, expires int64, limit int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := dedupKey{channel, key}
	if _, ok := d.keys[k]; ok {
		return
	}
	for d.size >= limit {
		d.popLocked()
	}
	if d.size == len(d.fifo) {
		ring := make([]dedupEntry, min(max(2*len(d.fifo), 64), limit))
		for i := 0; i < d.size; i++ {
			ring[i] = d.fifo[(d.head+i)%len(d.fifo)]
		}
		d.fifo, d.head = ring, 0
	}
	d.fifo[(d.head+d.size)%len(d.fifo)] = dedupEntry{k: k, expires: expires}
	d.size++
	d.keys[k] = off
}

func (d *dedupTable) popLocked() {
	e := &d.fifo[d.head]
	delete(d.keys, e.k)
	*e = dedupEntry{}
	d.head = (d.head + 1) % len(d.fifo)
	d.size--
}

func (d *dedupTable) expireLocked(now int64) int {
	n := 0
	for d.size > 0 && d.fifo[d.head].expires <= now {
		d.popLocked()
		n++
	}
	if d.size == 0 && len(d.fifo) > 1024 {
		d.fifo, d.head = nil, 0
		d.keys = map[dedupKey]uint64{} // a drained map keeps its buckets
	}
	return n
}

func (d *dedupTable) expire(now int64) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.expireLocked(now)
}
