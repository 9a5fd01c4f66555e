package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-ws/herald/broker"
)

type batchAnswer struct {
	Results []struct {
		Offset    uint64 `json:"offset"`
		Duplicate bool   `json:"duplicate"`
		Error     string `json:"error"`
	} `json:"results"`
	Error string `json:"error"`
}

func decodeBatch(t *testing.T, r response) batchAnswer {
	t.Helper()
	var a batchAnswer
	if err := json.Unmarshal([]byte(r.body), &a); err != nil {
		t.Fatalf("answer %d %q: %v", r.code, r.body, err)
	}
	return a
}

func batchBody(items ...string) string {
	return `{"publications":[` + strings.Join(items, ",") + `]}`
}

func item(channel, data string) string {
	return fmt.Sprintf(`{"channel":%q,"data":%s}`, channel, data)
}

func TestBatchStoresEveryItemInOrderPerChannel(t *testing.T) {
	b := newKeyBroker()
	h := newAPI(Config{Broker: b})
	r := do(h, "POST", "/api/batch", batchBody(item("a", "1"), item("b", `"x"`), item("a", "2"), item("c.d", "{}"), item("a", "3")))
	if r.code != http.StatusOK || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("%d %s", r.code, r.body)
	}
	want := `{"results":[{"offset":1},{"offset":1},{"offset":2},{"offset":1},{"offset":3}]}` + "\n"
	if r.body != want {
		t.Fatalf("answer %s, want %s", r.body, want)
	}
	var a []string
	for _, c := range b.called() {
		if c.channel == "a" {
			a = append(a, c.data)
		}
		if c.timeout <= 0 || c.timeout > DefaultPublishTimeout {
			t.Errorf("%s published with a deadline %v away", c.channel, c.timeout)
		}
	}
	if strings.Join(a, ",") != "1,2,3" {
		t.Errorf("channel a's publications reached the broker as %v, want 1,2,3", a)
	}
}

// Many channels interleaved: every item stored once, each channel's items
// in the order given, under parallel broker calls.
func TestBatchOrderAcrossManyChannels(t *testing.T) {
	b := newKeyBroker()
	h := newAPI(Config{Broker: b})
	rng := rand.New(rand.NewPCG(1, 2))
	const n, channels = 1000, 50
	var items []string
	next := map[string]int{}
	wantOff := make([]uint64, n)
	for i := range n {
		ch := fmt.Sprintf("c%d", rng.IntN(channels))
		next[ch]++
		wantOff[i] = uint64(next[ch])
		items = append(items, item(ch, fmt.Sprint(next[ch])))
	}
	r := do(h, "POST", "/api/batch", batchBody(items...))
	if r.code != http.StatusOK {
		t.Fatalf("%d %s", r.code, r.body)
	}
	a := decodeBatch(t, r)
	if len(a.Results) != n {
		t.Fatalf("%d results for %d items", len(a.Results), n)
	}
	for i, res := range a.Results {
		if res.Offset != wantOff[i] || res.Error != "" {
			t.Fatalf("item %d: %+v, want offset %d", i, res, wantOff[i])
		}
	}
	seen := map[string]int{}
	for _, c := range b.called() {
		seen[c.channel]++
		if c.data != fmt.Sprint(seen[c.channel]) {
			t.Fatalf("channel %s: publication %d carried %s: out of order", c.channel, seen[c.channel], c.data)
		}
	}
	if b.stored() != n {
		t.Errorf("stored %d, want %d", b.stored(), n)
	}
}

// peakBroker counts the calls in flight at once.
type peakBroker struct {
	*keyBroker
	in, peak atomic.Int32
	hold     time.Duration
}

func (g *peakBroker) Publish(ctx context.Context, ch string, data []byte, o broker.PublishOptions) (broker.PublishResult, error) {
	n := g.in.Add(1)
	for {
		p := g.peak.Load()
		if n <= p || g.peak.CompareAndSwap(p, n) {
			break
		}
	}
	time.Sleep(g.hold)
	defer g.in.Add(-1)
	return g.keyBroker.Publish(ctx, ch, data, o)
}

func TestBatchBrokerCallsAreBounded(t *testing.T) {
	g := &peakBroker{keyBroker: newKeyBroker(), hold: 2 * time.Millisecond}
	h := newAPI(Config{Broker: g})
	var items []string
	for i := range 500 {
		items = append(items, item(fmt.Sprintf("u%d", i), "1"))
	}
	if r := do(h, "POST", "/api/batch", batchBody(items...)); r.code != http.StatusOK {
		t.Fatalf("%d %s", r.code, r.body[:min(len(r.body), 300)])
	}
	if p := g.peak.Load(); p > batchParallel || p < 2 {
		t.Errorf("%d broker calls in flight at once; want between 2 and %d", p, batchParallel)
	}
}

func TestBatchRefusalsStoreNothing(t *testing.T) {
	long := `{"publications":[` + strings.Repeat(item("a", "1")+",", 4) + item("a", "1") + `]}`
	for _, c := range []struct {
		name, body string
		header     []string
		code       int
		says       string
	}{
		{"not JSON", `{"publications":`, nil, 400, "invalid JSON"},
		{"no publications", `{}`, nil, 400, `"publications" is required`},
		{"empty", `{"publications":[]}`, nil, 400, `"publications" is required`},
		{"one bad channel among good", batchBody(item("a", "1"), item("bad channel", "1")), nil, 400, "publications[1]: invalid channel name"},
		{"missing channel", batchBody(`{"data":1}`), nil, 400, `publications[0]: "channel" is required`},
		{"missing data", batchBody(item("a", "1"), `{"channel":"b"}`), nil, 400, `publications[1]: "data" is required`},
		{"invalid UTF-8 in data", batchBody(item("a", "1"), "{\"channel\":\"b\",\"data\":\"\xff\"}"), nil, 400, "publications[1]: "},
		{"bad key", batchBody(`{"channel":"a","data":1,"idempotency_key":""}`), nil, 400, "publications[0]: "},
		{"key header", batchBody(item("a", "1")), []string{"Idempotency-Key", "k"}, 400, "per publication"},
		{"over the item limit", long, nil, 400, "at most 4 per batch"},
		{"over the body limit", batchBody(item("a", `"`+strings.Repeat("x", 300)+`"`)), nil, 413, "limit of 256 bytes"},
	} {
		b := newKeyBroker()
		h := newAPI(Config{Broker: b, MaxPublishChannels: 4, MaxBody: 256})
		r := do(h, "POST", "/api/batch", c.body, c.header...)
		var e struct{ Error string }
		_ = json.Unmarshal([]byte(r.body), &e)
		if r.code != c.code || !strings.Contains(e.Error, c.says) {
			t.Errorf("%s: %d %s, want %d saying %q", c.name, r.code, r.body, c.code, c.says)
		}
		if len(b.called()) != 0 {
			t.Errorf("%s: %d publications reached the broker", c.name, len(b.called()))
		}
	}
}

func TestBatchIdempotencyPerItem(t *testing.T) {
	b := newKeyBroker()
	h := newAPI(Config{Broker: b})
	body := batchBody(`{"channel":"a","data":1,"idempotency_key":"k1"}`, `{"channel":"b","data":1,"idempotency_key":"k1"}`, item("a", "2"))
	if r := do(h, "POST", "/api/batch", body); r.body != `{"results":[{"offset":1},{"offset":1},{"offset":2}]}`+"\n" {
		t.Fatalf("first: %d %s", r.code, r.body)
	}
	// The retry stores the keyless item again and nothing else.
	if r := do(h, "POST", "/api/batch", body); r.code != 200 || r.body != `{"results":[{"offset":1,"duplicate":true},{"offset":1,"duplicate":true},{"offset":3}]}`+"\n" {
		t.Fatalf("retry: %d %s", r.code, r.body)
	}
	if b.stored() != 4 {
		t.Errorf("stored %d, want 4", b.stored())
	}
}

func TestBatchPartialFailures(t *testing.T) {
	t.Run("a failure stores the rest", func(t *testing.T) {
		b := newKeyBroker()
		b.fail["b"] = errors.New("refused")
		r := do(newAPI(Config{Broker: b}), "POST", "/api/batch", batchBody(item("a", "1"), item("b", "1"), item("c", "1")))
		a := decodeBatch(t, r)
		if r.code != http.StatusServiceUnavailable || a.Results[0].Offset != 1 || a.Results[2].Offset != 1 ||
			!strings.HasPrefix(a.Results[1].Error, "not stored: ") || a.Results[1].Offset != 0 ||
			!strings.Contains(a.Error, "stored 2 of 3") || r.header.Get("Retry-After") != "" {
			t.Fatalf("%d %s %v", r.code, r.body, r.header)
		}
	})
	t.Run("an unavailable broker stops the rest", func(t *testing.T) {
		b := newKeyBroker()
		b.fail["b"] = fmt.Errorf("%w: down", broker.ErrUnavailable)
		r := do(newAPI(Config{Broker: b}), "POST", "/api/batch", batchBody(item("b", "1"), item("b", "2"), item("b", "3")))
		a := decodeBatch(t, r)
		if r.code != http.StatusServiceUnavailable || !strings.HasPrefix(a.Results[0].Error, "not stored: ") ||
			a.Results[1].Error != notAttemptedUnavailable || a.Results[2].Error != notAttemptedUnavailable {
			t.Fatalf("%d %s", r.code, r.body)
		}
		if n := len(b.called()); n != 1 {
			t.Errorf("%d broker calls, want 1", n)
		}
	})
	t.Run("an unknown outcome is 504", func(t *testing.T) {
		b := newKeyBroker()
		b.stall["s"] = fmt.Errorf("%w: no ack", broker.ErrUnknownOutcome)
		r := do(newAPI(Config{Broker: b, PublishTimeout: 20 * time.Millisecond}), "POST", "/api/batch", batchBody(item("a", "1"), item("s", "1")))
		a := decodeBatch(t, r)
		if r.code != http.StatusGatewayTimeout || a.Results[0].Offset != 1 || !strings.HasPrefix(a.Results[1].Error, "outcome unknown: ") ||
			!strings.Contains(a.Error, "idempotency_key") {
			t.Fatalf("%d %s", r.code, r.body)
		}
	})
	t.Run("overload refuses with Retry-After", func(t *testing.T) {
		b := newKeyBroker()
		admit := func(_ context.Context, ch string) error {
			if ch == "hot" {
				return errors.New("overloaded")
			}
			return nil
		}
		r := do(newAPI(Config{Broker: b, Admit: admit}), "POST", "/api/batch", batchBody(item("hot", "1"), item("cold", "1")))
		a := decodeBatch(t, r)
		if r.code != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || a.Results[0].Error != notStoredOverloaded || a.Results[1].Offset != 1 {
			t.Fatalf("%d %s %v", r.code, r.body, r.header)
		}
		for _, c := range b.called() {
			if c.channel == "hot" {
				t.Error("an overloaded channel's publication reached the broker")
			}
		}
	})
	t.Run("not ready", func(t *testing.T) {
		b := newKeyBroker()
		r := do(newAPI(Config{Broker: b, Ready: func() error { return errors.New("draining") }}), "POST", "/api/batch", batchBody(item("a", "1")))
		if r.code != http.StatusServiceUnavailable || len(b.called()) != 0 {
			t.Fatalf("%d %s", r.code, r.body)
		}
	})
}

// Every item's outcome is counted in herald_publish_requests_total.
func TestBatchCountsEveryItem(t *testing.T) {
	b := newKeyBroker()
	b.fail["x"] = errors.New("refused")
	h := newAPI(Config{Broker: b})
	do(h, "POST", "/api/batch", batchBody(item("a", "1"), item("a", "2"), item("x", "1")))
	do(h, "POST", "/api/batch", `{}`)
	m := do(h, "GET", "/metrics", "").body
	for _, want := range []string{`herald_publish_requests_total{result="accepted"} 2`, `herald_publish_requests_total{result="failed"} 1`,
		`herald_publish_requests_total{result="refused"} 1`, `herald_api_requests_total{code="503",endpoint="/api/batch"} 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestBatchWrongMethod(t *testing.T) {
	r := do(newAPI(Config{}), "GET", "/api/batch", "")
	if r.code != http.StatusMethodNotAllowed || r.header.Get("Allow") != "POST" {
		t.Fatalf("%d %v", r.code, r.header)
	}
}
