package api

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/herald-ws/herald/auth"
	"github.com/herald-ws/herald/broker"
)

// swapBroker forwards to the keyBroker of the current fuzz input.
type swapBroker struct{ *keyBroker }

// splitReader returns its bytes in two reads, split at cut, the way a
// network delivers a body.
type splitReader struct {
	b   []byte
	cut int
}

func (r *splitReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := len(r.b)
	if r.cut > 0 && r.cut < n {
		n = r.cut
	}
	n = copy(p, r.b[:n])
	r.b, r.cut = r.b[n:], r.cut-n
	return n, nil
}

// FuzzPublishRequest feeds arbitrary bodies and Idempotency-Key headers to
// POST /api/publish. Invariants: no panic; the status is one the API
// documents; 200 only for a request an independent reading finds valid,
// with exactly its distinct channels published; nothing published for a
// refused request.
func FuzzPublishRequest(f *testing.F) {
	for _, s := range []struct{ body, key string }{
		{`{"channel":"a","data":1}`, ""},
		{`{"channel":"a","data":1,"idempotency_key":"k"}`, "k"},
		{`{"channels":["a","b","a"],"data":{"x":"y"}}`, "k2"},
		{"{\"channel\":\"a\",\"data\":\"\xff\"}", ""},
		{`{"channel":"a","channels":["b"],"data":1}`, ""},
		{`{"channels":["a","b","c","d","e"],"data":1}`, ""},
		{`{"channel":"bad name","data":1}`, "\x00"},
		{`{"channel":"a","data":1,"idempotency_key":""}`, ""},
		{`{"channel":"down","data":1}`, ""},
		{`{"channels":["a","lost","b"],"data":[1,2]}`, "x"},
		{`{"channel":"a","data":1} {}`, ""},
		{`null`, ""},
	} {
		f.Add([]byte(s.body), s.key, s.key != "", uint16(7))
	}
	// One handler for every input (building one, with its Prometheus
	// registry, costs more than the request); each input gets a fresh
	// broker behind it. Inputs run one at a time in a worker.
	cur := &swapBroker{}
	h := newAPI(Config{Broker: cur, MaxBody: 4096, MaxPublishChannels: 4})
	f.Fuzz(func(t *testing.T, body []byte, key string, withKey bool, cut uint16) {
		b := newKeyBroker()
		b.fail["down"] = broker.ErrUnavailable
		b.fail["lost"] = broker.ErrUnknownOutcome
		cur.keyBroker = b
		req := httptest.NewRequest(http.MethodPost, "/api/publish", &splitReader{b: body, cut: int(cut) % (len(body) + 1)})
		if withKey {
			req.Header["Idempotency-Key"] = []string{key}
		}
		r := serve(h, req)
		switch r.code {
		case 200, 400, 413, 503, 504:
		default:
			t.Fatalf("status %d is not documented for a publish: %s", r.code, r.body)
		}
		if !json.Valid([]byte(r.body)) {
			t.Fatalf("answer is not JSON: %q", r.body)
		}
		want, valid := oracle(body, key, withKey)
		if len(body) > 4096 {
			valid = false
		}
		calls := b.called()
		if r.code == 200 && !valid {
			t.Fatalf("200 for an invalid request: %q key %q/%v: %s", body, key, withKey, r.body)
		}
		if r.code >= 400 && r.code < 500 && len(calls) != 0 {
			t.Fatalf("refused with %d but published %v", r.code, calls)
		}
		if valid {
			if r.code == 400 || r.code == 413 {
				t.Fatalf("%d for a valid request %q: %s", r.code, body, r.body)
			}
			var got []string
			for _, c := range calls {
				got = append(got, c.channel)
				if withKey && c.key != key || !withKey && c.key != want.key {
					t.Fatalf("published with key %q, want %q", c.key, key)
				}
			}
			// Each distinct channel once, in order, up to the first
			// unavailable one (the rest are not attempted).
			if i := slices.Index(want.channels, "down"); i >= 0 {
				want.channels = want.channels[:i+1]
			}
			if !slices.Equal(got, want.channels) {
				t.Fatalf("published to %q, want %q", got, want.channels)
			}
			stored := slices.ContainsFunc(want.channels, func(c string) bool { return c != "down" && c != "lost" })
			failed := slices.ContainsFunc(want.channels, func(c string) bool { return c == "down" || c == "lost" })
			if r.code == 200 && (failed || !stored) {
				t.Fatalf("200 although a channel failed: %s", r.body)
			}
		}
	})
}

// oracle reads a publish request independently of the handler: whether it
// is valid and, if so, its distinct channels and key.
func oracle(body []byte, key string, withKey bool) (publication, bool) {
	// Walk the top-level object in order: encoding/json matches field
	// names without regard to case and the last of repeated fields wins.
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return publication{}, false
	}
	m := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		name, ok := tok.(string)
		var v json.RawMessage
		if err != nil || !ok || dec.Decode(&v) != nil {
			return publication{}, false
		}
		for _, f := range []string{"channel", "channels", "data", "idempotency_key"} {
			if strings.EqualFold(name, f) {
				m[f] = v
			}
		}
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return publication{}, false
	}
	if _, err := dec.Token(); err != io.EOF {
		return publication{}, false
	}
	var p publication
	var ch string
	var chs []string
	var k *string
	if raw, ok := m["channel"]; ok && json.Unmarshal(raw, &ch) != nil {
		return p, false
	}
	if raw, ok := m["channels"]; ok && json.Unmarshal(raw, &chs) != nil {
		return p, false
	}
	if raw, ok := m["idempotency_key"]; ok && json.Unmarshal(raw, &k) != nil {
		return p, false
	}
	data, ok := m["data"]
	if !ok || !utf8.Valid(data) || !json.Valid(data) {
		return p, false
	}
	if withKey && k != nil && *k != key {
		return p, false
	}
	if withKey {
		p.key = key
	} else if k != nil {
		p.key = *k
	}
	if (withKey || k != nil) && (len(p.key) == 0 || len(p.key) > 128 || strings.IndexFunc(p.key, func(r rune) bool { return r < 0x20 || r > 0x7e }) >= 0) {
		return p, false
	}
	if ch != "" {
		if len(chs) > 0 {
			return p, false
		}
		chs = []string{ch}
	}
	if len(chs) == 0 || len(chs) > 4 {
		return p, false
	}
	for _, c := range chs {
		if !auth.ValidChannel(c) {
			return p, false
		}
		if !slices.Contains(p.channels, c) {
			p.channels = append(p.channels, c)
		}
	}
	return p, true
}
