package push

import (
	"bytes"
	"errors"
	"strconv"
	"time"

	"github.com/gobwas/ws"
	"github.com/valyala/bytebufferpool"

	"github.com/herald-ws/herald/auth"
	"github.com/herald-ws/herald/broker"
	"github.com/herald-ws/herald/codec"
	"github.com/herald-ws/herald/hub"
	"github.com/herald-ws/herald/session"
)

// Poll serves long polling, GET /poll?channel=a&since=a:5&timeout=25s: it
// answers at once with every publication after the positions given, or
// holds the request on its event loop until a publication arrives or the
// timeout passes (the engine's sweep checks the deadline: no timer per
// request). The answer is
//
//	{"messages":[<the /ws message JSON>...],"since":{"a":9},"recovered":true}
//
// where since is the position to poll from next on every channel the
// client has one on, and recovered is false when some position reached
// back past the history. Channels, token, permissions and positions are
// read as for /sse (Last-Event-ID or since, "<channel>:<offset>,..." or a
// bare offset for one channel); timeout is a Go duration or seconds,
// default 25 s, 0 for an immediate answer, at most 5 minutes. The
// connection stays open for the next poll (HTTP/1.1 keep-alive).
// It implements session.StreamHandler and session.StreamTicker.
type Poll struct {
	cfg  Config
	anon auth.Identity
}

// NewPoll returns the /poll handler; cfg is the /ws handler's.
func NewPoll(cfg Config) *Poll { return &Poll{cfg: cfg, anon: auth.Identity{Anonymous: true}} }

// Long poll bounds.
const (
	DefaultPollTimeout = 25 * time.Second
	MaxPollTimeout     = 5 * time.Minute
	// maxPollBytes bounds the messages one answer gathers; the rest come
	// with the next poll, from history.
	maxPollBytes = 1 << 20
)

// pollClient is one held poll, in session.Value; its loop only.
//
// A server holds one per pending poll, so it is kept small (80 bytes, no
// more than an SSE stream's state and a word): the deadline is a 32-bit
// millisecond count, the flags share a byte, whether a channel's
// subscribe answered is kept in its sseChan's padding, the hub is found
// through the session's handler, and what only some polls need (an
// origin to echo, gathered messages, a failure) has its own allocation,
// made when it is needed.
type pollClient struct {
	st       sseClient  // channels and positions
	x        *pollExtra // nil until an origin, a message or a failure needs it
	deadline uint32     // pollClock milliseconds
	flags    pollFlags
}

// pollExtra is what a poll needs only sometimes.
type pollExtra struct {
	origin string                     // the admitted Origin, echoed for CORS
	msgs   *bytebufferpool.ByteBuffer // the gathered message JSON, comma-separated; pooled, nil while none
	fail   *pollFailure
}

type pollFlags uint8

const (
	pollImmediate   pollFlags = 1 << iota // timeout=0: answer as soon as every subscribe has
	pollUnrecovered                       // some position reached back past the history
	pollQueued                            // an answer check is queued on the loop
	pollAnswered
)

// pollClock is a poll deadline's time base: milliseconds since the
// process started, in 32 bits. It wraps every 49 days; deadlines are
// compared by their difference, which is exact for timeouts up to 24
// days (MaxPollTimeout is 5 minutes).
var pollEpoch = time.Now()

func pollClock(t time.Time) uint32 { return uint32(t.Sub(pollEpoch).Milliseconds()) }

// expired reports whether the deadline has passed at now.
func (p *pollClient) expired(now time.Time) bool { return int32(pollClock(now)-p.deadline) >= 0 }

func (p *pollClient) extra() *pollExtra {
	if p.x == nil {
		p.x = &pollExtra{}
	}
	return p.x
}

// allAcked reports whether every channel's subscribe has answered.
func (p *pollClient) allAcked() bool {
	for i := range p.st.chans {
		if !p.st.chans[i].acked {
			return false
		}
	}
	return true
}

// pollFailure is a failed subscribe's error.
type pollFailure struct{ code, msg string }

// Authorize reads the request; the poll is held only if it is valid.
func (h *Poll) Authorize(s *session.Session, r *codec.Request) (int, string) {
	p := &pollClient{}
	timeout := DefaultPollTimeout
	if status, body := parseStream(&h.cfg, h.anon, r, &p.st); status != 0 {
		return status, body
	}
	if v, ok := queryValue(r.RawQuery, "timeout"); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			secs, serr := strconv.ParseUint(v, 10, 32)
			if serr != nil {
				return 400, "timeout must be a duration (25s) or seconds"
			}
			d = time.Duration(secs) * time.Second
		}
		if d < 0 || d > MaxPollTimeout {
			return 400, "timeout must be between 0 and 5m"
		}
		timeout = d
	}
	if timeout == 0 {
		p.flags |= pollImmediate
	}
	p.deadline = pollClock(time.Now().Add(timeout))
	if len(r.Origin) > 0 {
		p.extra().origin = string(r.Origin)
	}
	s.Value = p
	return 0, ""
}

// queryValue is the first value of key in a raw query (not unescaped:
// the values read this way need no escapes).
func queryValue(q []byte, key string) (string, bool) {
	for len(q) > 0 {
		var pair []byte
		pair, q, _ = bytes.Cut(q, []byte("&"))
		if k, v, _ := bytes.Cut(pair, []byte("=")); string(k) == key {
			return string(v), true
		}
	}
	return "", false
}

// AppendHead appends nothing: the head goes out with the answer, whose
// length is known only then.
func (h *Poll) AppendHead(dst []byte, _ *session.Session, _ *codec.Request) []byte { return dst }

// Heartbeat is nil: a held poll sends nothing until it answers.
func (h *Poll) Heartbeat() []byte { return nil }

// OnOpen subscribes the poll to its channels, recovering from the
// positions given; the history comes back through Collect.
func (h *Poll) OnOpen(s *session.Session) {
	p, _ := s.Value.(*pollClient)
	if p == nil {
		return
	}
	p.st.subscribeAll(h.cfg.Hub, s, func(name string, since *uint64, res hub.SubscribeResult) {
		h.ack(s, p, name, since, res)
	})
}

func (h *Poll) ack(s *session.Session, p *pollClient, name string, since *uint64, res hub.SubscribeResult) {
	ch := p.st.find(name)
	if ch == nil {
		return
	}
	ch.acked = true
	if res.Err != nil {
		ch.sub = nil
		code := CodeUnavailable
		if errors.Is(res.Err, hub.ErrTooManyChannels) || errors.Is(res.Err, broker.ErrTooManyChannels) {
			code = CodeTooManyChannels
		}
		p.extra().fail = &pollFailure{code, "subscribe " + name + " failed: " + res.Err.Error()}
	} else {
		if since == nil || *since > res.Offset {
			ch.pos = res.Offset // positioned at the top
		}
		ch.known = true
		if since != nil && !res.Recovered {
			p.flags |= pollUnrecovered
		}
	}
	// Answer after the history this subscribe replays, if there is
	// something to say: a failure, or (every channel acked) a poll with
	// timeout=0 or messages gathered. Otherwise the poll waits: a message
	// the replay or a publication gathers queues the answer itself
	// (Collect), and the sweep ends it at its deadline.
	if res.Err != nil || (p.allAcked() && (p.flags&pollImmediate != 0 || p.gathered() > 0)) {
		p.queue(s)
	}
}

// Collect implements hub.Collector.
func (p *pollClient) Collect(s *session.Session, channel string, offset uint64, json []byte) {
	if p.flags&pollAnswered != 0 || p.gathered() >= maxPollBytes {
		return // the next poll gets it, from history
	}
	ch := p.st.find(channel)
	if ch == nil {
		return
	}
	ch.pos, ch.known = offset, true
	x := p.extra()
	if x.msgs == nil {
		x.msgs = replyPool.Get()
		x.msgs.B = x.msgs.B[:0]
	} else if len(x.msgs.B) > 0 {
		x.msgs.B = append(x.msgs.B, ',')
	}
	x.msgs.B = append(x.msgs.B, json...)
	p.queue(s)
}

// failure is the failed subscribe's error, nil while none failed.
func (p *pollClient) failure() *pollFailure {
	if p.x == nil {
		return nil
	}
	return p.x.fail
}

// gathered is the length of the message JSON gathered so far.
func (p *pollClient) gathered() int {
	if p.x == nil || p.x.msgs == nil {
		return 0
	}
	return len(p.x.msgs.B)
}

// release hands the gathered messages' buffer back to the pool.
func (p *pollClient) release() {
	if p.x != nil && p.x.msgs != nil {
		replyPool.Put(p.x.msgs)
		p.x.msgs = nil
	}
}

// queue has the poll answer, if it has something to say, once the loop
// has finished the task it is in (a drain, a replay): everything that
// task gathers goes into the same answer.
func (p *pollClient) queue(s *session.Session) {
	if p.flags&pollQueued != 0 {
		return
	}
	p.flags |= pollQueued
	_ = s.Loop().Exec(func() { p.flags &^= pollQueued; p.maybeAnswer(s, time.Now()) })
}

// TickStream answers a poll whose timeout passed.
func (h *Poll) TickStream(s *session.Session, now time.Time) {
	if p, ok := s.Value.(*pollClient); ok {
		p.maybeAnswer(s, now)
	}
}

// maybeAnswer answers when there are messages, a failure, or the deadline
// passed; otherwise the poll goes on waiting.
func (p *pollClient) maybeAnswer(s *session.Session, now time.Time) {
	if p.flags&pollAnswered != 0 || s.State() != session.StateOpen || s.Value != any(p) {
		return
	}
	if p.gathered() == 0 && p.failure() == nil && !p.expired(now) && !(p.flags&pollImmediate != 0 && p.allAcked()) {
		return
	}
	p.answer(s)
}

// answer writes the response, drops the poll's subscriptions and leaves
// the connection to its next request.
func (p *pollClient) answer(s *session.Session) {
	p.flags |= pollAnswered
	hb := s.StreamHandler().(*Poll).cfg.Hub
	for i := range p.st.chans {
		hb.Unsubscribe(p.st.chans[i].sub)
		p.st.chans[i].sub = nil
	}
	b := replyPool.Get()
	defer replyPool.Put(b)
	body := b.B[:0]
	status := "200 OK"
	if f := p.failure(); f != nil {
		status = "503 Service Unavailable"
		body = appendError(body, nil, f.code, f.msg)
	} else {
		body = append(body, `{"messages":[`...)
		if p.gathered() > 0 {
			body = append(body, p.x.msgs.B...)
		}
		body = append(body, `],"since":{`...)
		first := true
		for i := range p.st.chans {
			ch := &p.st.chans[i]
			if !ch.known {
				continue
			}
			if !first {
				body = append(body, ',')
			}
			first = false
			body = append(body, '"')
			body = append(body, ch.name...)
			body = append(body, `":`...)
			body = strconv.AppendUint(body, ch.pos, 10)
		}
		body = append(body, `},"recovered":`...)
		body = strconv.AppendBool(body, p.flags&pollUnrecovered == 0)
		body = append(body, '}')
	}
	n := len(body)
	out := append(body, "HTTP/1.1 "...)
	out = append(out, status...)
	out = append(out, "\r\nContent-Type: application/json\r\nCache-Control: no-store\r\nContent-Length: "...)
	out = strconv.AppendInt(out, int64(n), 10)
	out = append(out, "\r\n"...)
	if p.x != nil {
		out = appendCORS(out, p.x.origin)
	}
	out = append(out, "\r\n"...)
	out = append(out, out[:n]...)
	b.B = out
	p.release()
	s.SendFrame(out[n:])
	if !s.Flush() {
		s.Abort(session.ClosePeer)
		return
	}
	s.EndStream()
}

// OnMessage is never called.
func (h *Poll) OnMessage(*session.Session, ws.OpCode, []byte) {}

// OnClose drops the subscriptions of a poll whose connection closed
// before it answered.
func (h *Poll) OnClose(s *session.Session, _ session.CloseReason) {
	p, ok := s.Value.(*pollClient)
	if !ok {
		return
	}
	p.flags |= pollAnswered
	for i := range p.st.chans {
		h.cfg.Hub.Unsubscribe(p.st.chans[i].sub)
		p.st.chans[i].sub = nil
	}
	p.release()
}
