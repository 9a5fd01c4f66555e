package broker

import (
	"context"
	"sync"
	"time"
)

// MemoryConfig configures the in-memory broker.
type MemoryConfig struct {
	HistorySize int           // publications kept per channel; 0 keeps none
	HistoryTTL  time.Duration // how long a publication stays in history; 0 means forever
}

// Memory is the single-node broker: channels, offsets and history live in
// this process. Offsets of a channel start at the time the channel was
// created, in microseconds since 1970, and rise by one per publication, so
// that a client holding an offset from before a restart is told it may have
// missed messages (its offset is below the new channel's start) instead of
// seeing offsets go backwards.
type Memory struct {
	cfg     MemoryConfig
	deliver DeliverFunc

	mu       sync.RWMutex // guards channels
	channels map[string]*memChannel
	closed   bool
	stop     chan struct{}
	done     chan struct{}
}

// memChannel is one channel's offsets, history and interest. Its mutex
// also orders deliveries: a publication is delivered while it is held, so
// the hub sees each channel's publications in offset order.
type memChannel struct {
	mu         sync.Mutex
	start      uint64        // offset before the first publication
	top        uint64        // last offset
	ring       []Publication // history, oldest at head
	head, size int
	interested bool
	gone       bool // forgotten by the sweeper; look the channel up again
}

// NewMemory returns an in-memory broker.
func NewMemory(cfg MemoryConfig) *Memory {
	return &Memory{cfg: cfg, channels: map[string]*memChannel{}, stop: make(chan struct{}), done: make(chan struct{})}
}

// Start records deliver and starts the sweeper that forgets channels with
// no interest and no live history.
func (m *Memory) Start(deliver DeliverFunc) error {
	m.deliver = deliver
	go m.sweep()
	return nil
}

func nowOffset() uint64 { return uint64(time.Now().UnixMicro()) }

func (m *Memory) channel(name string, create bool) *memChannel {
	m.mu.RLock()
	ch := m.channels[name]
	m.mu.RUnlock()
	if ch != nil || !create {
		return ch
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if ch = m.channels[name]; ch == nil {
		start := nowOffset()
		ch = &memChannel{start: start, top: start}
		if m.cfg.HistorySize > 0 {
			ch.ring = make([]Publication, m.cfg.HistorySize)
		}
		m.channels[name] = ch
	}
	return ch
}

// lock returns the live channel called name, created if need be, with its
// mutex held. The sweeper may forget a channel between the map lookup and
// the lock; anything written to that channel would be lost (a publication
// missing from history, interest that never gets deliveries), so look again.
func (m *Memory) lock(name string) *memChannel {
	for {
		ch := m.channel(name, true)
		ch.mu.Lock()
		if !ch.gone {
			return ch
		}
		ch.mu.Unlock()
	}
}

// Publish assigns the next offset, records the publication in history and
// delivers it if this node is interested.
func (m *Memory) Publish(_ context.Context, channel string, data []byte, _ PublishOptions) (PublishResult, error) {
	if m.isClosed() {
		return PublishResult{}, ErrClosed
	}
	ch := m.lock(channel)
	defer ch.mu.Unlock()
	now := time.Now()
	ch.top++
	p := Publication{Channel: channel, Offset: ch.top, Data: data, Time: now}
	if n := len(ch.ring); n > 0 {
		if ch.size == n {
			ch.ring[ch.head] = p
			ch.head = (ch.head + 1) % n
		} else {
			ch.ring[(ch.head+ch.size)%n] = p
			ch.size++
		}
	}
	if ch.interested && m.deliver != nil {
		m.deliver(p)
	}
	return PublishResult{Offset: p.Offset}, nil
}

// Subscribe marks the channel as wanted by this node.
func (m *Memory) Subscribe(channel string) error {
	ch := m.lock(channel)
	ch.interested = true
	ch.mu.Unlock()
	return nil
}

// Unsubscribe drops this node's interest in the channel.
func (m *Memory) Unsubscribe(channel string) error {
	if ch := m.channel(channel, false); ch != nil {
		ch.mu.Lock()
		ch.interested = false
		ch.mu.Unlock()
	}
	return nil
}

// Recover reports the channel's top offset and, with history, the retained
// publications after since that are younger than the TTL.
func (m *Memory) Recover(_ context.Context, channel string, since uint64, history bool) (Recovery, error) {
	ch := m.lock(channel)
	defer ch.mu.Unlock()
	r := Recovery{Top: ch.top, Recovered: true}
	if !history {
		return r, nil
	}
	if since >= ch.top {
		return r, nil
	}
	if since < ch.start {
		// The client's offset predates this channel's incarnation (a
		// restart, or the channel was forgotten): messages may be lost.
		r.Recovered = false
	}
	expired := m.cutoff()
	oldest := ch.top + 1 // offset of the oldest publication we can return
	n := len(ch.ring)
	for i := 0; i < ch.size; i++ {
		p := ch.ring[(ch.head+i)%n]
		if p.Offset <= since || (!expired.IsZero() && p.Time.Before(expired)) {
			continue
		}
		if p.Offset < oldest {
			oldest = p.Offset
		}
		r.Publications = append(r.Publications, p)
	}
	if oldest > since+1 && since >= ch.start {
		r.Recovered = false
	}
	return r, nil
}

func (m *Memory) cutoff() time.Time {
	if m.cfg.HistoryTTL <= 0 {
		return time.Time{}
	}
	return time.Now().Add(-m.cfg.HistoryTTL)
}

// Ready is always nil for the in-memory broker while it is open.
func (m *Memory) Ready() error {
	if m.isClosed() {
		return ErrClosed
	}
	return nil
}

func (m *Memory) isClosed() bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.closed
}

// Close stops the sweeper; later publishes fail with ErrClosed.
func (m *Memory) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()
	close(m.stop)
	if m.deliver != nil {
		<-m.done
	}
	return nil
}

// sweep forgets channels nobody here wants whose history has expired or is
// empty, so that publishing to many short-lived channels cannot grow memory
// without bound.
func (m *Memory) sweep() {
	defer close(m.done)
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		m.forgetIdle()
	}
}

func (m *Memory) forgetIdle() {
	expired := m.cutoff()
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, ch := range m.channels {
		ch.mu.Lock()
		idle := !ch.interested
		if idle && ch.size > 0 {
			newest := ch.ring[(ch.head+ch.size-1)%len(ch.ring)]
			idle = !expired.IsZero() && newest.Time.Before(expired)
		}
		if idle {
			ch.gone = true // under ch.mu, so lock sees it and looks again
			delete(m.channels, name)
		}
		ch.mu.Unlock()
	}
}

// Channels reports how many channels the broker holds state for.
func (m *Memory) Channels() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.channels)
}
