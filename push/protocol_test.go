package push

import (
	"encoding/json"
	"testing"
)

func boolp(b bool) *bool { return &b }

func TestAppendAck(t *testing.T) {
	for _, c := range []struct {
		id         string
		withOffset bool
		offset     uint64
		recovered  *bool
		want       string
	}{
		{"", false, 0, nil, `{"op":"ack"}`},
		{"1", false, 0, nil, `{"op":"ack","id":1}`},
		{"1", false, 99, nil, `{"op":"ack","id":1}`}, // offset ignored without withOffset
		{"", true, 0, nil, `{"op":"ack","offset":0}`},
		{"7", true, 0, nil, `{"op":"ack","id":7,"offset":0}`},
		{"7", true, 1795475735782316, nil, `{"op":"ack","id":7,"offset":1795475735782316}`},
		{"7", true, 18446744073709551615, nil, `{"op":"ack","id":7,"offset":18446744073709551615}`},
		{"7", true, 5, boolp(true), `{"op":"ack","id":7,"offset":5,"recovered":true}`},
		{"7", true, 5, boolp(false), `{"op":"ack","id":7,"offset":5,"recovered":false}`},
		{"", true, 5, boolp(false), `{"op":"ack","offset":5,"recovered":false}`},
		{"-2.5e3", true, 1, nil, `{"op":"ack","id":-2.5e3,"offset":1}`}, // the id is echoed verbatim
	} {
		got := appendAck(nil, json.RawMessage(c.id), c.withOffset, c.offset, c.recovered)
		if string(got) != c.want {
			t.Errorf("appendAck(%q, %v, %d, %v) = %s, want %s", c.id, c.withOffset, c.offset, c.recovered, got, c.want)
		}
		if !json.Valid(got) {
			t.Errorf("appendAck(%q, ...) = %s is not JSON", c.id, got)
		}
	}
}

func TestAppendError(t *testing.T) {
	for _, c := range []struct {
		id, code, message string
		want              string
	}{
		{"", CodeBadRequest, "invalid JSON", `{"op":"error","code":"bad_request","message":"invalid JSON"}`},
		{"3", CodeForbidden, "no", `{"op":"error","id":3,"code":"forbidden","message":"no"}`},
		{"3", CodeUnknownOp, `unknown op "jump"`, `{"op":"error","id":3,"code":"unknown_op","message":"unknown op \"jump\""}`},
		{"4", CodeRateLimited, "", `{"op":"error","id":4,"code":"rate_limited","message":""}`},
		{"5", CodeTooManyChannels, "limit 2", `{"op":"error","id":5,"code":"too_many_channels","message":"limit 2"}`},
		{"6", CodeUnavailable, "broker: unavailable", `{"op":"error","id":6,"code":"unavailable","message":"broker: unavailable"}`},
		{"", CodeBadRequest, "a\\b\n\t\x01", `{"op":"error","code":"bad_request","message":"a\\b\n\t\u0001"}`},
		{"", CodeBadRequest, "<a&b>", `{"op":"error","code":"bad_request","message":"\u003ca\u0026b\u003e"}`},
		{"", CodeBadRequest, "café ✓", `{"op":"error","code":"bad_request","message":"café ✓"}`},
		{"", CodeBadRequest, "bad \xff byte", `{"op":"error","code":"bad_request","message":"bad \ufffd byte"}`},
	} {
		got := appendError(nil, json.RawMessage(c.id), c.code, c.message)
		if string(got) != c.want {
			t.Errorf("appendError(%q, %q, %q) = %s, want %s", c.id, c.code, c.message, got, c.want)
		}
		if !json.Valid(got) {
			t.Errorf("appendError(%q, %q, %q) = %s is not JSON", c.id, c.code, c.message, got)
		}
	}
}

func TestAppendPong(t *testing.T) {
	for _, c := range []struct{ id, want string }{
		{"", `{"op":"pong"}`},
		{"4", `{"op":"pong","id":4}`},
		{"0", `{"op":"pong","id":0}`},
		{"12345678901234567890123", `{"op":"pong","id":12345678901234567890123}`},
	} {
		if got := appendPong(nil, json.RawMessage(c.id)); string(got) != c.want {
			t.Errorf("appendPong(%q) = %s, want %s", c.id, got, c.want)
		}
	}
}

// The encoders append: they keep what dst holds and reuse its capacity, so
// the handler's reply buffer allocates nothing once it has grown.
func TestAppendReusesBuffer(t *testing.T) {
	dst := []byte("prefix:")
	got := appendPong(dst, json.RawMessage("1"))
	if string(got) != `prefix:{"op":"pong","id":1}` {
		t.Fatalf("appendPong kept %q", got)
	}
	buf := make([]byte, 0, 256)
	id := json.RawMessage("42")
	rec := true
	allocs := testing.AllocsPerRun(100, func() {
		buf = appendAck(buf[:0], id, true, 1795475735782316, &rec)
		buf = appendPong(buf[:0], id)
	})
	if allocs != 0 {
		t.Errorf("appendAck and appendPong into a grown buffer: %v allocations, want 0", allocs)
	}
}

func TestValidID(t *testing.T) {
	for _, c := range []struct {
		id string
		ok bool
	}{
		{"", true}, // absent
		{"0", true},
		{"1", true},
		{"-1", true},
		{"1.5", true},
		{"-0.0", true},
		{"1e3", true},
		{"1E-3", true},
		{"12345678901234567890123", true},
		{"1e400", true}, // a valid JSON number, echoed verbatim
		{"null", false}, // not a number: refused like a string
		{`"1"`, false},
		{`""`, false},
		{`"abc"`, false},
		{"true", false},
		{"false", false},
		{"[1]", false},
		{"{}", false},
		{"01", false},
		{"+1", false},
		{".5", false},
		{"1.", false},
		{"0x10", false},
		{"NaN", false},
		{"Infinity", false},
		{"-", false},
		{"1 2", false},
	} {
		if got := validID(json.RawMessage(c.id)); got != c.ok {
			t.Errorf("validID(%s) = %v, want %v", c.id, got, c.ok)
		}
	}
}

// The id reaches validID as the raw value inside a request, which is how
// the handler sees it.
func TestRequestID(t *testing.T) {
	for _, c := range []struct {
		frame string
		id    string
		ok    bool
	}{
		{`{"op":"ping"}`, ``, true},
		{`{"op":"ping","id":4}`, `4`, true},
		{`{"op":"ping","id": 4 }`, `4`, true},
		{`{"op":"ping","id":"4"}`, `"4"`, false},
		{`{"op":"ping","id":[4]}`, `[4]`, false},
		{`{"op":"ping","id":{"n":4}}`, `{"n":4}`, false},
	} {
		var req request
		if err := json.Unmarshal([]byte(c.frame), &req); err != nil {
			t.Fatalf("%s: %v", c.frame, err)
		}
		if string(req.ID) != c.id || validID(req.ID) != c.ok {
			t.Errorf("%s: id %q valid %v, want %q %v", c.frame, req.ID, validID(req.ID), c.id, c.ok)
		}
	}
}
