package push

import (
	"strconv"
	"time"

	"github.com/gobwas/ws"

	"github.com/herald-ws/herald/session"
)

// DefaultRefreshGrace is Config.RefreshGrace's default.
const DefaultRefreshGrace = 10 * time.Second

// Token lifetime on a long connection. The token's exp is checked at the
// upgrade and then by OnTick, which the engine's per-loop sweep calls for
// every open connection (no timer per connection): once exp passes, the
// server sends {"op":"refresh"} and the client has Config.RefreshGrace to
// send {"op":"refresh","token":"..."}; otherwise the connection is closed
// with 4001 "token expired". A client may refresh at any time before,
// too. The new token must be for the same user; its permissions replace
// the old ones, and a subscription they no longer allow is dropped with
// an {"op":"unsubscribed","channel":..,"code":"forbidden"} event before
// the refresh's ack.

// The engine's sweep reaches OnTick only through this interface.
var _ session.Ticker = (*Handler)(nil)

// OnTick asks for a refresh once the token expired and closes the
// connection when the grace passed without one. It implements
// session.Ticker and runs on s's loop; a connection without a token pays
// one type assertion.
func (h *Handler) OnTick(s *session.Session, now time.Time) {
	c, ok := s.Value.(*client)
	if !ok || c.deadline == 0 {
		return
	}
	t := now.UnixNano()
	switch {
	case t < c.deadline:
	case !c.asked:
		c.asked = true
		c.deadline = t + int64(h.cfg.RefreshGrace)
		s.Send(ws.OpText, refreshRequest)
		s.Flush()
	default:
		s.Close(session.CloseTokenExpired, "token expired")
		s.Flush()
	}
}

// refreshRequest is the server's request for a new token.
var refreshRequest = []byte(`{"op":"refresh"}`)

func (h *Handler) refresh(s *session.Session, req *request) {
	if h.cfg.Verifier == nil {
		h.replyError(s, req.ID, CodeBadRequest, "refresh needs token authentication; this server takes anonymous connections")
		return
	}
	c, ok := s.Value.(*client)
	if !ok {
		h.replyError(s, req.ID, CodeBadRequest, "connection has no token")
		return
	}
	if !c.allowRefresh(time.Now().UnixNano()) {
		h.replyError(s, req.ID, CodeRateLimited, "refresh rate limit exceeded")
		return
	}
	g, err := h.cfg.Verifier.VerifyGrant(req.Token)
	if err != nil {
		h.replyError(s, req.ID, CodeInvalidToken, "refresh refused: "+err.Error())
		return
	}
	if g.User != c.id.User {
		h.replyError(s, req.ID, CodeForbidden, "refresh token is for another user")
		return
	}
	// Its subs are ignored: they apply on connect only.
	c.id = g.Identity
	c.deadline = g.Expires.UnixNano()
	c.asked = false
	// Walk backwards: remove swaps the last entry into the hole.
	for i := len(c.subs.list) - 1; i >= 0; i-- {
		if i >= len(c.subs.list) {
			continue
		}
		sub := c.subs.list[i]
		if ch := sub.Channel(); !c.id.CanSubscribe(ch) {
			h.cfg.Hub.Unsubscribe(sub)
			c.subs.remove(sub)
			reply(s, func(b []byte) []byte { return appendUnsubscribed(b, ch, CodeForbidden) })
		}
	}
	rid := req.ID
	reply(s, func(b []byte) []byte { return appendAck(b, rid, false, 0, nil) })
}

// A refresh verifies a signature on the loop (tens of microseconds for
// RS256 and ES256), so a connection may attempt refreshBurst of them at
// once and then one per refreshInterval; the others are rate_limited.
const (
	refreshBurst    = 8
	refreshInterval = time.Second // allowRefresh counts in whole seconds
)

// allowRefresh is a GCRA limiter in one field: refreshTAT is when the
// connection's refresh budget is next full, in unix seconds (a uint32
// fits in the client's padding).
func (c *client) allowRefresh(now int64) bool {
	sec := uint32(now / int64(time.Second))
	tat := max(c.refreshTAT, sec)
	if tat-sec > refreshBurst-1 {
		return false
	}
	c.refreshTAT = tat + 1
	return true
}

// appendUnsubscribed appends {"op":"unsubscribed","channel":..,"code":..}:
// the server dropped a subscription the client did not ask to drop.
func appendUnsubscribed(dst []byte, channel, code string) []byte {
	dst = append(dst, `{"op":"unsubscribed","channel":`...)
	dst = strconv.AppendQuote(dst, channel)
	dst = append(dst, `,"code":`...)
	dst = strconv.AppendQuote(dst, code)
	return append(dst, '}')
}
