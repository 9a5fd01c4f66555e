package push

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/gobwas/ws"

	"github.com/herald-ws/herald/auth"
	"github.com/herald-ws/herald/broker"
	"github.com/herald-ws/herald/codec"
	"github.com/herald-ws/herald/hub"
	"github.com/herald-ws/herald/internal/pubcheck"
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
	subs   subSet
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
	key     string // idempotency key; "" for none
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

// tokenOf takes the token from ?token= or an Authorization: Bearer header.
func tokenOf(r *codec.Request) string {
	if len(r.RawQuery) > 0 {
		if q, err := url.ParseQuery(string(r.RawQuery)); err == nil {
			if t := q.Get("token"); t != "" {
				return t
			}
		}
	}
	if a := string(r.Authorization); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
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
	for _, sub := range c.subs.list {
		h.cfg.Hub.Unsubscribe(sub)
	}
	c.subs = subSet{}
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
	if c.subs.get(req.Channel) != nil {
		h.replyError(s, c, req.ID, CodeBadRequest, "already subscribed to "+req.Channel)
		return
	}
	if max := h.cfg.MaxChannelsPerConn; max > 0 && c.subs.len() >= max {
		h.replyError(s, c, req.ID, CodeTooManyChannels, fmt.Sprintf("at most %d channels per connection", max))
		return
	}
	id, channel, since := req.ID, req.Channel, req.Since
	var sub *hub.Subscription
	sub = h.cfg.Hub.Subscribe(s, channel, since, func(res hub.SubscribeResult) {
		if res.Err != nil {
			// Only this subscribe's own entry goes: a refused subscribe
			// leaves nothing behind, so a retry is a fresh subscribe and
			// does not count against -max-channels-per-conn.
			if sub != nil {
				c.subs.remove(sub)
			}
			code := CodeUnavailable
			if errors.Is(res.Err, hub.ErrTooManyChannels) || errors.Is(res.Err, broker.ErrTooManyChannels) {
				code = CodeTooManyChannels
			}
			h.replyError(s, c, id, code, "subscribe failed: "+res.Err.Error())
			return
		}
		var rec *bool
		if since != nil {
			rec = &res.Recovered
		}
		c.reply = appendAck(c.reply[:0], id, true, res.Offset, rec)
		s.Send(ws.OpText, c.reply)
	})
	if sub != nil && !sub.Removed() {
		c.subs.add(sub)
	}
}

func (h *Handler) unsubscribe(s *session.Session, c *client, req *request) {
	if !auth.ValidChannel(req.Channel) {
		h.replyError(s, c, req.ID, CodeBadRequest, "channel must be 1-255 bytes of [A-Za-z0-9:_.-]")
		return
	}
	sub := c.subs.get(req.Channel)
	if sub == nil {
		h.replyError(s, c, req.ID, CodeBadRequest, "not subscribed to "+req.Channel)
		return
	}
	h.cfg.Hub.Unsubscribe(sub)
	c.subs.remove(sub)
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
	// The session already refuses text frames that are not UTF-8; this
	// keeps the rule in force whatever delivered the frame.
	if err := pubcheck.Data(req.Data); err != nil {
		h.replyError(s, c, req.ID, CodeBadRequest, err.Error())
		return
	}
	var key string
	if req.IdempotencyKey != nil {
		if err := pubcheck.IdempotencyKey(*req.IdempotencyKey); err != nil {
			h.replyError(s, c, req.ID, CodeBadRequest, err.Error())
			return
		}
		key = *req.IdempotencyKey
	}
	if !c.allowPublish(h.cfg.PublishRate) {
		h.replyError(s, c, req.ID, CodeRateLimited, "publish rate limit exceeded")
		return
	}
	p := pendingPublish{id: req.ID, channel: req.Channel, data: []byte(req.Data), key: key}
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
	done := func(res broker.PublishResult, err error) { // on s's loop
		switch {
		case errors.Is(err, broker.ErrUnknownOutcome) || errors.Is(err, context.DeadlineExceeded):
			h.replyError(s, c, p.id, CodeUnknownOutcome, "publish outcome unknown: "+err.Error()+
				"; a retry with the same idempotency_key is safe, without one it may publish twice")
		case err != nil:
			h.replyError(s, c, p.id, CodeUnavailable, "publish failed, not stored: "+err.Error())
		default:
			c.reply = appendAck(c.reply[:0], p.id, true, res.Offset, nil)
			if res.Duplicate {
				c.reply = append(c.reply[:len(c.reply)-1], `,"duplicate":true}`...)
			}
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
	accepted := h.cfg.Hub.Pool().Submit(func() {
		ctx, cancel := context.WithTimeout(context.Background(), h.cfg.PublishTimeout)
		defer cancel()
		res, err := h.cfg.Broker.Publish(ctx, p.channel, p.data, broker.PublishOptions{IdempotencyKey: p.key})
		_ = s.Loop().Exec(func() { done(res, err) })
	})
	if !accepted {
		done(broker.PublishResult{}, hub.ErrBusy)
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
