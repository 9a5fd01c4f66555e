package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/herald-ws/herald/internal/testutil"
)

func TestPingPong(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{})
	c := testutil.DialWS(t, n, "", nil)
	for _, tc := range []struct{ req, want string }{
		{`{"op":"ping","id":4}`, `{"op":"pong","id":4}`},
		{`{"op":"ping"}`, `{"op":"pong"}`},
		{`{"op":"ping","id":0}`, `{"op":"pong","id":0}`},
		{`{"op":"ping","id":-17.5}`, `{"op":"pong","id":-17.5}`},
		{`{"id":9007199254740993,"op":"ping"}`, `{"op":"pong","id":9007199254740993}`},
	} {
		c.Send(tc.req)
		wantRaw(t, c.Read(), tc.want)
	}
}

func TestSubscribeAckAndMessages(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{})
	c := testutil.DialWS(t, n, "", nil)
	c.Send(`{"op":"subscribe","channel":"news","id":1}`)
	ack := c.ExpectAck(1)
	if ack.Offset == 0 || ack.Recovered != nil {
		t.Fatalf("ack %s: want an offset and no recovered field", ack.Raw)
	}
	wantRaw(t, ack, fmt.Sprintf(`{"op":"ack","id":1,"offset":%d}`, ack.Offset))

	data := `{"text":"héllo \"world\"","n":[1,2.5,-3e3],"nested":{"ok":true,"nil":null}}`
	off := testutil.Publish(t, n, "news", data)
	if off != ack.Offset+1 {
		t.Fatalf("first publication got offset %d, want ack offset %d + 1", off, ack.Offset)
	}
	m := c.ExpectMessage("news")
	wantRaw(t, m, messageFrame("news", off, data))

	// Offsets rise by exactly one per publication, whatever the data.
	prev := off
	for i, d := range []string{`1`, `"two"`, `[3]`, `{"four":4}`, `null`, `true`} {
		got := testutil.Publish(t, n, "news", d)
		if got != prev+1 {
			t.Fatalf("publication %d: offset %d after %d", i, got, prev)
		}
		wantRaw(t, c.Read(), messageFrame("news", got, d))
		prev = got
	}
	// Whitespace inside data is kept as published: the same JSON value.
	spaced := "{ \"a\" : [ 1 , 2 ] }"
	got := testutil.Publish(t, n, "news", spaced)
	m = c.ExpectMessage("news")
	if m.Offset != got || !jsonEqual(m.Data, []byte(spaced)) {
		t.Fatalf("got %s, want offset %d and data %s", m.Raw, got, spaced)
	}

	// Another channel's publication does not reach this client.
	testutil.Publish(t, n, "elsewhere", `1`)
	fence(t, n, c, "news")
}

func TestUnsubscribe(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{})
	c := testutil.DialWS(t, n, "", nil)
	c.Subscribe("news", 1)
	c.Subscribe("other", 2)
	off := testutil.Publish(t, n, "news", `"before"`)
	wantRaw(t, c.Read(), messageFrame("news", off, `"before"`))

	c.Send(`{"op":"unsubscribe","channel":"news","id":3}`)
	wantRaw(t, c.Read(), `{"op":"ack","id":3}`)
	for i := range 5 {
		testutil.Publish(t, n, "news", fmt.Sprintf(`%d`, i))
	}
	fence(t, n, c, "other")

	// Subscribing again works and gets only what follows.
	top := c.Subscribe("news", 4)
	if top != off+5 {
		t.Fatalf("resubscribe ack offset %d, want %d", top, off+5)
	}
	off = testutil.Publish(t, n, "news", `"after"`)
	wantRaw(t, c.Read(), messageFrame("news", off, `"after"`))
	if st := testutil.Stats(t, n, ""); st["subscriptions"] != 2 || st["channels"] != 2 {
		t.Fatalf("stats %v: want 2 subscriptions on 2 channels", st)
	}
}

func TestPublishSeveralChannels(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{})
	both := testutil.DialWS(t, n, "", nil)
	onlyB := testutil.DialWS(t, n, "", nil)
	topA := both.Subscribe("multi.a", 1)
	topB := both.Subscribe("multi.b", 2)
	onlyB.Subscribe("multi.b", 1)

	status, body, err := testutil.APIRequest(n, http.MethodPost, "/api/publish", "",
		`{"channels":["multi.a","multi.b"],"data":{"x":1}}`)
	if err != nil || status != http.StatusOK {
		t.Fatalf("publish: %d %s %v", status, body, err)
	}
	var got map[string]map[string]uint64
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil || len(got) != 1 || len(got["offsets"]) != 2 {
		t.Fatalf("reply %s: want {\"offsets\":{two channels}} (%v)", body, err)
	}
	offA, offB := got["offsets"]["multi.a"], got["offsets"]["multi.b"]
	if offA != topA+1 || offB != topB+1 {
		t.Fatalf("offsets %s, want multi.a %d and multi.b %d", body, topA+1, topB+1)
	}
	wantRaw(t, both.Read(), messageFrame("multi.a", offA, `{"x":1}`))
	wantRaw(t, both.Read(), messageFrame("multi.b", offB, `{"x":1}`))
	wantRaw(t, onlyB.Read(), messageFrame("multi.b", offB, `{"x":1}`))
	fence(t, n, onlyB, "multi.b")
}

func TestClientPublish(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{ClientPublish: true})
	sub := testutil.DialWS(t, n, "", nil)
	pub := testutil.DialWS(t, n, "", nil)
	top := sub.Subscribe("chat", 1)

	pub.Send(`{"op":"publish","channel":"chat","data":{"from":"pub","text":"hi"},"id":3}`)
	ack := pub.ExpectAck(3)
	if ack.Offset != top+1 {
		t.Fatalf("publish ack %s, want offset %d", ack.Raw, top+1)
	}
	wantRaw(t, ack, fmt.Sprintf(`{"op":"ack","id":3,"offset":%d}`, top+1))
	wantRaw(t, sub.Read(), messageFrame("chat", top+1, `{"from":"pub","text":"hi"}`))

	// Without an id the ack has none; a subscribed publisher gets its own
	// message too (before the ack, since delivery precedes the reply).
	pub.Subscribe("chat", 4)
	pub.Send(`{"op":"publish","channel":"chat","data":"again"}`)
	wantRaw(t, pub.Read(), messageFrame("chat", top+2, `"again"`))
	wantRaw(t, pub.Read(), fmt.Sprintf(`{"op":"ack","offset":%d}`, top+2))
	wantRaw(t, sub.Read(), messageFrame("chat", top+2, `"again"`))

	// The API sees the same offsets.
	if off := testutil.Publish(t, n, "chat", `3`); off != top+3 {
		t.Fatalf("API publish got %d, want %d", off, top+3)
	}
	wantRaw(t, sub.Read(), messageFrame("chat", top+3, `3`))
}

func TestProtocolErrors(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{ClientPublish: true})
	c := testutil.DialWS(t, n, "", nil)
	c.Subscribe("ok", 1)
	long := strings.Repeat("a", 256)
	for _, tc := range []struct {
		name string
		req  string
		id   any // echoed id; nil: none
		code string
	}{
		{"unknown op", `{"op":"frobnicate","id":7}`, 7, "unknown_op"},
		{"unknown op case", `{"op":"PING","id":8}`, 8, "unknown_op"},
		{"unknown op without id", `{"op":"frobnicate"}`, nil, "unknown_op"},
		{"invalid JSON", `{"op":"ping",`, nil, "bad_request"},
		{"not an object", `[1,2,3]`, nil, "bad_request"},
		{"missing op", `{"id":5}`, 5, "bad_request"},
		{"empty op", `{"op":"","id":6}`, 6, "bad_request"},
		{"string id", `{"op":"ping","id":"abc"}`, nil, "bad_request"},
		{"bool id", `{"op":"ping","id":true}`, nil, "bad_request"},
		{"object id", `{"op":"ping","id":{"n":1}}`, nil, "bad_request"},
		{"missing channel", `{"op":"subscribe","id":10}`, 10, "bad_request"},
		{"empty channel", `{"op":"subscribe","channel":"","id":11}`, 11, "bad_request"},
		{"256-byte channel", `{"op":"subscribe","channel":"` + long + `","id":12}`, 12, "bad_request"},
		{"channel with a space", `{"op":"subscribe","channel":"news today","id":13}`, 13, "bad_request"},
		{"unicode channel", `{"op":"subscribe","channel":"café","id":14}`, 14, "bad_request"},
		{"escaped unicode channel", `{"op":"subscribe","channel":"n\u0435ws","id":15}`, 15, "bad_request"},
		{"slash in channel", `{"op":"subscribe","channel":"a/b","id":16}`, 16, "bad_request"},
		{"duplicate subscribe", `{"op":"subscribe","channel":"ok","id":20}`, 20, "bad_request"},
		{"unsubscribe not subscribed", `{"op":"unsubscribe","channel":"never","id":21}`, 21, "bad_request"},
		{"unsubscribe invalid channel", `{"op":"unsubscribe","channel":"bad name","id":22}`, 22, "bad_request"},
		{"publish without data", `{"op":"publish","channel":"ok","id":23}`, 23, "bad_request"},
		{"publish invalid channel", `{"op":"publish","channel":"","data":1,"id":24}`, 24, "bad_request"},
		{"anonymous on a personal channel", `{"op":"subscribe","channel":"user:42","id":30}`, 30, "forbidden"},
		{"anonymous publish to a personal channel", `{"op":"publish","channel":"user:42","data":1,"id":31}`, 31, "forbidden"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c.Send(tc.req)
			c.ExpectError(tc.id, tc.code)
		})
	}
	t.Run("binary frame", func(t *testing.T) {
		if err := c.WriteFrame(ws.OpBinary, []byte(`{"op":"ping","id":1}`)); err != nil {
			t.Fatal(err)
		}
		c.ExpectError(nil, "bad_request")
	})
	t.Run("255-byte channel is valid", func(t *testing.T) {
		c.Subscribe(strings.Repeat("b", 255), 40)
	})
	// No error closed the connection, and none of the refused operations
	// left anything behind: the connection still holds exactly its two
	// subscriptions and gets nothing but the fence.
	c.Send(`{"op":"ping","id":99}`)
	wantRaw(t, c.Read(), `{"op":"pong","id":99}`)
	if st := testutil.Stats(t, n, ""); st["subscriptions"] != 2 {
		t.Fatalf("stats %v: want 2 subscriptions", st)
	}
	testutil.Publish(t, n, "user:42", `"private"`)
	fence(t, n, c, "ok")
}

func TestAnonymousPublishForbidden(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{ClientPublish: false})
	sub := testutil.DialWS(t, n, "", nil)
	pub := testutil.DialWS(t, n, "", nil)
	sub.Subscribe("chat", 1)
	pub.Send(`{"op":"publish","channel":"chat","data":"nope","id":2}`)
	pub.ExpectError(2, "forbidden")
	fence(t, n, sub, "chat")
}

func TestTooManyChannels(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{MaxChannelsPerConn: 2})
	c := testutil.DialWS(t, n, "", nil)
	c.Subscribe("a", 1)
	c.Subscribe("b", 2)
	c.Send(`{"op":"subscribe","channel":"c","id":3}`)
	c.ExpectError(3, "too_many_channels")
	testutil.Publish(t, n, "c", `"refused"`)
	fence(t, n, c, "a")

	// Freeing a slot lets the subscribe through.
	c.Send(`{"op":"unsubscribe","channel":"b","id":4}`)
	c.ExpectAck(4)
	c.Subscribe("c", 5)
	off := testutil.Publish(t, n, "c", `"now"`)
	wantRaw(t, c.Read(), messageFrame("c", off, `"now"`))
}

// frames encodes masked client text frames back to back, so they reach the
// server in one write.
func frames(t *testing.T, payloads ...string) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, p := range payloads {
		f := ws.MaskFrameInPlace(ws.NewTextFrame([]byte(p)))
		if err := ws.WriteFrame(&b, f); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

func TestPublishRateLimited(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{ClientPublish: true, PublishRate: 2})
	sub := testutil.DialWS(t, n, "", nil)
	pub := testutil.DialWS(t, n, "", nil)
	top := sub.Subscribe("chat", 1)

	if _, err := pub.Conn.Write(frames(t,
		`{"op":"publish","channel":"chat","data":1,"id":1}`,
		`{"op":"publish","channel":"chat","data":2,"id":2}`,
		`{"op":"publish","channel":"chat","data":3,"id":3}`,
	)); err != nil {
		t.Fatal(err)
	}
	// The refusal is immediate, the acks come back from the broker: match
	// replies by id, not by order.
	replies := map[string]testutil.Msg{}
	for range 3 {
		m := pub.Read()
		replies[string(m.ID)] = m
	}
	for _, id := range []string{"1", "2"} {
		if m := replies[id]; m.Op != "ack" || m.Offset == 0 {
			t.Fatalf("publish %s: got %s, want an ack with offset", id, m.Raw)
		}
	}
	if m := replies["3"]; m.Op != "error" || m.Code != "rate_limited" || m.Message == "" {
		t.Fatalf("third publish: got %s, want rate_limited", m.Raw)
	}
	if replies["1"].Offset == replies["2"].Offset {
		t.Fatalf("two publications share offset %d", replies["1"].Offset)
	}
	wantRaw(t, sub.Read(), messageFrame("chat", top+1, "1"))
	wantRaw(t, sub.Read(), messageFrame("chat", top+2, "2"))

	// Half a second refills one token at 2/s.
	time.Sleep(600 * time.Millisecond)
	pub.Send(`{"op":"publish","channel":"chat","data":4,"id":4}`)
	wantRaw(t, pub.Read(), fmt.Sprintf(`{"op":"ack","id":4,"offset":%d}`, top+3))
	wantRaw(t, sub.Read(), messageFrame("chat", top+3, "4"))
	fence(t, n, sub, "chat")
}

// TestSubscribeThenUnsubscribeAtOnce sends a subscribe and its unsubscribe
// in one write, so the unsubscribe lands before the subscribe's history
// lookup returns. Whatever the late subscribe reply is, it must go to its
// own connection and never into a neighbour's stream (replies are queued in
// a buffer shared by the loop's sessions).
func TestSubscribeThenUnsubscribeAtOnce(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{Options: testutil.Options{Loops: 1}})
	a := testutil.DialWS(t, n, "", nil)
	b := testutil.DialWS(t, n, "", nil)
	b.Subscribe("b.chan", 1)
	for round := range 20 {
		ch := fmt.Sprintf("flip.%d", round)
		if _, err := a.Conn.Write(frames(t,
			fmt.Sprintf(`{"op":"subscribe","channel":%q,"id":1}`, ch),
			fmt.Sprintf(`{"op":"unsubscribe","channel":%q,"id":2}`, ch),
		)); err != nil {
			t.Fatal(err)
		}
		// a hears about both requests, on its own connection.
		seen := map[string]testutil.Msg{}
		for range 2 {
			m := a.Read()
			seen[string(m.ID)] = m
		}
		if m := seen["2"]; m.Op != "ack" {
			t.Fatalf("round %d: unsubscribe reply %s, want ack", round, m.Raw)
		}
		if m := seen["1"]; m.Op != "ack" && m.Op != "error" {
			t.Fatalf("round %d: subscribe reply %s", round, m.Raw)
		}
		// b's stream holds only its own frames.
		b.Send(fmt.Sprintf(`{"op":"ping","id":%d}`, 100+round))
		wantRaw(t, b.Read(), fmt.Sprintf(`{"op":"pong","id":%d}`, 100+round))
	}
	fence(t, n, b, "b.chan")
	a.Send(`{"op":"ping","id":7}`)
	wantRaw(t, a.Read(), `{"op":"pong","id":7}`)
	if st := testutil.Stats(t, n, ""); st["subscriptions"] != 1 {
		t.Fatalf("stats %v: want only b's subscription", st)
	}
}

// TestClientPublishKeepsOrder sends a burst of publishes in one write: the
// channel carries them in the order the client sent them, and the acks
// come back in that order with rising offsets.
func TestClientPublishKeepsOrder(t *testing.T) {
	t.Parallel()
	const burst = 50
	n := testutil.StartNode(t, testutil.NodeOptions{ClientPublish: true})
	sub := testutil.DialWS(t, n, "", nil)
	pub := testutil.DialWS(t, n, "", nil)
	top := sub.Subscribe("ordered", 1)
	reqs := make([]string, burst)
	for i := range reqs {
		reqs[i] = fmt.Sprintf(`{"op":"publish","channel":"ordered","data":%d,"id":%d}`, i, i)
	}
	if _, err := pub.Conn.Write(frames(t, reqs...)); err != nil {
		t.Fatal(err)
	}
	for i := range burst {
		wantRaw(t, pub.Read(), fmt.Sprintf(`{"op":"ack","id":%d,"offset":%d}`, i, top+1+uint64(i)))
	}
	for i := range burst {
		wantRaw(t, sub.Read(), messageFrame("ordered", top+1+uint64(i), fmt.Sprint(i)))
	}
}
