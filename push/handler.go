package push

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"time"

	"github.com/gobwas/ws"

	"github.com/herald-ws/herald/auth"
	"github.com/herald-ws/herald/broker"
	"github.com/herald-ws/herald/codec"
	"github.com/herald-ws/herald/hub"
	"github.com/herald-ws/herald/session"
)

// Config configures the /ws handler.
type Config struct {
	Hub    *hub.Hub
	Broker broker.Broker
	// Verifier checks tokens; nil means anonymous mode (public channels
	// only, no token needed).
	Verifier *auth.Verifier
	// ClientPublish lets anonymous clients publish (tokens carry their own
	// publish permission).
	ClientPublish      bool
	MaxChannelsPerConn int     // 0: no limit
	PublishRate        float64 // publishes per second per connection; 0: no limit
	PublishTimeout     time.Duration
}

// Handler serves the push protocol. It implements session.Handler.
type Handler struct {
	cfg Config
}

// New returns a Handler.
func New(cfg Config) *Handler {
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = 5 * time.Second
	}
	return &Handler{cfg: cfg}
}

// client is one connection's push state, kept in session.Value. Only the
// connection's loop touches it.
type client struct {
	id     auth.Identity
	subs   map[string]*hub.Subscription
	tokens float64 // publish rate limiter bucket
	refill int64   // unix nanoseconds of the last refill
	reply  []byte  // scratch for encoding replies
	// publishing is set while one publish is with the broker; later ones
	// wait in queued, so a connection's publications keep the order it
	// sent them in (the worker pool would otherwise race them).
	publishing bool
	queued     []pendingPublish
}

// maxQueuedPublishes bounds the publishes one connection may have waiting
// behind the one in flight, so a stalled broker cannot make a pipelining
// client grow server memory without bound.
const maxQueuedPublishes = 64

// pendingPublish is a checked publish waiting for the one in flight.
type pendingPublish struct {
	id      json.RawMessage
	channel string
	data    []byte
}

// Authorize checks the token (when a secret is configured) before the
// upgrade: a missing, bad or expired token is refused with 401.
func (h *Handler) Authorize(s *session.Session, r *codec.Request) (int, string) {
	c := &client{}
	if h.cfg.Verifier == nil {
		c.id = auth.Identity{Anonymous: true, Publish: h.cfg.ClientPublish}
	} else {
		id, err := h.cfg.Verifier.Verify(tokenOf(r))
		if err != nil {
			return 401, err.Error()
		}
		c.id = id
	}
	c.tokens = max(h.cfg.PublishRate, 1) // a full bucket: the first publish is always allowed
	c.refill = time.Now().UnixNano()
	s.Value = c
	return 0, ""
}

// tokenOf returns the token a client presents. An Authorization header
// with the Bearer scheme wins over the query: its token is used even when
// ?token= carries another (or when its own is malformed, which then fails
// verification), so a proxy that sets the header cannot be overridden from
// a URL. Another scheme (Basic, say) is not Herald's and is ignored.
// Otherwise the token is the value of the first token= pair of the query.
func tokenOf(r *codec.Request) string {
	if t, ok := bearerToken(r.Authorization); ok {
		return t
	}
	return queryToken(r.RawQuery)
}

// bearerToken reads "Bearer" 1*SP token68 (RFC 6750 section 2.1). The
// scheme is case-insensitive (RFC 9110 section 11.1). ok reports whether
// the header uses the Bearer scheme at all; t is empty when the
// credentials after it are missing or hold a space.
func bearerToken(a []byte) (t string, ok bool) {
	scheme, creds, _ := bytes.Cut(a, []byte(" "))
	if !bytes.EqualFold(scheme, []byte("Bearer")) {
		return "", false
	}
	creds = bytes.TrimLeft(creds, " ")
	if bytes.ContainsAny(creds, " \t") {
		return "", true
	}
	return string(creds), true
}

// queryToken finds the first token= pair of a raw query itself, pair by
// pair, rather than with url.ParseQuery: that fails the whole query on one
// malformed pair (a stray %zz, a ';' from an old form encoder), which would
// hide a valid token from a client that never wrote the bad pair. Only the
// token's value is unescaped; if that fails, the token is empty and
// verification refuses it.
func queryToken(q []byte) string {
	for len(q) > 0 {
		var pair []byte
		pair, q, _ = bytes.Cut(q, []byte("&"))
		key, val, _ := bytes.Cut(pair, []byte("="))
		if string(key) != "token" {
			continue
		}
		t, err := url.QueryUnescape(string(val))
		if err != nil {
			return ""
		}
		return t
	}
	return ""
}

// OnOpen does nothing: a client speaks first.
func (h *Handler) OnOpen(*session.Session) {}

// OnClose drops every subscription of the connection.
func (h *Handler) OnClose(s *session.Session, _ session.CloseReason) {
	c, ok := s.Value.(*client)
	if !ok {
		return
	}
	for _, sub := range c.subs {
		h.cfg.Hub.Unsubscribe(sub)
	}
	c.subs = nil
}

// OnMessage handles one client frame.
func (h *Handler) OnMessage(s *session.Session, op ws.OpCode, payload []byte) {
	c := s.Value.(*client)
	var req request
	if op != ws.OpText {
		h.replyError(s, c, nil, CodeBadRequest, "frames must be JSON text")
		return
	}
	if err := json.Unmarshal(payload, &req); err != nil {
		h.replyError(s, c, nil, CodeBadRequest, "invalid JSON")
		return
	}
	if !validID(req.ID) {
		h.replyError(s, c, nil, CodeBadRequest, "id must be a number")
		return
	}
	switch req.Op {
	case "ping":
		c.reply = appendPong(c.reply[:0], req.ID)
		s.Send(ws.OpText, c.reply)
	case "subscribe":
		h.subscribe(s, c, &req)
	case "unsubscribe":
		h.unsubscribe(s, c, &req)
	case "publish":
		h.publish(s, c, &req)
	case "":
		h.replyError(s, c, req.ID, CodeBadRequest, "missing op")
	default:
		h.replyError(s, c, req.ID, CodeUnknownOp, fmt.Sprintf("unknown op %q", req.Op))
	}
}

func (h *Handler) replyError(s *session.Session, c *client, id json.RawMessage, code, msg string) {
	c.reply = appendError(c.reply[:0], id, code, msg)
	s.Send(ws.OpText, c.reply)
}

// checkChannel validates the name and the permission to subscribe.
func (h *Handler) checkChannel(s *session.Session, c *client, req *request) bool {
	if !auth.ValidChannel(req.Channel) {
		h.replyError(s, c, req.ID, CodeBadRequest, "channel must be 1-255 bytes of [A-Za-z0-9:_.-]")
		return false
	}
	if !c.id.CanSubscribe(req.Channel) {
		h.replyError(s, c, req.ID, CodeForbidden, "not allowed on channel "+req.Channel)
		return false
	}
	return true
}

func (h *Handler) subscribe(s *session.Session, c *client, req *request) {
	if !h.checkChannel(s, c, req) {
		return
	}
	if _, dup := c.subs[req.Channel]; dup {
		h.replyError(s, c, req.ID, CodeBadRequest, "already subscribed to "+req.Channel)
		return
	}
	if max := h.cfg.MaxChannelsPerConn; max > 0 && len(c.subs) >= max {
		h.replyError(s, c, req.ID, CodeTooManyChannels, fmt.Sprintf("at most %d channels per connection", max))
		return
	}
	if c.subs == nil {
		c.subs = make(map[string]*hub.Subscription, 2)
	}
	id, channel, since := req.ID, req.Channel, req.Since
	sub := h.cfg.Hub.Subscribe(s, channel, since, func(res hub.SubscribeResult) {
		if res.Err != nil {
			if cur := c.subs[channel]; cur != nil && cur.Closed() {
				delete(c.subs, channel)
			}
			h.replyError(s, c, id, CodeUnavailable, "subscribe failed: "+res.Err.Error())
			return
		}
		var rec *bool
		if since != nil {
			rec = &res.Recovered
		}
		c.reply = appendAck(c.reply[:0], id, true, res.Offset, rec)
		s.Send(ws.OpText, c.reply)
	})
	if sub != nil {
		c.subs[channel] = sub
	}
}

func (h *Handler) unsubscribe(s *session.Session, c *client, req *request) {
	if !auth.ValidChannel(req.Channel) {
		h.replyError(s, c, req.ID, CodeBadRequest, "channel must be 1-255 bytes of [A-Za-z0-9:_.-]")
		return
	}
	sub, ok := c.subs[req.Channel]
	if !ok {
		h.replyError(s, c, req.ID, CodeBadRequest, "not subscribed to "+req.Channel)
		return
	}
	h.cfg.Hub.Unsubscribe(sub)
	delete(c.subs, req.Channel)
	c.reply = appendAck(c.reply[:0], req.ID, false, 0, nil)
	s.Send(ws.OpText, c.reply)
}

func (h *Handler) publish(s *session.Session, c *client, req *request) {
	if !auth.ValidChannel(req.Channel) {
		h.replyError(s, c, req.ID, CodeBadRequest, "channel must be 1-255 bytes of [A-Za-z0-9:_.-]")
		return
	}
	if !c.id.CanPublish(req.Channel) {
		h.replyError(s, c, req.ID, CodeForbidden, "publishing to "+req.Channel+" is not allowed")
		return
	}
	if len(req.Data) == 0 {
		h.replyError(s, c, req.ID, CodeBadRequest, "publish needs data")
		return
	}
	if !c.allowPublish(h.cfg.PublishRate) {
		h.replyError(s, c, req.ID, CodeRateLimited, "publish rate limit exceeded")
		return
	}
	p := pendingPublish{id: req.ID, channel: req.Channel, data: []byte(req.Data)}
	if c.publishing {
		if len(c.queued) >= maxQueuedPublishes {
			h.replyError(s, c, req.ID, CodeRateLimited, "too many publishes waiting for the broker")
			return
		}
		c.queued = append(c.queued, p)
		return
	}
	c.publishing = true
	h.startPublish(s, c, p)
}

// startPublish hands p to the broker off the loop; its reply is sent on the
// loop, which then starts the next queued publish. Must run on s's loop.
func (h *Handler) startPublish(s *session.Session, c *client, p pendingPublish) {
	done := func(off uint64, err error) { // on s's loop
		if err != nil {
			h.replyError(s, c, p.id, CodeUnavailable, "publish failed: "+err.Error())
		} else {
			c.reply = appendAck(c.reply[:0], p.id, true, off, nil)
			s.Send(ws.OpText, c.reply)
		}
		if !s.Flush() {
			s.Abort(session.ClosePolicy)
		}
		if len(c.queued) == 0 {
			c.publishing = false
			return
		}
		next := c.queued[0]
		c.queued[0] = pendingPublish{}
		c.queued = c.queued[1:]
		h.startPublish(s, c, next)
	}
	accepted := h.cfg.Hub.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), h.cfg.PublishTimeout)
		defer cancel()
		res, err := h.cfg.Broker.Publish(ctx, p.channel, p.data, broker.PublishOptions{})
		_ = s.Loop().Exec(func() { done(res.Offset, err) })
	})
	if !accepted {
		done(0, hub.ErrBusy)
	}
}

// allowPublish is a token bucket: rate per second, burst of max(rate, 1).
func (c *client) allowPublish(rate float64) bool {
	if rate <= 0 {
		return true
	}
	now := time.Now().UnixNano()
	burst := max(rate, 1)
	c.tokens = min(burst, c.tokens+rate*float64(now-c.refill)/1e9)
	c.refill = now
	if c.tokens < 1 {
		return false
	}
	c.tokens--
	return true
}
