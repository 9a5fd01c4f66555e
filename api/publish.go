package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/herald-ws/herald/auth"
	"github.com/herald-ws/herald/broker"
	"github.com/herald-ws/herald/internal/pubcheck"
)

// publishRequest is the body of POST /api/publish.
type publishRequest struct {
	Channel        string          `json:"channel"`
	Channels       []string        `json:"channels"`
	Data           json.RawMessage `json:"data"`
	IdempotencyKey *string         `json:"idempotency_key"`
}

// publication is a checked publish request: what the loop publishes.
type publication struct {
	channels []string // repeats removed, first occurrences in order
	single   bool     // "channel": answer {"offset":N}
	data     []byte
	key      string
}

// refusal is a 4xx answer: nothing was published.
type refusal struct {
	status int
	msg    string
}

// decodePublish reads and checks a publish request. It publishes nothing;
// on a refusal the request must be answered with it.
func (a *handler) decodePublish(w http.ResponseWriter, r *http.Request) (publication, *refusal) {
	body, ref := a.readPublishBody(w, r)
	if ref != nil {
		return publication{}, ref
	}
	return a.checkPublish(r.Header, body)
}

// readPublishBody reads a publish or batch body of at most MaxBody bytes.
func (a *handler) readPublishBody(w http.ResponseWriter, r *http.Request) ([]byte, *refusal) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.cfg.MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &refusal{http.StatusRequestEntityTooLarge, fmt.Sprintf("body over the limit of %d bytes", mbe.Limit)}
		}
		return nil, &refusal{http.StatusBadRequest, "reading body: " + err.Error()}
	}
	return body, nil
}

// checkPublish applies every publish rule to the header and body.
func (a *handler) checkPublish(h http.Header, body []byte) (publication, *refusal) {
	bad := func(msg string) (publication, *refusal) {
		return publication{}, &refusal{http.StatusBadRequest, msg}
	}
	var req publishRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return bad("invalid JSON: " + err.Error())
	}
	p := publication{data: req.Data}
	hk, inHeader := h[http.CanonicalHeaderKey("Idempotency-Key")]
	switch {
	case inHeader && len(hk) != 1:
		return bad("give one Idempotency-Key header, not " + strconv.Itoa(len(hk)))
	case inHeader && req.IdempotencyKey != nil && *req.IdempotencyKey != hk[0]:
		return bad(`the Idempotency-Key header and "idempotency_key" differ`)
	case inHeader:
		p.key = hk[0]
	case req.IdempotencyKey != nil:
		p.key = *req.IdempotencyKey
	}
	if (inHeader || req.IdempotencyKey != nil) && pubcheck.IdempotencyKey(p.key) != nil {
		return bad(pubcheck.ErrKeyInvalid.Error())
	}
	if len(req.Data) == 0 {
		return bad(`"data" is required`)
	}
	if err := pubcheck.Data(req.Data); err != nil {
		return bad(err.Error())
	}
	channels := req.Channels
	p.single = req.Channel != ""
	if p.single {
		if len(channels) > 0 {
			return bad(`give "channel" or "channels", not both`)
		}
		channels = []string{req.Channel}
	}
	if len(channels) == 0 {
		return bad(`"channel" or "channels" is required`)
	}
	if max := a.cfg.MaxPublishChannels; len(channels) > max {
		return bad(fmt.Sprintf(`"channels" names %d channels; at most %d per publish`, len(channels), max))
	}
	for _, ch := range channels {
		if !auth.ValidChannel(ch) {
			return bad("invalid channel name " + strings.ToValidUTF8(ch, "?"))
		}
	}
	p.channels = dedupe(channels)
	return p, nil
}

// dedupe removes repeated names, keeping first occurrences in order.
func dedupe(names []string) []string {
	if len(names) < 2 {
		return names
	}
	seen := make(map[string]struct{}, len(names))
	out := names[:0]
	for _, n := range names {
		if _, dup := seen[n]; !dup {
			seen[n] = struct{}{}
			out = append(out, n)
		}
	}
	return out
}

// Reasons for channels that were not attempted.
const (
	notAttemptedUnavailable = "not attempted: the broker is unavailable"
	notAttemptedNoTime      = "not attempted: no time left to answer within -api-write-timeout"
	notAttemptedGone        = "not attempted: the client went away"
	notStoredOverloaded     = "not stored: overloaded: the event loops delivering this channel are behind; retry after the time given"
)

// overloadRetryAfter is the Retry-After, in seconds, of an overload 503:
// about the time a loop needs to drain an inbox at its high-water mark.
const overloadRetryAfter = "1"

// outcome is what the publish loop came to.
type outcome struct {
	offsets    map[string]uint64
	duplicates []string
	errors     map[string]string
	unknown    int // channels whose outcome is unknown
	overloaded int // channels refused by Config.Admit
}

func (a *handler) publish(w http.ResponseWriter, r *http.Request) {
	p, ref := a.decodePublish(w, r)
	if ref != nil {
		writeError(w, ref.status, ref.msg)
		return
	}
	if err := a.cfg.Ready(); err != nil {
		a.metrics.published(resultFailed, len(p.channels))
		writeError(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
		return
	}
	out := a.publishAll(r, p)
	if p.single {
		a.answerSingle(w, p.channels[0], out)
		return
	}
	reply := multiReply{Offsets: out.offsets, Duplicates: out.duplicates, Errors: out.errors}
	switch {
	case len(out.errors) == 0:
		reply.Duplicate = len(out.duplicates) == len(p.channels)
		if reply.Duplicate {
			reply.Duplicates = nil
		}
		writeJSON(w, http.StatusOK, reply)
	case out.unknown > 0:
		reply.Error = fmt.Sprintf("stored on %d of %d channels; %d not stored, %d with unknown outcome (see errors): "+
			"a retry with the same Idempotency-Key is safe, without one it may publish twice", len(out.offsets), len(p.channels),
			len(out.errors)-out.unknown, out.unknown)
		writeJSON(w, http.StatusGatewayTimeout, reply)
	default:
		reply.Error = fmt.Sprintf("stored on %d of %d channels; %d not stored (see errors): retrying those is safe",
			len(out.offsets), len(p.channels), len(out.errors))
		if out.overloaded > 0 {
			w.Header().Set("Retry-After", overloadRetryAfter)
		}
		writeJSON(w, http.StatusServiceUnavailable, reply)
	}
}

type singleReply struct {
	Offset    uint64 `json:"offset"`
	Duplicate bool   `json:"duplicate,omitempty"`
}

type multiReply struct {
	Offsets    map[string]uint64 `json:"offsets"`
	Duplicate  bool              `json:"duplicate,omitempty"`
	Duplicates []string          `json:"duplicates,omitempty"`
	Errors     map[string]string `json:"errors,omitempty"`
	Error      string            `json:"error,omitempty"`
}

func (a *handler) answerSingle(w http.ResponseWriter, ch string, out outcome) {
	if off, ok := out.offsets[ch]; ok {
		writeJSON(w, http.StatusOK, singleReply{Offset: off, Duplicate: len(out.duplicates) > 0})
		return
	}
	if out.unknown > 0 {
		writeError(w, http.StatusGatewayTimeout, "publish to "+ch+": "+out.errors[ch]+
			"; a retry with the same Idempotency-Key is safe, without one it may publish twice")
		return
	}
	if out.overloaded > 0 {
		w.Header().Set("Retry-After", overloadRetryAfter)
	}
	writeError(w, http.StatusServiceUnavailable, "publish to "+ch+": "+out.errors[ch])
}

// publishAll publishes p to each of its channels in turn, each with its
// own PublishTimeout. After a failure it goes on with the next channel
// unless the broker is unavailable; a channel whose full timeout would end
// after the answer is due is not attempted, nor is any once the client
// has gone.
func (a *handler) publishAll(r *http.Request, p publication) outcome {
	out := outcome{offsets: make(map[string]uint64, len(p.channels))}
	fail := func(ch, reason string) {
		if out.errors == nil {
			out.errors = make(map[string]string)
		}
		out.errors[ch] = reason
	}
	// Answer before the http.Server's write deadline, which started when
	// the headers were read; keep a margin for the body and the answer.
	answerBy := time.Now().Add(a.cfg.WriteTimeout - min(a.cfg.WriteTimeout/10, time.Second))
	base := context.WithoutCancel(r.Context()) // a publish the broker has is not abandoned halfway
	opts := broker.PublishOptions{IdempotencyKey: p.key}
	stop := ""
	for i, ch := range p.channels {
		if stop == "" {
			switch now := time.Now(); {
			case r.Context().Err() != nil:
				stop = notAttemptedGone
			case i > 0 && now.Add(a.cfg.PublishTimeout).After(answerBy):
				stop = notAttemptedNoTime
			}
		}
		if stop != "" {
			a.metrics.published(resultFailed, 1)
			fail(ch, stop)
			continue
		}
		r1 := a.publishOne(r.Context(), base, ch, p.data, opts, answerBy)
		switch r1.kind {
		case itemStored:
			out.offsets[ch] = r1.offset
			if r1.duplicate {
				out.duplicates = append(out.duplicates, ch)
			}
		case itemOverloaded:
			out.overloaded++
			fail(ch, r1.reason)
		case itemUnknown:
			out.unknown++
			fail(ch, r1.reason)
		default:
			fail(ch, r1.reason)
		}
		if r1.brokerDown && stop == "" {
			stop = notAttemptedUnavailable
		}
	}
	return out
}

// itemKind is what became of one publication to one channel.
type itemKind uint8

const (
	itemStored     itemKind = iota // stored (or a duplicate of a stored one): offset set
	itemFailed                     // not stored, or not attempted
	itemUnknown                    // outcome unknown
	itemOverloaded                 // not stored: refused by Config.Admit
)

// itemResult is the outcome of publishOne.
type itemResult struct {
	kind       itemKind
	offset     uint64
	duplicate  bool
	reason     string // why, unless stored
	brokerDown bool   // the broker is unavailable or the node not ready: attempt no more
}

// publishOne admits and publishes data to ch and records the result in the
// metrics. Admission waits (up to -overload-wait, and never past answerBy)
// before the broker's own deadline of PublishTimeout starts, so a publish
// admitted late is not handed a context that is about to expire; the
// broker's call runs on base, which a client going away does not cancel.
func (a *handler) publishOne(reqCtx, base context.Context, ch string, data []byte, opts broker.PublishOptions, answerBy time.Time) itemResult {
	admitCtx, cancelAdmit := context.WithDeadline(reqCtx, answerBy)
	err := a.cfg.Admit(admitCtx, ch)
	cancelAdmit()
	if err != nil {
		a.metrics.published(resultOverloaded, 1)
		return itemResult{kind: itemOverloaded, reason: notStoredOverloaded}
	}
	deadline := time.Now().Add(a.cfg.PublishTimeout)
	if deadline.After(answerBy) {
		deadline = answerBy
	}
	ctx, cancel := context.WithDeadline(base, deadline)
	res, err := a.cfg.Broker.Publish(ctx, ch, data, opts)
	cancel()
	var out itemResult
	switch {
	case err == nil && res.Duplicate:
		a.metrics.published(resultDuplicate, 1)
		return itemResult{kind: itemStored, offset: res.Offset, duplicate: true}
	case err == nil:
		a.metrics.published(resultAccepted, 1)
		return itemResult{kind: itemStored, offset: res.Offset}
	case unknownOutcome(err):
		a.metrics.published(resultUnknown, 1)
		a.cfg.Logger.Warn("publish outcome unknown", "channel", ch, "err", err)
		out = itemResult{kind: itemUnknown, reason: "outcome unknown: " + err.Error()}
	default:
		a.metrics.published(resultFailed, 1)
		a.cfg.Logger.Warn("publish failed", "channel", ch, "err", err)
		out = itemResult{kind: itemFailed, reason: "not stored: " + err.Error()}
	}
	out.brokerDown = errors.Is(err, broker.ErrUnavailable) || errors.Is(err, broker.ErrClosed) || a.cfg.Ready() != nil
	return out
}

// unknownOutcome reports whether err leaves it open whether the broker
// stored the publication: it said so, or its deadline passed while it had
// the request.
func unknownOutcome(err error) bool {
	return errors.Is(err, broker.ErrUnknownOutcome) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}
