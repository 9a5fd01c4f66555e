package push

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/valyala/bytebufferpool"

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
	// PresenceChannels are the patterns of the channels that keep
	// presence (presence.go); PresenceJoinLeave sends their joins and
	// leaves to their subscribers through Notify (nil: Hub.Notify, this
	// node only).
	PresenceChannels  []string
	PresenceJoinLeave bool
	Notify            func(channel string, payload []byte)
	// RefreshGrace is how long a connection whose token expired has to
	// send a refresh before it is closed with 4001 (see refresh.go);
	// 0 means DefaultRefreshGrace.
	RefreshGrace time.Duration
	// AutoPersonal subscribes every authenticated connection to its
	// user:<id> channel on connect (see subs.go).
	AutoPersonal bool
}

// Handler serves the push protocol. It implements session.Handler.
type Handler struct {
	cfg      Config
	anon     auth.Identity // what every connection is in anonymous mode
	presence presenceTable
	tag      string        // connection ids' prefix, random per node
	conns    atomic.Uint64 // connection ids handed out
}

// New returns a Handler.
func New(cfg Config) *Handler {
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = 5 * time.Second
	}
	if cfg.RefreshGrace <= 0 {
		cfg.RefreshGrace = DefaultRefreshGrace
	}
	return &Handler{cfg: cfg, anon: auth.Identity{Anonymous: true, Publish: cfg.ClientPublish}, tag: newNodeTag()}
}

// client is one connection's push state, kept in session.Value. Only the
// connection's loop touches it. An anonymous connection gets one only when
// it first subscribes or publishes: until then its identity is the
// handler's anon and it holds no state, so an idle server pays nothing per
// connection here.
//
// It is 128 bytes (a malloc size class), which every connection with a
// token holds: keep it there.
type client struct {
	id   auth.Identity
	subs subSet
	// pubTAT is the publish rate limiter (a token bucket kept as GCRA):
	// when its bucket is next full, in unix nanoseconds.
	pubTAT int64
	// deadline is when the token expires or, once asked (the server sent
	// its refresh request), when the connection is closed without a
	// refresh; unix nanoseconds, 0 without a token. See refresh.go.
	deadline int64
	// publishing is set while one publish is with the broker; later ones
	// wait in queue, so a connection's publications keep the order it
	// sent them in (the worker pool would otherwise race them).
	publishing bool
	asked      bool
	refreshTAT uint32        // refresh rate limiter, unix seconds (refresh.go)
	queue      *publishQueue // nil until a publish had to wait
	member     *membership   // nil until it joins a presence channel (presence.go)
}

// publishQueue holds the publishes waiting behind the one in flight.
type publishQueue struct {
	items []pendingPublish
}

// maxIDLen bounds a request id: 20 bytes hold any 64-bit integer, and a
// client cannot make the server keep or echo more.
const maxIDLen = 20

// replyPool holds the buffers replies are encoded into, one per message
// being answered, so no connection keeps its largest reply's buffer.
var replyPool bytebufferpool.Pool

// reply encodes with enc into a pooled buffer and queues it on s.
func reply(s *session.Session, enc func([]byte) []byte) {
	b := replyPool.Get()
	b.B = enc(b.B[:0])
	s.Send(ws.OpText, b.B)
	replyPool.Put(b)
}

// newClient starts with a full publish bucket: the first publish is always
// allowed.
func newClient(id auth.Identity) *client { return &client{id: id} }

// clientOf returns s's push state, creating it on first need.
func (h *Handler) clientOf(s *session.Session) *client {
	if c, ok := s.Value.(*client); ok {
		return c
	}
	c := newClient(h.anon)
	s.Value = c
	return c
}

// identityOf is s's identity, without creating state for it.
func (h *Handler) identityOf(s *session.Session) *auth.Identity {
	if c, ok := s.Value.(*client); ok {
		return &c.id
	}
	return &h.anon
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
	if status, body := negotiate(r); status != 0 {
		return status, body
	}
	if h.cfg.Verifier == nil {
		return 0, "" // anonymous: state is created when it is needed
	}
	g, err := h.cfg.Verifier.VerifyGrant(tokenOf(r))
	if err != nil {
		return 401, err.Error()
	}
	c := newClient(g.Identity)
	c.deadline = g.Expires.UnixNano()
	s.Value = c
	if len(g.Subs) > 0 {
		// Until OnOpen subscribes them (subs.go).
		s.Value = &upgrading{c: c, subs: g.Subs}
	}
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

// OnOpen subscribes the connection to the channels its token grants
// (subs.go); otherwise a client speaks first.
func (h *Handler) OnOpen(s *session.Session) { h.subscribeGranted(s) }

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
	for c.member != nil && len(c.member.channels) > 0 {
		h.left(c, c.member.channels[len(c.member.channels)-1])
	}
}

// OnMessage handles one client frame.
func (h *Handler) OnMessage(s *session.Session, op ws.OpCode, payload []byte) {
	var req request
	if op != ws.OpText {
		h.replyError(s, nil, CodeBadRequest, "frames must be JSON text")
		return
	}
	if err := json.Unmarshal(payload, &req); err != nil {
		h.replyError(s, nil, CodeBadRequest, "invalid JSON")
		return
	}
	if len(req.ID) > maxIDLen {
		h.replyError(s, nil, CodeBadRequest, "id must be a number of at most 20 characters")
		return
	}
	if !validID(req.ID) {
		h.replyError(s, nil, CodeBadRequest, "id must be a number")
		return
	}
	switch req.Op {
	case "ping":
		id := req.ID
		reply(s, func(b []byte) []byte { return appendPong(b, id) })
	case "subscribe":
		h.subscribe(s, &req)
	case "unsubscribe":
		h.unsubscribe(s, &req)
	case "publish":
		h.publish(s, &req)
	case "refresh":
		h.refresh(s, &req)
	case "":
		h.replyError(s, req.ID, CodeBadRequest, "missing op")
	default:
		h.replyError(s, req.ID, CodeUnknownOp, fmt.Sprintf("unknown op %q", req.Op))
	}
}

func (h *Handler) replyError(s *session.Session, id json.RawMessage, code, msg string) {
	reply(s, func(b []byte) []byte { return appendError(b, id, code, msg) })
}

// checkChannel validates the name and the permission to subscribe.
func (h *Handler) checkChannel(s *session.Session, req *request) bool {
	if !auth.ValidChannel(req.Channel) {
		h.replyError(s, req.ID, CodeBadRequest, "channel must be 1-255 bytes of [A-Za-z0-9:_.-]")
		return false
	}
	if !h.identityOf(s).CanSubscribe(req.Channel) {
		h.replyError(s, req.ID, CodeForbidden, "not allowed on channel "+req.Channel)
		return false
	}
	return true
}

func (h *Handler) subscribe(s *session.Session, req *request) {
	if !h.checkChannel(s, req) {
		return
	}
	c := h.clientOf(s)
	if c.subs.get(req.Channel) != nil {
		h.replyError(s, req.ID, CodeBadRequest, "already subscribed to "+req.Channel)
		return
	}
	if max := h.cfg.MaxChannelsPerConn; max > 0 && c.subs.len() >= max {
		h.replyError(s, req.ID, CodeTooManyChannels, fmt.Sprintf("at most %d channels per connection", max))
		return
	}
	id, channel, since := req.ID, req.Channel, req.Since
	if req.Last != nil && (since != nil || *req.Last < 1 || *req.Last > maxLast) {
		h.replyError(s, req.ID, CodeBadRequest, fmt.Sprintf("last must be 1-%d, and not given with since", maxLast))
		return
	}
	var sub *hub.Subscription
	ack := func(res hub.SubscribeResult) {
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
			h.replyError(s, id, code, "subscribe failed: "+res.Err.Error())
			return
		}
		var rec *bool
		if since != nil {
			rec = &res.Recovered
		}
		reply(s, func(b []byte) []byte { return appendAck(b, id, true, res.Offset, rec) })
		h.joined(c, channel)
	}
	if req.Last != nil {
		sub = h.cfg.Hub.SubscribeLast(s, channel, *req.Last, ack)
	} else {
		sub = h.cfg.Hub.Subscribe(s, channel, since, ack)
	}
	if sub != nil && !sub.Removed() {
		c.subs.add(sub)
	}
}

func (h *Handler) unsubscribe(s *session.Session, req *request) {
	if !auth.ValidChannel(req.Channel) {
		h.replyError(s, req.ID, CodeBadRequest, "channel must be 1-255 bytes of [A-Za-z0-9:_.-]")
		return
	}
	var sub *hub.Subscription
	c, ok := s.Value.(*client)
	if ok {
		sub = c.subs.get(req.Channel)
	}
	if sub == nil {
		h.replyError(s, req.ID, CodeBadRequest, "not subscribed to "+req.Channel)
		return
	}
	h.cfg.Hub.Unsubscribe(sub)
	c.subs.remove(sub)
	h.left(c, req.Channel)
	id := req.ID
	reply(s, func(b []byte) []byte { return appendAck(b, id, false, 0, nil) })
}

func (h *Handler) publish(s *session.Session, req *request) {
	if !auth.ValidChannel(req.Channel) {
		h.replyError(s, req.ID, CodeBadRequest, "channel must be 1-255 bytes of [A-Za-z0-9:_.-]")
		return
	}
	if !h.identityOf(s).CanPublish(req.Channel) {
		h.replyError(s, req.ID, CodeForbidden, "publishing to "+req.Channel+" is not allowed")
		return
	}
	if len(req.Data) == 0 {
		h.replyError(s, req.ID, CodeBadRequest, "publish needs data")
		return
	}
	// The session already refuses text frames that are not UTF-8; this
	// keeps the rule in force whatever delivered the frame.
	if err := pubcheck.Data(req.Data); err != nil {
		h.replyError(s, req.ID, CodeBadRequest, err.Error())
		return
	}
	var key string
	if req.IdempotencyKey != nil {
		if err := pubcheck.IdempotencyKey(*req.IdempotencyKey); err != nil {
			h.replyError(s, req.ID, CodeBadRequest, err.Error())
			return
		}
		key = *req.IdempotencyKey
	}
	c := h.clientOf(s)
	if !c.allowPublish(h.cfg.PublishRate) {
		h.replyError(s, req.ID, CodeRateLimited, "publish rate limit exceeded")
		return
	}
	// A loop delivering the channel is behind: the publish is refused
	// rather than held (this loop must not wait), and nothing is stored.
	if h.cfg.Hub.Overloaded(req.Channel) {
		h.replyError(s, req.ID, CodeUnavailable, "overloaded: the event loops delivering "+req.Channel+" are behind; not stored, retry later")
		return
	}
	p := pendingPublish{id: req.ID, channel: req.Channel, data: []byte(req.Data), key: key}
	if c.publishing {
		if c.queue == nil {
			c.queue = &publishQueue{}
		}
		if len(c.queue.items) >= maxQueuedPublishes {
			h.replyError(s, req.ID, CodeRateLimited, "too many publishes waiting for the broker")
			return
		}
		c.queue.items = append(c.queue.items, p)
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
			h.replyError(s, p.id, CodeUnknownOutcome, "publish outcome unknown: "+err.Error()+
				"; a retry with the same idempotency_key is safe, without one it may publish twice")
		case err != nil:
			h.replyError(s, p.id, CodeUnavailable, "publish failed, not stored: "+err.Error())
		default:
			reply(s, func(b []byte) []byte {
				b = appendAck(b, p.id, true, res.Offset, nil)
				if res.Duplicate {
					b = append(b[:len(b)-1], `,"duplicate":true}`...)
				}
				return b
			})
		}
		if !s.Flush() {
			s.Abort(session.ClosePolicy)
		}
		if c.queue == nil || len(c.queue.items) == 0 {
			c.publishing = false
			return
		}
		q := c.queue
		next := q.items[0]
		q.items[0] = pendingPublish{}
		q.items = q.items[1:]
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
// It is kept as GCRA, in one field: a publish conforms when the bucket's
// "full again" time is at most (burst-1) emission intervals away, the
// same as a bucket holding at least one token.
func (c *client) allowPublish(rate float64) bool {
	if rate <= 0 {
		return true
	}
	now := time.Now().UnixNano()
	interval := 1e9 / rate
	tat := max(c.pubTAT, now)
	if float64(tat-now) > (max(rate, 1)-1)*interval {
		return false
	}
	c.pubTAT = tat + int64(interval)
	return true
}
