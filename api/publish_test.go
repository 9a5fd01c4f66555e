package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-ws/herald/broker"
)

// keyBroker is a fake broker that deduplicates by channel and idempotency
// key like the real ones, numbers offsets per channel from 1, and can fail,
// stall or report an unknown outcome per channel.
type keyBroker struct {
	mu      sync.Mutex
	offsets map[string]uint64
	seen    map[[2]string]uint64 // channel, key -> offset
	calls   []pubCall
	fail    map[string]error // channel -> error returned at once
	stall   map[string]error // channel -> error returned once ctx is done (nil: ctx.Err())
	ready   error
}

type pubCall struct {
	channel, data, key string
	timeout            time.Duration // deadline minus call time
}

func newKeyBroker() *keyBroker {
	return &keyBroker{offsets: map[string]uint64{}, seen: map[[2]string]uint64{}, fail: map[string]error{}, stall: map[string]error{}}
}

func (b *keyBroker) Start(broker.DeliverFunc) error { return nil }
func (b *keyBroker) Subscribe(string) error         { return nil }
func (b *keyBroker) Unsubscribe(string) error       { return nil }
func (b *keyBroker) Close() error                   { return nil }
func (b *keyBroker) Recover(context.Context, string, uint64, bool) (broker.Recovery, error) {
	return broker.Recovery{}, nil
}

func (b *keyBroker) Ready() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ready
}

func (b *keyBroker) Publish(ctx context.Context, channel string, data []byte, opts broker.PublishOptions) (broker.PublishResult, error) {
	dl, ok := ctx.Deadline()
	if !ok {
		return broker.PublishResult{}, errors.New("fake: publish without a deadline")
	}
	b.mu.Lock()
	b.calls = append(b.calls, pubCall{channel, string(data), opts.IdempotencyKey, time.Until(dl)})
	stallErr, stall := b.stall[channel]
	err := b.fail[channel]
	b.mu.Unlock()
	if stall {
		<-ctx.Done()
		if stallErr == nil {
			stallErr = ctx.Err()
		}
		return broker.PublishResult{}, stallErr
	}
	if err != nil {
		return broker.PublishResult{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if opts.IdempotencyKey != "" {
		if off, dup := b.seen[[2]string{channel, opts.IdempotencyKey}]; dup {
			return broker.PublishResult{Offset: off, Duplicate: true}, nil
		}
	}
	b.offsets[channel]++
	off := b.offsets[channel]
	if opts.IdempotencyKey != "" {
		b.seen[[2]string{channel, opts.IdempotencyKey}] = off
	}
	return broker.PublishResult{Offset: off}, nil
}

func (b *keyBroker) stored() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, o := range b.offsets {
		n += int(o)
	}
	return n
}

func (b *keyBroker) called() []pubCall {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]pubCall(nil), b.calls...)
}

func TestPublishIdempotencyKey(t *testing.T) {
	b := newKeyBroker()
	h := newAPI(Config{Broker: b, Ready: b.Ready})
	hdr := func(k string) []string { return []string{"Idempotency-Key", k} }
	steps := []struct {
		name   string
		body   string
		header []string
		code   int
		want   string
	}{
		{"first, header", `{"channel":"a","data":1}`, hdr("k1"), 200, `{"offset":1}`},
		{"retry, header", `{"channel":"a","data":1}`, hdr("k1"), 200, `{"offset":1,"duplicate":true}`},
		{"retry, field", `{"channel":"a","data":1,"idempotency_key":"k1"}`, nil, 200, `{"offset":1,"duplicate":true}`},
		{"retry, both equal", `{"channel":"a","data":1,"idempotency_key":"k1"}`, hdr("k1"), 200, `{"offset":1,"duplicate":true}`},
		{"other key", `{"channel":"a","data":1}`, hdr("k2"), 200, `{"offset":2}`},
		{"no key is never a duplicate", `{"channel":"a","data":1}`, nil, 200, `{"offset":3}`},
		{"no key again", `{"channel":"a","data":1}`, nil, 200, `{"offset":4}`},
		{"same key, other channel", `{"channel":"b","data":1}`, hdr("k1"), 200, `{"offset":1}`},
		{"key per channel", `{"channels":["a","b","c"],"data":1}`, hdr("k1"), 200, `{"offsets":{"a":1,"b":1,"c":1},"duplicates":["a","b"]}`},
		{"all duplicates", `{"channels":["c","a"],"data":1}`, hdr("k1"), 200, `{"offsets":{"a":1,"c":1},"duplicate":true}`},
		{"printable ASCII with spaces inside", `{"channel":"a","data":1,"idempotency_key":"a b~!"}`, nil, 200, `{"offset":5}`},
		{"128 bytes", `{"channel":"a","data":1}`, hdr(strings.Repeat("x", 128)), 200, `{"offset":6}`},
	}
	for _, s := range steps {
		r := do(h, "POST", "/api/publish", s.body, s.header...)
		if r.code != s.code || r.body != s.want+"\n" {
			t.Fatalf("%s: %d %s, want %d %s", s.name, r.code, r.body, s.code, s.want)
		}
	}
	before := b.stored()
	for _, c := range []struct {
		name   string
		body   string
		header []string
	}{
		{"header and field differ", `{"channel":"a","data":1,"idempotency_key":"k2"}`, hdr("k1")},
		{"empty field", `{"channel":"a","data":1,"idempotency_key":""}`, nil},
		{"empty header", `{"channel":"a","data":1}`, hdr("")},
		{"129 bytes", `{"channel":"a","data":1}`, hdr(strings.Repeat("x", 129))},
		{"non-ASCII field", `{"channel":"a","data":1,"idempotency_key":"clé"}`, nil},
		{"control character", `{"channel":"a","data":1,"idempotency_key":"a\tb"}`, nil},
		{"invalid UTF-8 in the field", "{\"channel\":\"a\",\"data\":1,\"idempotency_key\":\"\xff\"}", nil},
		{"field not a string", `{"channel":"a","data":1,"idempotency_key":7}`, nil},
		{"null field with a bad header", `{"channel":"a","data":1,"idempotency_key":null}`, hdr("\x01")},
	} {
		r := do(h, "POST", "/api/publish", c.body, c.header...)
		if r.code != http.StatusBadRequest || !strings.Contains(r.body, `"error"`) {
			t.Errorf("%s: %d %s, want 400", c.name, r.code, r.body)
		}
	}
	// Two Idempotency-Key headers are refused too.
	req := publishReq(`{"channel":"a","data":1}`)
	req.Header.Add("Idempotency-Key", "k1")
	req.Header.Add("Idempotency-Key", "k2")
	if r := serve(h, req); r.code != http.StatusBadRequest {
		t.Errorf("two headers: %d %s, want 400", r.code, r.body)
	}
	if after := b.stored(); after != before {
		t.Errorf("refused requests stored %d publications", after-before)
	}
	// The key reached the broker with every channel of every accepted
	// request, and no refused request reached it.
	var keys []string
	for _, c := range b.called() {
		keys = append(keys, c.channel+"/"+c.key)
	}
	want := []string{"a/k1", "a/k1", "a/k1", "a/k1", "a/k2", "a/", "a/", "b/k1", "a/k1", "b/k1", "c/k1", "c/k1", "a/k1", "a/a b~!", "a/" + strings.Repeat("x", 128)}
	if !reflect.DeepEqual(keys, want) {
		t.Errorf("broker calls (channel/key)\n got  %q\n want %q", keys, want)
	}
}

func TestPublishDataMustBeValid(t *testing.T) {
	for _, c := range []struct {
		name, body string
		code       int
	}{
		{"invalid UTF-8 in a string", "{\"channel\":\"a\",\"data\":\"\xff\"}", 400},
		{"invalid UTF-8 deep inside", "{\"channel\":\"a\",\"data\":{\"x\":[1,\"ok\",\"\xc3\"]}}", 400},
		{"invalid UTF-8 in a key", "{\"channel\":\"a\",\"data\":{\"\xfe\":1}}", 400},
		{"raw surrogate", "{\"channel\":\"a\",\"data\":\"\xed\xa0\x80\"}", 400},
		{"overlong encoding", "{\"channel\":\"a\",\"data\":\"\xc0\xaf\"}", 400},
		{"several channels", "{\"channels\":[\"a\",\"b\"],\"data\":\"\xff\"}", 400},
		{"valid UTF-8", `{"channel":"a","data":"héllo ✓ 𝄞"}`, 200},
		{"escaped lone surrogate (ASCII on the wire)", `{"channel":"a","data":"\ud800"}`, 200},
		{"invalid UTF-8 outside data is not published", "{\"channel\":\"a\",\"data\":1,\"note\":\"\xff\"}", 200},
	} {
		b := newKeyBroker()
		r := do(newAPI(Config{Broker: b}), "POST", "/api/publish", c.body)
		if r.code != c.code {
			t.Errorf("%s: %d %s, want %d", c.name, r.code, r.body, c.code)
		}
		if c.code != 200 && (b.stored() != 0 || !strings.Contains(r.body, "UTF-8")) {
			t.Errorf("%s: stored %d, body %s; want nothing stored and the reason", c.name, b.stored(), r.body)
		}
	}
}

func TestPublishChannelsDedupedAndCapped(t *testing.T) {
	b := newKeyBroker()
	h := newAPI(Config{Broker: b, MaxPublishChannels: 3})
	r := do(h, "POST", "/api/publish", `{"channels":["b","a","b","c"],"data":1}`)
	// Four names past a cap of three: the cap counts names as given.
	if r.code != 400 || !strings.Contains(r.body, "at most 3 per publish") {
		t.Fatalf("4 names, cap 3: %d %s", r.code, r.body)
	}
	r = do(h, "POST", "/api/publish", `{"channels":["b","a","b"],"data":1}`)
	if r.code != 200 || r.body != `{"offsets":{"a":1,"b":1}}`+"\n" {
		t.Fatalf("repeated name: %d %s", r.code, r.body)
	}
	var order []string
	for _, c := range b.called() {
		order = append(order, c.channel)
	}
	if !reflect.DeepEqual(order, []string{"b", "a"}) {
		t.Fatalf("published to %q, want [b a]: once each, first occurrences in order", order)
	}
	// The default cap is 1000.
	names := func(n int) string {
		q := make([]string, n)
		for i := range q {
			q[i] = fmt.Sprintf(`"c%d"`, i)
		}
		return `{"channels":[` + strings.Join(q, ",") + `],"data":1}`
	}
	d := newKeyBroker()
	hd := newAPI(Config{Broker: d})
	if r := do(hd, "POST", "/api/publish", names(1001)); r.code != 400 || !strings.Contains(r.body, "at most 1000") || d.stored() != 0 {
		t.Fatalf("1001 channels: %d %.100s, stored %d", r.code, r.body, d.stored())
	}
	if r := do(hd, "POST", "/api/publish", names(1000)); r.code != 200 || d.stored() != 1000 {
		t.Fatalf("1000 channels: %d %.100s, stored %d", r.code, r.body, d.stored())
	}
}

// decodeMulti parses a several-channel answer strictly.
func decodeMulti(t *testing.T, body string) multiReply {
	t.Helper()
	var m multiReply
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("answer %s: %v", body, err)
	}
	return m
}

func TestPublishStatusMeansOneThing(t *testing.T) {
	timeout := 50 * time.Millisecond
	for _, c := range []struct {
		name    string
		channel string
		setup   func(b *keyBroker)
		code    int
		want    string // in the error
	}{
		{"stored", "a", func(*keyBroker) {}, 200, ""},
		{"unavailable", "a", func(b *keyBroker) { b.fail["a"] = broker.ErrUnavailable }, 503, "not stored"},
		{"wrapped unavailable", "a", func(b *keyBroker) { b.fail["a"] = fmt.Errorf("%w: nats down", broker.ErrUnavailable) }, 503, "nats down"},
		{"closed", "a", func(b *keyBroker) { b.fail["a"] = broker.ErrClosed }, 503, "not stored"},
		{"not ready", "a", func(b *keyBroker) { b.ready = broker.ErrUnavailable }, 503, "not ready"},
		{"unknown outcome", "a", func(b *keyBroker) { b.fail["a"] = broker.ErrUnknownOutcome }, 504, "same Idempotency-Key is safe"},
		{"wrapped unknown outcome", "a", func(b *keyBroker) { b.fail["a"] = fmt.Errorf("nats: %w", broker.ErrUnknownOutcome) }, 504, "outcome unknown"},
		{"deadline while the broker had it", "a", func(b *keyBroker) { b.stall["a"] = nil }, 504, "without one it may publish twice"},
		{"broker says unknown at the deadline", "a", func(b *keyBroker) { b.stall["a"] = broker.ErrUnknownOutcome }, 504, "outcome unknown"},
	} {
		b := newKeyBroker()
		c.setup(b)
		r := do(newAPI(Config{Broker: b, Ready: b.Ready, PublishTimeout: timeout}), "POST", "/api/publish", `{"channel":"`+c.channel+`","data":1}`)
		var got struct {
			Offset *uint64
			Error  string
		}
		if err := json.Unmarshal([]byte(r.body), &got); err != nil || r.code != c.code {
			t.Errorf("%s: %d %s, want %d", c.name, r.code, r.body, c.code)
			continue
		}
		if c.code == 200 && (got.Offset == nil || got.Error != "") || c.code != 200 && (got.Offset != nil || !strings.Contains(got.Error, c.want)) {
			t.Errorf("%s: %d %s, want an offset only on 200, else an error with %q", c.name, r.code, r.body, c.want)
		}
	}
}

func TestPublishSeveralChannelsPartial(t *testing.T) {
	timeout := 100 * time.Millisecond
	for _, c := range []struct {
		name    string
		setup   func(b *keyBroker)
		code    int
		offsets []string
		errors  map[string]string // channel -> reason prefix
	}{
		{"middle one not stored, the rest still tried", func(b *keyBroker) { b.fail["b"] = errors.New("too big") }, 503,
			[]string{"a", "c", "d"}, map[string]string{"b": "not stored: too big"}},
		{"unavailable: the rest not attempted", func(b *keyBroker) { b.fail["b"] = broker.ErrUnavailable }, 503,
			[]string{"a"}, map[string]string{"b": "not stored", "c": "not attempted: the broker is unavailable", "d": "not attempted"}},
		{"unknown in the middle: 504, the rest still tried", func(b *keyBroker) { b.fail["b"] = broker.ErrUnknownOutcome }, 504,
			[]string{"a", "c", "d"}, map[string]string{"b": "outcome unknown"}},
		{"two stall: each has its own deadline", func(b *keyBroker) { b.stall["a"], b.stall["c"] = nil, nil }, 504,
			[]string{"b", "d"}, map[string]string{"a": "outcome unknown", "c": "outcome unknown"}},
		{"unknown and not stored", func(b *keyBroker) { b.fail["a"] = broker.ErrUnknownOutcome; b.fail["d"] = errors.New("x") }, 504,
			[]string{"b", "c"}, map[string]string{"a": "outcome unknown", "d": "not stored"}},
	} {
		b := newKeyBroker()
		c.setup(b)
		r := do(newAPI(Config{Broker: b, Ready: b.Ready, PublishTimeout: timeout}), "POST", "/api/publish", `{"channels":["a","b","c","d"],"data":1}`)
		if r.code != c.code {
			t.Errorf("%s: %d %s, want %d", c.name, r.code, r.body, c.code)
			continue
		}
		m := decodeMulti(t, r.body)
		var got []string
		for ch := range m.Offsets {
			got = append(got, ch)
		}
		if len(got) != len(c.offsets) || m.Error == "" || len(m.Errors) != len(c.errors) {
			t.Errorf("%s: %s, want offsets for %q and errors for %v", c.name, r.body, c.offsets, c.errors)
			continue
		}
		for _, ch := range c.offsets {
			if _, ok := m.Offsets[ch]; !ok {
				t.Errorf("%s: no offset for %s: %s", c.name, ch, r.body)
			}
		}
		for ch, prefix := range c.errors {
			if !strings.HasPrefix(m.Errors[ch], prefix) {
				t.Errorf("%s: errors[%s] = %q, want %q...", c.name, ch, m.Errors[ch], prefix)
			}
		}
		// Every channel attempted got a deadline of its own, not what a
		// stalled channel before it left of a shared one (half of it is
		// the bound: a loaded machine delays the call after the deadline
		// is set).
		for _, call := range b.called() {
			if call.timeout < timeout/2 {
				t.Errorf("%s: %s published with %v left, want its own %v", c.name, call.channel, call.timeout, timeout)
			}
		}
	}
}

func TestPublishStopsStartingChannelsAtTheWriteDeadline(t *testing.T) {
	// With a 1 s write timeout and a 400 ms publish timeout, two stalled
	// channels use the time there is; the third would end past the answer
	// and is not attempted.
	b := newKeyBroker()
	b.stall["a"], b.stall["b"], b.stall["c"] = nil, nil, nil
	h := newAPI(Config{Broker: b, PublishTimeout: 400 * time.Millisecond, WriteTimeout: time.Second})
	r := do(h, "POST", "/api/publish", `{"channels":["a","b","c"],"data":1}`)
	m := decodeMulti(t, r.body)
	if r.code != 504 || !strings.HasPrefix(m.Errors["a"], "outcome unknown") || !strings.HasPrefix(m.Errors["b"], "outcome unknown") ||
		m.Errors["c"] != notAttemptedNoTime || len(b.called()) != 2 {
		t.Fatalf("%d %s after %d calls, want a and b unknown, c not attempted", r.code, r.body, len(b.called()))
	}
	for _, c := range b.called() {
		if c.timeout > 400*time.Millisecond {
			t.Fatalf("%s had a deadline %v away, over the publish timeout", c.channel, c.timeout)
		}
	}
}

func TestPublishStopsWhenTheClientLeaves(t *testing.T) {
	b := newKeyBroker()
	b.stall["a"] = nil
	h := newAPI(Config{Broker: b, PublishTimeout: 100 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	req := publishReq(`{"channels":["a","b"],"data":1}`).WithContext(ctx)
	time.AfterFunc(20*time.Millisecond, cancel)
	r := serve(h, req)
	m := decodeMulti(t, r.body)
	calls := b.called()
	// a keeps its own deadline although the client left (the broker had
	// it); b is never started.
	if r.code != 504 || m.Errors["b"] != notAttemptedGone || len(calls) != 1 || !strings.HasPrefix(m.Errors["a"], "outcome unknown: context deadline") {
		t.Fatalf("%d %s, %d calls", r.code, r.body, len(calls))
	}
}
