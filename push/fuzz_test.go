package push_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"

	"github.com/herald-ws/herald/internal/testutil"
	"github.com/herald-ws/herald/push"
)

// replyFields are the fields each server op may carry.
var replyFields = map[string][]string{
	"ack":     {"op", "id", "offset", "recovered"},
	"error":   {"op", "id", "channel", "code", "message"},
	"pong":    {"op", "id"},
	"message": {"op", "channel", "offset", "data"},
	// Server-initiated: a token's refresh request and its consequences,
	// and the subscriptions a token grants on connect.
	"refresh":      {"op"},
	"unsubscribed": {"op", "channel", "code"},
	"subscribed":   {"op", "channel", "offset"},
}

// errorCodes is the documented set of error codes.
var errorCodes = []string{push.CodeBadRequest, push.CodeForbidden, push.CodeUnknownOp, push.CodeRateLimited,
	push.CodeTooManyChannels, push.CodeUnavailable, push.CodeInvalidToken}

// checkReply applies the protocol's invariants to one server frame: one
// JSON object with a known op and only that op's fields, an id only when it
// is a JSON number, error codes from the documented set, a string message.
func checkReply(p []byte) error {
	if !json.Valid(p) {
		return errors.New("not valid JSON")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(p, &m); err != nil {
		return fmt.Errorf("not a JSON object: %w", err)
	}
	var op string
	if err := json.Unmarshal(m["op"], &op); err != nil {
		return errors.New("op is not a string")
	}
	fields, ok := replyFields[op]
	if !ok {
		return fmt.Errorf("unknown op %q", op)
	}
	for k := range m {
		if !slices.Contains(fields, k) {
			return fmt.Errorf("%s reply with field %q", op, k)
		}
	}
	if id, ok := m["id"]; ok && !isJSONNumber(id) {
		return fmt.Errorf("id %s echoed, but it is not a number", id)
	}
	if op == "error" {
		var code, msg string
		if json.Unmarshal(m["code"], &code) != nil || !slices.Contains(errorCodes, code) {
			return fmt.Errorf("error code %s is not documented", m["code"])
		}
		if json.Unmarshal(m["message"], &msg) != nil || msg == "" {
			return fmt.Errorf("error message %s is not a non-empty string", m["message"])
		}
	}
	if off, ok := m["offset"]; ok {
		var n uint64
		if json.Unmarshal(off, &n) != nil {
			return fmt.Errorf("offset %s is not an unsigned integer", off)
		}
	}
	return nil
}

// isJSONNumber reports whether v is exactly one JSON number.
func isJSONNumber(v json.RawMessage) bool {
	if len(v) == 0 || !(v[0] == '-' || '0' <= v[0] && v[0] <= '9') {
		return false
	}
	var n json.Number
	return json.Unmarshal(v, &n) == nil
}

// FuzzClientFrame sends arbitrary frames to /ws of a real node (anonymous
// clients may publish; a low channel limit and publish rate so that every
// error path is reachable) over one connection, and checks every reply
// with checkReply. A ping with a fence id follows each frame, and the
// replies are read up to its pong; replies to asynchronous requests that
// arrive later are checked in a later round. Text that is not UTF-8 must
// close the connection with 1007 (a new one is dialled), a binary frame
// must be answered with bad_request.
func FuzzClientFrame(f *testing.F) {
	for _, s := range []string{
		`{"op":"ping"}`, `{"op":"ping","id":1}`, `{"op":"ping","id":-1.5e3}`, `{"op":"ping","id":"1"}`,
		`{"op":"ping","id":null}`, `{"op":"ping","id":{}}`, `{"op":"ping","id":[1]}`, `{"op":"ping","id":true}`,
		`{"op":"ping","id":123456789012345678901234567890}`, `{"op":"ping","id":1,"id":"x"}`,
		`{"op":"subscribe","channel":"news","id":2}`, `{"op":"subscribe","channel":"news","since":0,"id":3}`,
		`{"op":"subscribe","channel":"news","since":-1}`, `{"op":"subscribe","channel":"a b"}`,
		`{"op":"subscribe","channel":"user:7","id":4}`, `{"op":"subscribe","channel":""}`,
		`{"op":"unsubscribe","channel":"news","id":5}`, `{"op":"unsubscribe","channel":"never"}`,
		`{"op":"publish","channel":"news","data":{"x":1},"id":6}`, `{"op":"publish","channel":"news","id":7}`,
		`{"op":"publish","channel":"news","data":null}`, `{"op":"publish","channel":"news","data":"\u00e9\ud83d\ude00"}`,
		`{"op":"PING"}`, `{"OP":"ping"}`, `{"op":"nope","id":8}`, `{"op":""}`, `{}`, `[]`, `null`, `1`, `"op"`,
		`{"op":"ping"} trailing`, `{"op":"ping"`, ``, `{"op":"ping","id":1e999}`, `{"op":"subscribe","channel":"x","since":1e3}`,
		`{"op":"refresh","token":"a.b.c","id":10}`, `{"op":"refresh"}`, `{"op":"refresh","token":7}`,
		`{"op":"ping","id":01}`, `{"op":"\u0070ing","id":9}`, "{\"op\":\"ping\",\"id\":1}\x00", "\xff\xfe",
	} {
		f.Add([]byte(s), false)
	}
	f.Add([]byte(`{"op":"ping","id":1}`), true)
	n := testutil.StartNode(f, testutil.NodeOptions{ClientPublish: true, MaxChannelsPerConn: 4, PublishRate: 50})
	var c *testutil.WSClient
	f.Cleanup(func() {
		if c != nil {
			_ = c.Conn.Close()
		}
	})
	fence := uint64(0)
	f.Fuzz(func(t *testing.T, frame []byte, binary bool) {
		if c == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var err error
			if c, err = testutil.DialWSContext(ctx, testutil.WSURL(n, ""), nil, nil); err != nil {
				t.Fatalf("dial: %v", err)
			}
		}
		op := ws.OpText
		if binary {
			op = ws.OpBinary
		}
		if err := c.WriteFrame(op, frame); err != nil {
			t.Fatalf("write: %v", err)
		}
		if !binary && !utf8.Valid(frame) {
			_, err := c.NextRaw(10 * time.Second)
			for err == nil { // replies to earlier requests may come first
				_, err = c.NextRaw(10 * time.Second)
			}
			var ce *testutil.CloseError
			if !errors.As(err, &ce) || ce.Code != ws.StatusInvalidFramePayloadData {
				t.Fatalf("invalid UTF-8: %v, want a 1007 close", err)
			}
			_ = c.Conn.Close()
			c = nil
			return
		}
		fence++
		id := fmt.Sprintf("9007199254%06d", fence%1000000)
		if err := c.WriteFrame(ws.OpText, []byte(`{"op":"ping","id":`+id+`}`)); err != nil {
			t.Fatalf("write fence: %v", err)
		}
		sawBadRequest := false
		for {
			p, err := c.NextRaw(10 * time.Second)
			if err != nil {
				t.Fatalf("after %q: %v", frame, err)
			}
			if err := checkReply(p); err != nil {
				t.Fatalf("after %q: reply %q: %v", frame, p, err)
			}
			if bytes.Contains(p, []byte(`"code":"bad_request"`)) {
				sawBadRequest = true
			}
			if bytes.Equal(p, []byte(`{"op":"pong","id":`+id+`}`)) {
				break
			}
		}
		if binary && !sawBadRequest {
			t.Fatalf("binary frame %q not answered with bad_request", frame)
		}
	})
}
