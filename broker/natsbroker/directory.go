package natsbroker

import (
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// The node directory: each node publishes its description on
// herald.nodes every announceEvery (core NATS, nothing stored) and keeps
// what it hears for nodeTTL, so a node that dies drops out of every
// node's list within nodeTTL.
const (
	nodesSubject  = "herald.nodes"
	announceEvery = time.Second
	nodeTTL       = 3 * announceEvery
	nodeHeader    = "Herald-Node"
)

type directory struct {
	mu       sync.Mutex
	describe func() []byte
	heard    map[string]heardNode // by node key
}

type heardNode struct {
	desc []byte
	at   time.Time
}

// Announce sets what this node says about itself and starts announcing.
func (b *Broker) Announce(describe func() []byte) {
	b.dir.mu.Lock()
	first := b.dir.describe == nil
	b.dir.describe = describe
	b.dir.mu.Unlock()
	if !first {
		return
	}
	if _, err := b.nc.Subscribe(nodesSubject, b.heardFrom); err != nil {
		b.log.Warn("node directory subscribe", "err", err)
	} else if b.nc.IsConnected() {
		// Registered before Start returns, so the node's NATS interest is
		// settled when it reports itself started.
		_ = b.nc.FlushTimeout(time.Second)
	}
	b.done.Add(1)
	go b.announce()
}

func (b *Broker) heardFrom(m *nats.Msg) {
	key := m.Header.Get(nodeHeader)
	if key == "" {
		return
	}
	b.dir.mu.Lock()
	defer b.dir.mu.Unlock()
	if b.dir.heard == nil {
		b.dir.heard = map[string]heardNode{}
	}
	b.dir.heard[key] = heardNode{desc: append([]byte(nil), m.Data...), at: time.Now()}
}

// announce publishes this node's description every announceEvery until
// the broker closes.
func (b *Broker) announce() {
	defer b.done.Done()
	t := time.NewTicker(announceEvery)
	defer t.Stop()
	for {
		b.dir.mu.Lock()
		describe := b.dir.describe
		b.dir.mu.Unlock()
		if b.nc.IsConnected() {
			m := nats.NewMsg(nodesSubject)
			m.Header.Set(nodeHeader, b.key)
			m.Data = describe()
			if err := b.nc.PublishMsg(m); err != nil {
				b.log.Debug("node announcement", "err", err)
			}
		}
		select {
		case <-b.stop:
			return
		case <-t.C:
		}
	}
}

// Nodes returns the description of every node heard from within nodeTTL
// (this one's from its last announcement), oldest key first, and forgets
// the others.
func (b *Broker) Nodes() [][]byte {
	b.dir.mu.Lock()
	defer b.dir.mu.Unlock()
	keys := make([]string, 0, len(b.dir.heard))
	for k, n := range b.dir.heard {
		if time.Since(n.at) > nodeTTL {
			delete(b.dir.heard, k)
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([][]byte, len(keys))
	for i, k := range keys {
		out[i] = b.dir.heard[k].desc
	}
	return out
}
