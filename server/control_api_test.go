package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/herald-ws/herald/auth"
	"github.com/herald-ws/herald/internal/testutil"
	"github.com/herald-ws/herald/server"
	"github.com/herald-ws/herald/session"
)

const ctlSecret = "control-test-secret"

// dialAs connects as user, allowed on channels (nil: any public channel).
func dialUser(t *testing.T, n *server.Node, user string, channels []string) *testutil.WSClient {
	t.Helper()
	tok, err := auth.Mint(ctlSecret, user, channels, false, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return testutil.DialWS(t, n, "token="+tok, nil)
}

// apiJSON calls the API with key and decodes a 200 answer into v.
func apiJSON(t *testing.T, n *server.Node, method, path, key string, body any, v any) {
	t.Helper()
	status, b, err := testutil.APIRequest(n, method, path, key, body)
	if err != nil || status != http.StatusOK {
		t.Fatalf("%s %s: %d %s %v", method, path, status, b, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s %s: %s: %v", method, path, b, err)
	}
}

// ping proves c is open and received nothing since its last read.
func ping(t *testing.T, c *testutil.WSClient, id int) {
	t.Helper()
	c.Send(map[string]any{"op": "ping", "id": id})
	if m := c.Read(); m.Op != "pong" || string(m.ID) != fmt.Sprint(id) {
		t.Fatalf("got %s, want only the pong %d", m.Raw, id)
	}
}

// TestControlEndpointsNeedTheKey: every new endpoint answers 401 without
// the API key or with a wrong one, and serves with it.
func TestControlEndpointsNeedTheKey(t *testing.T) {
	t.Parallel()
	const key = "ctl-key"
	n := testutil.StartNode(t, testutil.NodeOptions{APIKey: key, TokenSecret: ctlSecret, PresenceChannels: []string{"room:*"}})
	for _, ep := range []struct{ method, path, body string }{
		{"GET", "/api/history?channel=a", ""},
		{"POST", "/api/disconnect", `{"user":"42"}`},
		{"POST", "/api/unsubscribe", `{"user":"42","channel":"a"}`},
		{"GET", "/api/channels", ""},
		{"GET", "/api/info", ""},
		{"GET", "/api/presence?channel=room:1", ""},
		{"GET", "/api/presence_stats?channel=room:1", ""},
	} {
		for _, k := range []string{"", "wrong"} {
			status, b, err := testutil.APIRequest(n, ep.method, ep.path, k, ep.body)
			if err != nil || status != http.StatusUnauthorized {
				t.Errorf("%s %s with key %q: %d %s %v, want 401", ep.method, ep.path, k, status, b, err)
			}
		}
		status, b, err := testutil.APIRequest(n, ep.method, ep.path, key, ep.body)
		if err != nil || status != http.StatusOK {
			t.Errorf("%s %s with the key: %d %s %v, want 200", ep.method, ep.path, status, b, err)
		}
	}
}

// TestControlBadRequests: malformed parameters are 400 and do nothing.
func TestControlBadRequests(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{TokenSecret: ctlSecret, PresenceChannels: []string{"room:*"}})
	c := dialUser(t, n, "42", nil)
	c.Subscribe("room:1", 1)
	for _, ep := range []struct{ method, path, body string }{
		{"GET", "/api/history", ""},
		{"GET", "/api/history?channel=bad%20name", ""},
		{"GET", "/api/history?channel=a&since=-1", ""},
		{"GET", "/api/history?channel=a&limit=0", ""},
		{"GET", "/api/history?channel=a&limit=1001", ""},
		{"POST", "/api/disconnect", `{}`},
		{"POST", "/api/disconnect", `{"user":""}`},
		{"POST", "/api/disconnect", `not json`},
		{"POST", "/api/unsubscribe", `{"user":"42"}`},
		{"POST", "/api/unsubscribe", `{"channel":"room:1"}`},
		{"GET", "/api/channels?limit=0", ""},
		{"GET", "/api/presence?channel=lobby", ""}, // keeps no presence
		{"GET", "/api/presence_stats", ""},
	} {
		status, b, err := testutil.APIRequest(n, ep.method, ep.path, "", ep.body)
		if err != nil || status != http.StatusBadRequest {
			t.Errorf("%s %s %s: %d %s %v, want 400", ep.method, ep.path, ep.body, status, b, err)
		}
	}
	ping(t, c, 2) // still subscribed and open
	fence(t, n, c, "room:1")
}

// TestAPIDisconnect closes every connection of the user, only those, with
// 4000, and counts them.
func TestAPIDisconnect(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{TokenSecret: ctlSecret, Options: testutil.Options{Loops: 2}})
	var mine []*testutil.WSClient
	for range 4 {
		mine = append(mine, dialUser(t, n, "42", nil))
	}
	other := dialUser(t, n, "420", nil) // a prefix of the user is another user
	ping(t, mine[0], 1)
	var res struct{ Count, Nodes int }
	apiJSON(t, n, "POST", "/api/disconnect", "", `{"user":"42"}`, &res)
	if res.Count != 4 || res.Nodes != 1 {
		t.Fatalf("disconnect answered %+v, want 4 connections on 1 node", res)
	}
	for i, c := range mine {
		if code := c.ExpectClose(); code != session.StatusDisconnected {
			t.Fatalf("connection %d closed with %d, want %d", i, code, session.StatusDisconnected)
		}
	}
	ping(t, other, 2)
	apiJSON(t, n, "POST", "/api/disconnect", "", `{"user":"42"}`, &res)
	if res.Count != 0 {
		t.Fatalf("second disconnect closed %d", res.Count)
	}
}

// TestAPIUnsubscribe removes the user's subscriptions to the channel
// (only that user's, only that channel) and tells each connection.
func TestAPIUnsubscribe(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{TokenSecret: ctlSecret, Options: testutil.Options{Loops: 2}})
	a1, a2, b := dialUser(t, n, "42", nil), dialUser(t, n, "42", nil), dialUser(t, n, "43", nil)
	for _, c := range []*testutil.WSClient{a1, a2, b} {
		c.Subscribe("news", 1)
	}
	a1.Subscribe("sport", 2)
	var res struct{ Count, Nodes int }
	apiJSON(t, n, "POST", "/api/unsubscribe", "", `{"user":"42","channel":"news"}`, &res)
	if res.Count != 2 {
		t.Fatalf("unsubscribe answered %+v, want 2", res)
	}
	for _, c := range []*testutil.WSClient{a1, a2} {
		if m := c.Read(); string(m.Raw) != `{"op":"unsubscribed","channel":"news"}` {
			t.Fatalf("got %s, want the unsubscribed notice", m.Raw)
		}
	}
	testutil.Publish(t, n, "news", `"after"`)
	b.ExpectMessage("news")
	fence(t, n, a1, "sport") // a1 got nothing on news, still has sport
	ping(t, a2, 3)
	// The connection may subscribe again.
	a2.Subscribe("news", 4)
	fence(t, n, a2, "news")
}

// TestAPIHistoryPages walks a channel's history in pages: every
// publication exactly once, in order, with next/more consistent.
func TestAPIHistoryPages(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{HistorySize: 20})
	var offs []uint64
	for i := range 27 {
		offs = append(offs, testutil.Publish(t, n, "h", i))
	}
	type page struct {
		Top          uint64
		Recovered    bool
		Next         uint64
		More         bool
		Publications []struct {
			Offset uint64
			Data   json.RawMessage
			Time   int64
		}
	}
	// From the start: history holds the newest 20, so since=0 is not
	// fully recovered.
	var got []uint64
	since, pages := uint64(0), 0
	for {
		var p page
		apiJSON(t, n, "GET", fmt.Sprintf("/api/history?channel=h&since=%d&limit=6", since), "", nil, &p)
		pages++
		if p.Top != offs[26] {
			t.Fatalf("top %d, want %d", p.Top, offs[26])
		}
		if since == 0 && p.Recovered {
			t.Fatalf("since 0 recovered, but history was trimmed to 20")
		}
		for _, e := range p.Publications {
			got = append(got, e.Offset)
			if e.Time == 0 || len(e.Data) == 0 {
				t.Fatalf("entry %+v lacks time or data", e)
			}
		}
		if len(p.Publications) > 6 || (p.More && len(p.Publications) != 6) {
			t.Fatalf("page of %d with more=%v", len(p.Publications), p.More)
		}
		if !p.More {
			break
		}
		since = p.Next
	}
	if !slices.Equal(got, offs[7:]) || pages != 4 {
		t.Fatalf("paged %v in %d pages, want %v in 4", got, pages, offs[7:])
	}
	var p page
	apiJSON(t, n, "GET", fmt.Sprintf("/api/history?channel=h&since=%d", offs[20]), "", nil, &p)
	if !p.Recovered || len(p.Publications) != 6 || p.More || p.Next != offs[26] {
		t.Fatalf("since %d: %+v", offs[20], p)
	}
	apiJSON(t, n, "GET", fmt.Sprintf("/api/history?channel=h&since=%d", offs[26]+5), "", nil, &p)
	if p.Recovered || len(p.Publications) != 0 {
		t.Fatalf("since past the top: %+v, want not recovered and empty", p)
	}
	apiJSON(t, n, "GET", "/api/history?channel=never", "", nil, &p)
	if len(p.Publications) != 0 || p.More {
		t.Fatalf("empty channel: %+v", p)
	}
}

// TestAPIChannelsAndInfo: channels are paged in name order with a
// pattern filter and local counts; info counts the node's connections.
func TestAPIChannelsAndInfo(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{})
	c1, c2 := testutil.DialWS(t, n, "", nil), testutil.DialWS(t, n, "", nil)
	names := []string{"b:1", "b:2", "a:3", "b:4", "b:5", "c:6", "b:7"}
	for i, ch := range names {
		c1.Subscribe(ch, i+1)
	}
	c2.Subscribe("b:2", 1)
	type list struct {
		Channels []struct {
			Channel        string
			Local, Cluster int64
		}
		Next  string
		Nodes int
	}
	var got []string
	cursor, pages := "", 0
	for {
		var l list
		apiJSON(t, n, "GET", "/api/channels?pattern=b:*&limit=2&cursor="+cursor, "", nil, &l)
		pages++
		for _, ch := range l.Channels {
			got = append(got, ch.Channel)
			want := int64(1)
			if ch.Channel == "b:2" {
				want = 2
			}
			if ch.Local != want || ch.Cluster != want {
				t.Fatalf("%s: %+v, want %d subscribers", ch.Channel, ch, want)
			}
		}
		if l.Next == "" {
			break
		}
		cursor = l.Next
	}
	if want := []string{"b:1", "b:2", "b:4", "b:5", "b:7"}; !slices.Equal(got, want) {
		t.Fatalf("paged %v, want %v", got, want)
	}
	var all list
	apiJSON(t, n, "GET", "/api/channels", "", nil, &all)
	if len(all.Channels) != len(names) || all.Channels[0].Channel != "a:3" || all.Next != "" {
		t.Fatalf("all channels: %+v", all)
	}
	var info struct {
		Nodes []struct {
			ID, Version   string
			Connections   int64
			Subscriptions int64
		}
		Connections int64
	}
	apiJSON(t, n, "GET", "/api/info", "", nil, &info)
	if len(info.Nodes) != 1 || info.Connections != 2 || info.Nodes[0].Subscriptions != 8 || info.Nodes[0].Version == "" {
		t.Fatalf("info %+v", info)
	}
}

// TestSubscribeLast: the newest N publications come first, then the live
// ones, without a gap or a repeat even while publishes race the subscribe.
func TestSubscribeLast(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{})
	var offs []uint64
	for i := range 10 {
		offs = append(offs, testutil.Publish(t, n, "price", i))
	}
	c := testutil.DialWS(t, n, "", nil)
	c.Send(`{"op":"subscribe","channel":"price","last":3,"id":1}`)
	if ack := c.ExpectAck(1); ack.Offset != offs[9] || ack.Recovered != nil {
		t.Fatalf("ack %s", ack.Raw)
	}
	for _, want := range offs[7:] {
		if m := c.ExpectMessage("price"); m.Offset != want {
			t.Fatalf("got offset %d, want %d", m.Offset, want)
		}
	}
	fence(t, n, c, "price")
	// More than the history holds: all of it.
	c2 := testutil.DialWS(t, n, "", nil)
	c2.Send(`{"op":"subscribe","channel":"price","last":1000,"id":1}`)
	c2.ExpectAck(1)
	for _, want := range offs {
		if m := c2.ExpectMessage("price"); m.Offset != want {
			t.Fatalf("got offset %d, want %d", m.Offset, want)
		}
	}
	// Racing publishes: from the first message on, offsets are contiguous.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 200 {
			if _, err := testutil.PublishKey(n, "", "race", i); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	time.Sleep(5 * time.Millisecond)
	c3 := testutil.DialWS(t, n, "", nil)
	c3.Send(`{"op":"subscribe","channel":"race","last":5,"id":1}`)
	c3.ExpectAck(1)
	wg.Wait()
	var prev uint64
	for {
		m := c3.ExpectMessage("race")
		if prev != 0 && m.Offset != prev+1 {
			t.Fatalf("offset %d after %d", m.Offset, prev)
		}
		prev = m.Offset
		if string(m.Data) == "199" {
			break
		}
	}
}

// TestSubscribeLastRefused: a bad last, last with since, a channel the
// token does not grant and another user's channel are refused.
func TestSubscribeLastRefused(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{TokenSecret: ctlSecret})
	testutil.Publish(t, n, "user:43", 1)
	testutil.Publish(t, n, "secret", 1)
	c := dialUser(t, n, "42", []string{"news:*"})
	for i, tc := range []struct{ req, code string }{
		{`{"op":"subscribe","channel":"news:1","last":0,"id":%d}`, "bad_request"},
		{`{"op":"subscribe","channel":"news:1","last":1001,"id":%d}`, "bad_request"},
		{`{"op":"subscribe","channel":"news:1","last":-1,"id":%d}`, "bad_request"},
		{`{"op":"subscribe","channel":"news:1","last":1,"since":0,"id":%d}`, "bad_request"},
		{`{"op":"subscribe","channel":"secret","last":1,"id":%d}`, "forbidden"},
		{`{"op":"subscribe","channel":"user:43","last":1,"id":%d}`, "forbidden"},
	} {
		c.Send(fmt.Sprintf(tc.req, i+1))
		c.ExpectError(i+1, tc.code)
	}
	ping(t, c, 99) // no history leaked after the errors
}
