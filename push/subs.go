package push

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/herald-ws/herald/auth"
	"github.com/herald-ws/herald/broker"
	"github.com/herald-ws/herald/hub"
	"github.com/herald-ws/herald/session"
)

// Subscriptions the token grants. On connect, the channels of the token's
// subs claim, and with Config.AutoPersonal the user's own user:<id>
// channel, are subscribed without the client asking. Each is checked as a
// subscribe would be (name, permission, -max-channels-per-conn) and each
// gets an event the client can keep its offsets by:
// {"op":"subscribed","channel":..,"offset":N} like a subscribe's ack, or
// {"op":"error","channel":..,"code":..,"message":..}. A channel listed
// twice is subscribed once.

// upgrading is s.Value between Authorize and OnOpen for a token with a
// subs claim: the claim is needed once, in OnOpen, and is not worth a
// field in every client.
type upgrading struct {
	c    *client
	subs []string
}

// subscribeGranted subscribes s to its granted channels. Runs in OnOpen,
// on s's loop, before the 101 is flushed, so the events follow it.
func (h *Handler) subscribeGranted(s *session.Session) {
	var c *client
	var chans []string
	switch v := s.Value.(type) {
	case *upgrading:
		c, chans = v.c, v.subs
		s.Value = c
	case *client:
		c = v
	default:
		return // anonymous: nothing is granted
	}
	if h.cfg.AutoPersonal && !c.id.Anonymous && c.id.User != "" {
		chans = append(chans[:len(chans):len(chans)], auth.UserChannelPrefix+c.id.User)
	}
	for _, ch := range chans {
		h.subscribeGrant(s, c, ch)
	}
}

func (h *Handler) subscribeGrant(s *session.Session, c *client, channel string) {
	if !auth.ValidChannel(channel) {
		h.grantError(s, channel, CodeBadRequest, "channel must be 1-255 bytes of [A-Za-z0-9:_.-]")
		return
	}
	if !c.id.CanSubscribe(channel) {
		h.grantError(s, channel, CodeForbidden, "not allowed on channel "+channel)
		return
	}
	if c.subs.get(channel) != nil {
		return // listed twice
	}
	if max := h.cfg.MaxChannelsPerConn; max > 0 && c.subs.len() >= max {
		h.grantError(s, channel, CodeTooManyChannels, fmt.Sprintf("at most %d channels per connection", max))
		return
	}
	var sub *hub.Subscription
	sub = h.cfg.Hub.Subscribe(s, channel, nil, func(res hub.SubscribeResult) {
		if res.Err != nil {
			if sub != nil {
				c.subs.remove(sub)
			}
			code := CodeUnavailable
			if errors.Is(res.Err, hub.ErrTooManyChannels) || errors.Is(res.Err, broker.ErrTooManyChannels) {
				code = CodeTooManyChannels
			}
			h.grantError(s, channel, code, "subscribe failed: "+res.Err.Error())
			return
		}
		reply(s, func(b []byte) []byte { return appendSubscribed(b, channel, res.Offset) })
	})
	if sub != nil && !sub.Removed() {
		c.subs.add(sub)
	}
}

func (h *Handler) grantError(s *session.Session, channel, code, msg string) {
	reply(s, func(b []byte) []byte { return appendChannelError(b, channel, code, msg) })
}

// appendSubscribed appends {"op":"subscribed","channel":..,"offset":N}.
func appendSubscribed(dst []byte, channel string, offset uint64) []byte {
	dst = append(dst, `{"op":"subscribed","channel":`...)
	dst = strconv.AppendQuote(dst, channel)
	dst = append(dst, `,"offset":`...)
	dst = strconv.AppendUint(dst, offset, 10)
	return append(dst, '}')
}

// appendChannelError appends {"op":"error","channel":..,"code":..,
// "message":..}: an error about a channel no request of the client named.
func appendChannelError(dst []byte, channel, code, msg string) []byte {
	dst = append(dst, `{"op":"error","channel":`...)
	// The name came from a token and may not be valid: JSON-quote it.
	ch, _ := json.Marshal(channel)
	dst = append(dst, ch...)
	dst = append(dst, `,"code":`...)
	dst = strconv.AppendQuote(dst, code)
	dst = append(dst, `,"message":`...)
	m, _ := json.Marshal(msg)
	dst = append(dst, m...)
	return append(dst, '}')
}
