package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/herald-ws/herald/auth"
	"github.com/herald-ws/herald/broker"
	"github.com/herald-ws/herald/internal/pubcheck"
)

// POST /api/batch: many publications, each to its own channel with its own
// data, in one request. A backend sending personal notifications (one
// channel per user) pays one HTTP round trip for hundreds of them instead
// of one each; on the development machine the request alone was two
// thirds of a node's CPU per publication.

// batchRequest is the body of POST /api/batch.
type batchRequest struct {
	Publications []batchItem `json:"publications"`
}

type batchItem struct {
	Channel        string          `json:"channel"`
	Data           json.RawMessage `json:"data"`
	IdempotencyKey *string         `json:"idempotency_key"`
}

// batchParallel bounds the broker calls one batch has in flight. Items of
// one channel go one after another, in the order given; different
// channels go in parallel.
const batchParallel = 32

// batchResult is one item's answer, in the order of the request.
type batchResult struct {
	Offset    uint64 `json:"offset,omitempty"`
	Duplicate bool   `json:"duplicate,omitempty"`
	Error     string `json:"error,omitempty"`
}

type batchReply struct {
	Results []batchResult `json:"results"`
	Error   string        `json:"error,omitempty"`
}

// checkBatch applies every publish rule to every item; a refusal names the
// first bad item and nothing may be published.
func (a *handler) checkBatch(h http.Header, body []byte) ([]batchItem, *refusal) {
	bad := func(msg string) ([]batchItem, *refusal) {
		return nil, &refusal{http.StatusBadRequest, msg}
	}
	if _, ok := h[http.CanonicalHeaderKey("Idempotency-Key")]; ok {
		return bad(`a batch takes "idempotency_key" per publication, not an Idempotency-Key header`)
	}
	var req batchRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return bad("invalid JSON: " + err.Error())
	}
	items := req.Publications
	if len(items) == 0 {
		return bad(`"publications" is required and may not be empty`)
	}
	if max := a.cfg.MaxPublishChannels; len(items) > max {
		return bad(fmt.Sprintf(`"publications" has %d items; at most %d per batch`, len(items), max))
	}
	for i, it := range items {
		at := "publications[" + strconv.Itoa(i) + "]: "
		switch {
		case it.Channel == "":
			return bad(at + `"channel" is required`)
		case !auth.ValidChannel(it.Channel):
			return bad(at + "invalid channel name " + strings.ToValidUTF8(it.Channel, "?"))
		case len(it.Data) == 0:
			return bad(at + `"data" is required`)
		case it.IdempotencyKey != nil && pubcheck.IdempotencyKey(*it.IdempotencyKey) != nil:
			return bad(at + pubcheck.ErrKeyInvalid.Error())
		}
		if err := pubcheck.Data(it.Data); err != nil {
			return bad(at + err.Error())
		}
	}
	return items, nil
}

func (a *handler) batch(w http.ResponseWriter, r *http.Request) {
	body, ref := a.readPublishBody(w, r)
	if ref != nil {
		writeError(w, ref.status, ref.msg)
		return
	}
	items, ref := a.checkBatch(r.Header, body)
	if ref != nil {
		writeError(w, ref.status, ref.msg)
		return
	}
	if err := a.cfg.Ready(); err != nil {
		a.metrics.published(resultFailed, len(items))
		writeError(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
		return
	}
	results, kinds := a.publishBatch(r, items)
	reply := batchReply{Results: results}
	stored, unknown, overloaded := 0, 0, 0
	for _, k := range kinds {
		switch k {
		case itemStored:
			stored++
		case itemUnknown:
			unknown++
		case itemOverloaded:
			overloaded++
		}
	}
	failed := len(items) - stored - unknown
	switch {
	case stored == len(items):
		writeJSON(w, http.StatusOK, reply)
	case unknown > 0:
		reply.Error = fmt.Sprintf("stored %d of %d publications; %d not stored, %d with unknown outcome (see results): "+
			"a retry with the same idempotency_key is safe, without one it may publish twice", stored, len(items), failed, unknown)
		writeJSON(w, http.StatusGatewayTimeout, reply)
	default:
		reply.Error = fmt.Sprintf("stored %d of %d publications; %d not stored (see results): retrying those is safe",
			stored, len(items), failed)
		if overloaded > 0 {
			w.Header().Set("Retry-After", overloadRetryAfter)
		}
		writeJSON(w, http.StatusServiceUnavailable, reply)
	}
}

// publishBatch publishes every item: the items of one channel in their
// order, one after another, different channels at once (batchParallel at
// most). The rules of a several-channel publish hold per item: its own
// PublishTimeout, none attempted once the broker is unavailable or the
// client has gone, none whose full timeout would end after the answer is
// due (the first one apart).
func (a *handler) publishBatch(r *http.Request, items []batchItem) ([]batchResult, []itemKind) {
	results := make([]batchResult, len(items))
	kinds := make([]itemKind, len(items))
	answerBy := time.Now().Add(a.cfg.WriteTimeout - min(a.cfg.WriteTimeout/10, time.Second))
	base := context.WithoutCancel(r.Context())

	// Group the items by channel, channels in order of first occurrence.
	groupOf := make(map[string]int, len(items))
	var groups [][]int
	for i, it := range items {
		g, ok := groupOf[it.Channel]
		if !ok {
			g = len(groups)
			groupOf[it.Channel] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], i)
	}

	var (
		mu      sync.Mutex
		stop    string
		started bool
	)
	// next decides whether item i may start, under mu.
	next := func() string {
		mu.Lock()
		defer mu.Unlock()
		if stop == "" {
			switch {
			case r.Context().Err() != nil:
				stop = notAttemptedGone
			case started && time.Now().Add(a.cfg.PublishTimeout).After(answerBy):
				stop = notAttemptedNoTime
			}
		}
		started = true
		return stop
	}
	run := func(g []int) {
		for _, i := range g {
			it := items[i]
			if why := next(); why != "" {
				a.metrics.published(resultFailed, 1)
				results[i], kinds[i] = batchResult{Error: why}, itemFailed
				continue
			}
			var opts broker.PublishOptions
			if it.IdempotencyKey != nil {
				opts.IdempotencyKey = *it.IdempotencyKey
			}
			res := a.publishOne(r.Context(), base, it.Channel, it.Data, opts, answerBy)
			kinds[i] = res.kind
			if res.kind == itemStored {
				results[i] = batchResult{Offset: res.offset, Duplicate: res.duplicate}
			} else {
				results[i] = batchResult{Error: res.reason}
			}
			if res.brokerDown {
				mu.Lock()
				if stop == "" {
					stop = notAttemptedUnavailable
				}
				mu.Unlock()
			}
		}
	}
	if len(groups) == 1 {
		run(groups[0])
		return results, kinds
	}
	work := make(chan []int)
	var wg sync.WaitGroup
	for range min(batchParallel, len(groups)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for g := range work {
				run(g)
			}
		}()
	}
	for _, g := range groups {
		work <- g
	}
	close(work)
	wg.Wait()
	return results, kinds
}
