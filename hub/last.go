package hub

import (
	"github.com/herald-ws/herald/broker"
	"github.com/herald-ws/herald/session"
)

// SubscribeLast subscribes s to channel and sends the channel's newest n
// publications still in history (fewer when it holds fewer) before the
// live ones: a cache channel's latest value on subscribe. It is the
// recovery path of Subscribe with the starting point chosen from the
// history instead of by the client, so the same guarantee holds: every
// publication after the first one sent arrives exactly once, in order,
// however publishes race with the subscribe. ack, the return value and
// the loop rule are Subscribe's.
func (h *Hub) SubscribeLast(s *session.Session, channelName string, n int, ack func(SubscribeResult)) *Subscription {
	sl := h.loopSubsOf(channelName, s.Loop())
	if sl == nil {
		ack(SubscribeResult{Err: ErrTooManyChannels})
		return nil
	}
	sub := &Subscription{sess: s, ls: sl, pending: true}
	sub.slot = int32(len(sl.list))
	sl.list = append(sl.list, sub)
	h.subscriptions.Add(1)
	h.run(s, func() (broker.Recovery, error) {
		ctx, cancel := h.callContext()
		defer cancel()
		if err := h.reconcile(channelName); err != nil {
			return broker.Recovery{}, err
		}
		return h.broker.Recover(ctx, channelName, 0, true)
	}, func(rec broker.Recovery, err error) {
		if err == nil {
			rec = newest(rec, n)
		}
		h.finishLast(sub, rec, err, ack)
	})
	if sub.closed {
		return nil
	}
	return sub
}

// newest keeps the last n of rec's publications.
func newest(rec broker.Recovery, n int) broker.Recovery {
	if k := len(rec.Publications) - n; k > 0 {
		rec.Publications = rec.Publications[k:]
	}
	return rec
}

// finishLast runs on the subscription's loop: the ack, then the kept
// history from just below its first offset, then what was held back.
func (h *Hub) finishLast(sub *Subscription, rec broker.Recovery, err error, ack func(SubscribeResult)) {
	if sub.closed || err != nil {
		h.finishSubscribe(sub, rec, err, false, 0, ack)
		return
	}
	since := rec.Top
	if len(rec.Publications) > 0 {
		since = rec.Publications[0].Offset - 1
	}
	ack(SubscribeResult{Offset: rec.Top, Recovered: true})
	h.replay(sub, rec, true, since)
}
