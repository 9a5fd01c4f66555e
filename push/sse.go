package push

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"strconv"

	"github.com/gobwas/ws"

	"github.com/herald-ws/herald/auth"
	"github.com/herald-ws/herald/broker"
	"github.com/herald-ws/herald/codec"
	"github.com/herald-ws/herald/hub"
	"github.com/herald-ws/herald/session"
)

// SSE serves GET /sse?channel=a&channel=b as Server-Sent Events: a
// receive-only stream of the channels' publications, each one event with
// the /ws message JSON as its data. It implements session.StreamHandler.
//
// An event's id is the client's position: "<channel>:<offset>" for a
// stream of one channel, "<channel>:<offset>,<channel>:<offset>..." (every
// channel it has a position on) for several. A reconnecting EventSource
// sends the last id back as Last-Event-ID (or a client passes it as
// ?since=), and every channel named there is recovered from history exactly
// as a /ws subscribe with since: no gap, no duplicate. ?since=N with one
// channel means that channel's offset N.
//
// Each subscription is acknowledged by an event "subscribed" whose data is
// {"op":"ack","channel":..,"offset":..} (with "recovered" when a position
// was given; false: publications were missed), and a failed subscribe by an
// event "subscribe_error" with the /ws error JSON plus the channel (not
// "error", which an EventSource also fires for its own failures).
//
// Token and permissions are those of /ws: a missing or bad token is 401, a
// channel the token does not allow 403, a malformed request 400.
type SSE struct {
	cfg  Config
	anon auth.Identity
}

// NewSSE returns the /sse handler; cfg is the /ws handler's (publishing
// settings are unused: the stream is receive-only).
func NewSSE(cfg Config) *SSE {
	return &SSE{cfg: cfg, anon: auth.Identity{Anonymous: true}}
}

// sseClient is one stream's state, in session.Value; its loop only. An
// idle server holds one per stream, so the first channel lives inside it
// (most streams have one): one allocation, not two.
type sseClient struct {
	chans []sseChan
	one   [1]sseChan
}

// sseChan is one channel of a stream and the client's position on it.
type sseChan struct {
	name string
	sub  *hub.Subscription
	// pos is the client's position: the one it gave, then the one its
	// ack set, then the offset of each event sent.
	pos   uint64
	known bool // pos holds a position
	acked bool // a poll's: the channel's subscribe answered (in known's padding)
}

// AppendEventID implements hub.EventStream.
func (c *sseClient) AppendEventID(dst []byte, channel string, offset uint64) ([]byte, bool) {
	if ch := c.find(channel); ch != nil {
		ch.pos, ch.known = offset, true
	}
	if len(c.chans) < 2 {
		return dst, false
	}
	return c.appendPositions(dst), true
}

func (c *sseClient) appendPositions(dst []byte) []byte {
	first := true
	for i := range c.chans {
		pos, ok := c.chans[i].pos, c.chans[i].known
		if !ok {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, c.chans[i].name...)
		dst = append(dst, ':')
		dst = strconv.AppendUint(dst, pos, 10)
	}
	return dst
}

// errBadPosition refuses a Last-Event-ID or since that is not a list of
// channel:offset pairs.
var errBadPosition = errors.New("Last-Event-ID or since must be <channel>:<offset>[,<channel>:<offset>...]")

// Authorize checks the token, the channels and the positions; the stream
// opens only if all of them pass.
func (h *SSE) Authorize(s *session.Session, r *codec.Request) (int, string) {
	c := &sseClient{}
	if status, body := parseStream(&h.cfg, h.anon, r, c); status != 0 {
		return status, body
	}
	s.Value = c
	return 0, ""
}

// parseStream reads what /sse and /poll share: the token (checked as on
// /ws), the channels (valid, allowed, at most -max-channels-per-conn) and
// the positions (Last-Event-ID, else ?since=). A non-zero status refuses
// the request with body.
func parseStream(cfg *Config, anon auth.Identity, r *codec.Request, c *sseClient) (status int, body string) {
	id := anon
	if cfg.Verifier != nil {
		v, err := cfg.Verifier.Verify(tokenOf(r))
		if err != nil {
			return 401, err.Error()
		}
		id = v
	}
	var since string
	for q := r.RawQuery; len(q) > 0; {
		var pair []byte
		pair, q, _ = bytes.Cut(q, []byte("&"))
		key, val, _ := bytes.Cut(pair, []byte("="))
		switch string(key) {
		case "channel":
			name, err := url.QueryUnescape(string(val))
			if err != nil || !auth.ValidChannel(name) {
				return 400, "channel must be 1-255 bytes of [A-Za-z0-9:_.-]"
			}
			if c.find(name) != nil {
				return 400, "channel " + name + " named twice"
			}
			if !id.CanSubscribe(name) {
				return 403, "not allowed on channel " + name
			}
			if c.chans == nil {
				c.chans = c.one[:0]
			}
			c.chans = append(c.chans, sseChan{name: name})
		case "since":
			v, err := url.QueryUnescape(string(val))
			if err != nil {
				return 400, errBadPosition.Error()
			}
			since = v
		}
	}
	if len(c.chans) == 0 {
		return 400, "name at least one channel (?channel=)"
	}
	if max := cfg.MaxChannelsPerConn; max > 0 && len(c.chans) > max {
		return 400, fmt.Sprintf("at most %d channels per connection", max)
	}
	if len(r.LastEventID) > 0 {
		since = string(r.LastEventID) // the browser's own resume point wins
	}
	if since != "" {
		if err := c.setPositions(since); err != nil {
			return 400, err.Error()
		}
	}
	return 0, ""
}

// setPositions reads "<channel>:<offset>,..." (or, for one channel, a bare
// offset). Channels not in the stream are ignored: an id may name a
// channel the client has since dropped.
func (c *sseClient) setPositions(v string) error {
	if off, err := strconv.ParseUint(v, 10, 64); err == nil {
		if len(c.chans) != 1 {
			return errBadPosition
		}
		c.chans[0].pos, c.chans[0].known = off, true
		return nil
	}
	for _, pair := range bytes.Split([]byte(v), []byte(",")) {
		i := bytes.LastIndexByte(pair, ':')
		if i <= 0 {
			return errBadPosition
		}
		off, err := strconv.ParseUint(string(pair[i+1:]), 10, 64)
		if err != nil {
			return errBadPosition
		}
		for k := range c.chans {
			if c.chans[k].name == string(pair[:i]) {
				c.chans[k].pos, c.chans[k].known = off, true
			}
		}
	}
	return nil
}

// AppendHead answers 200 with text/event-stream, uncached and unbuffered
// by proxies (X-Accel-Buffering is nginx's), with CORS for the origin the
// session admitted, and a retry hint so that browsers reconnect quickly.
func (h *SSE) AppendHead(dst []byte, _ *session.Session, r *codec.Request) []byte {
	dst = append(dst, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nX-Accel-Buffering: no\r\n"...)
	dst = appendCORS(dst, string(r.Origin))
	return append(dst, "\r\nretry: 1000\n\n"...)
}

// appendCORS lets the page at origin read the response: the session
// admitted the origin already (-allowed-origins), so it is echoed.
func appendCORS(dst []byte, origin string) []byte {
	if origin == "" {
		return dst
	}
	dst = append(dst, "Access-Control-Allow-Origin: "...)
	dst = append(dst, origin...)
	return append(dst, "\r\nVary: Origin\r\n"...)
}

// sseHeartbeat is an SSE comment: clients ignore it, proxies see traffic.
var sseHeartbeat = []byte(": heartbeat\n\n")

// Heartbeat implements session.StreamHandler.
func (h *SSE) Heartbeat() []byte { return sseHeartbeat }

// OnOpen subscribes the stream to its channels, recovering those it has a
// position on.
func (h *SSE) OnOpen(s *session.Session) {
	c, _ := s.Value.(*sseClient)
	if c == nil {
		return
	}
	c.subscribeAll(h.cfg.Hub, s, func(name string, since *uint64, res hub.SubscribeResult) {
		h.ack(s, c, name, since, res)
	})
}

// subscribeAll subscribes s to each of c's channels, from its known
// position if it has one; ack hears each channel's outcome. Must run on
// s's loop.
func (c *sseClient) subscribeAll(hb *hub.Hub, s *session.Session, ack func(name string, since *uint64, res hub.SubscribeResult)) {
	for i := range c.chans {
		ch := &c.chans[i]
		var since *uint64
		if ch.known {
			v := ch.pos
			since = &v
		}
		name := ch.name
		sub := hb.Subscribe(s, name, since, func(res hub.SubscribeResult) { ack(name, since, res) })
		if sub != nil && !sub.Removed() {
			ch.sub = sub
			ch.name = sub.Channel() // the hub's copy: the request's goes
		}
	}
}

// ack sends a channel's "subscribed" or "subscribe_error" event.
func (h *SSE) ack(s *session.Session, c *sseClient, name string, since *uint64, res hub.SubscribeResult) {
	ch := c.find(name)
	if ch == nil {
		return
	}
	b := replyPool.Get()
	defer replyPool.Put(b)
	if res.Err != nil {
		ch.sub = nil
		code := CodeUnavailable
		if errors.Is(res.Err, hub.ErrTooManyChannels) || errors.Is(res.Err, broker.ErrTooManyChannels) {
			code = CodeTooManyChannels
		}
		j := appendError(nil, nil, code, "subscribe failed: "+res.Err.Error())
		j = append(append(j[:len(j)-1], `,"channel":"`...), name...)
		j = append(j, `"}`...)
		b.B = append(b.B[:0], "event: subscribe_error\n"...)
		b.B = hub.AppendEventData(b.B, j)
		s.SendFrame(b.B)
		return
	}
	if since == nil || *since > res.Offset {
		ch.pos = res.Offset // positioned at the top: what the hub sends next follows it
	}
	ch.known = true
	var rec *bool
	if since != nil {
		rec = &res.Recovered
	}
	// The ack JSON goes at the end of the pooled buffer and the event is
	// built in front of it, in the same buffer: nothing is allocated per
	// stream.
	j := appendAck(b.B[:0], nil, true, res.Offset, rec)
	j = append(append(j[:len(j)-1], `,"channel":"`...), name...)
	j = append(j, `"}`...)
	n := len(j)
	ev := append(j, "id: "...)
	ev = c.appendPositions(ev)
	ev = append(ev, "\nevent: subscribed\n"...)
	ev = hub.AppendEventData(ev, ev[:n])
	b.B = ev
	s.SendFrame(ev[n:])
}

func (c *sseClient) find(name string) *sseChan {
	for i := range c.chans {
		if c.chans[i].name == name {
			return &c.chans[i]
		}
	}
	return nil
}

// OnMessage is never called: a stream reads nothing after its request.
func (h *SSE) OnMessage(*session.Session, ws.OpCode, []byte) {}

// OnClose drops the stream's subscriptions.
func (h *SSE) OnClose(s *session.Session, _ session.CloseReason) {
	c, ok := s.Value.(*sseClient)
	if !ok {
		return
	}
	for i := range c.chans {
		h.cfg.Hub.Unsubscribe(c.chans[i].sub)
		c.chans[i].sub = nil
	}
}
