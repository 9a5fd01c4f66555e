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
	if !ok || c.exp == 0 {
		return
	}
	t := now.UnixNano()
	switch {
	case c.refreshBy == 0 && t >= c.exp:
		c.refreshBy = t + int64(h.cfg.RefreshGrace)
		s.Send(ws.OpText, refreshRequest)
		s.Flush()
	case c.refreshBy != 0 && t >= c.refreshBy:
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
	id, err := h.cfg.Verifier.Verify(req.Token)
	if err != nil {
		h.replyError(s, req.ID, CodeInvalidToken, "refresh refused: "+err.Error())
		return
	}
	if id.User != c.id.User {
		h.replyError(s, req.ID, CodeForbidden, "refresh token is for another user")
		return
	}
	id.Subs = nil // subs apply on connect only
	c.id = id
	c.exp = id.Expires.UnixNano()
	c.refreshBy = 0
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
	refreshInterval = time.Second
)

// allowRefresh is a GCRA limiter in one field: refreshTAT is when the
// connection's refresh budget is next full (unix nanoseconds).
func (c *client) allowRefresh(now int64) bool {
	tat := max(c.refreshTAT, now)
	if tat-now > (refreshBurst-1)*int64(refreshInterval) {
		return false
	}
	c.refreshTAT = tat + int64(refreshInterval)
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
