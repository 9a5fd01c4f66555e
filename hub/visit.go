package hub

import (
	"context"
	"sort"
	"sync"

	"github.com/gobwas/ws"

	"github.com/herald-ws/herald/codec"
	"github.com/herald-ws/herald/session"
)

// Channels lists the channels with local subscribers whose names match
// keep (nil keeps all), sorted by name. It copies the names under the
// registry's read lock and sorts outside it; it is for the server API,
// not a hot path. Safe from any goroutine.
func (h *Hub) Channels(keep func(string) bool) []ChannelCount {
	h.mu.RLock()
	out := make([]ChannelCount, 0, len(h.channels))
	for name, ch := range h.channels {
		if n := int64(ch.subs.Load()); n > 0 && (keep == nil || keep(name)) {
			out = append(out, ChannelCount{Channel: name, Subscribers: n})
		}
	}
	h.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Channel < out[j].Channel })
	return out
}

// Subscribers is the number of local subscriptions to channel (including
// those still recovering): one map lookup and an atomic load. Safe from
// any goroutine.
func (h *Hub) Subscribers(channel string) int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if ch := h.channels[channel]; ch != nil {
		return int(ch.subs.Load())
	}
	return 0
}

// loopsOf snapshots the loops with subscribers of channel.
func (h *Hub) loopsOf(channel string) []*loopSubs {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if ch := h.channels[channel]; ch != nil {
		return append([]*loopSubs(nil), ch.loops...)
	}
	return nil
}

// Visit calls visit, on each event loop with subscribers of channel, for
// every live (not recovering) subscription there (visit may unsubscribe
// it), and waits until every
// loop has done so or ctx ends. visit runs on several loops at once, so it
// must synchronise what it shares; after Visit returns with ctx's error a
// late loop may still call it. Must not run on an event loop (it waits for
// them). A loop that cannot take the task (the engine is stopping)
// leaves Visit waiting for ctx.
func (h *Hub) Visit(ctx context.Context, channel string, visit func(*Subscription)) error {
	loops := h.loopsOf(channel)
	if len(loops) == 0 {
		return nil
	}
	var wg sync.WaitGroup
	for _, ls := range loops {
		wg.Add(1)
		_ = ls.inbox.loop.Exec(func() {
			defer wg.Done()
			// Newest first, so that visit may unsubscribe the subscription
			// it is given (the one moved into its slot was visited).
			for i := len(ls.list) - 1; i >= 0; i-- {
				if i >= len(ls.list) {
					continue
				}
				if sub := ls.list[i]; !sub.closed && !sub.pending {
					visit(sub)
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Notify sends payload as one text frame to every live subscriber of
// channel on this node, skipping those that skip reports true (nil: none;
// it runs on the subscriber's loop). It is for messages outside the
// channel's history (presence joins and leaves): they carry no offset and
// are not recovered. The frame is built once; each loop writes it to its
// subscribers and flushes each. It never blocks and may run on any
// goroutine; payload is copied.
func (h *Hub) Notify(channel string, payload []byte, skip func(*session.Session) bool) {
	loops := h.loopsOf(channel)
	if len(loops) == 0 {
		return
	}
	frame := codec.AppendFrame(nil, ws.OpText, payload)
	for _, ls := range loops {
		_ = ls.inbox.loop.Exec(func() {
			for i := 0; i < len(ls.list); i++ {
				sub := ls.list[i]
				if sub.closed || sub.pending || (skip != nil && skip(sub.sess)) {
					continue
				}
				s := sub.sess
				s.SendFrame(frame)
				if !s.Flush() {
					s.Abort(session.ClosePolicy)
				}
			}
		})
	}
}
