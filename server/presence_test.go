package server_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/herald-ws/herald/internal/testutil"
)

type presenceList struct {
	Channel string
	Members []struct{ User, Conn string }
	Nodes   int
}

type presenceCounts struct {
	Channel        string
	Clients, Users int
	Nodes          int
}

// presenceEvent is a join or leave frame.
type presenceEvent struct {
	Op, Channel, User, Conn string
}

func readEvent(t *testing.T, c *testutil.WSClient) presenceEvent {
	t.Helper()
	m := c.Read()
	var e presenceEvent
	if err := json.Unmarshal(m.Raw, &e); err != nil || (e.Op != "join" && e.Op != "leave") || e.Conn == "" {
		t.Fatalf("got %s, want a join or leave", m.Raw)
	}
	return e
}

func users(p presenceList) []string {
	var u []string
	for _, m := range p.Members {
		u = append(u, m.User)
	}
	return u
}

// TestPresenceMembersAndCounts: members are the subscribed connections,
// counts follow subscribes, unsubscribes and closes, and channels outside
// -presence-channels keep none.
func TestPresenceMembersAndCounts(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{TokenSecret: ctlSecret, PresenceChannels: []string{"room:*", "lobby"}})
	a1, a2, b := dialUser(t, n, "alice", nil), dialUser(t, n, "alice", nil), dialUser(t, n, "bob", nil)
	for _, c := range []*testutil.WSClient{a1, a2, b} {
		c.Subscribe("room:1", 1)
	}
	b.Subscribe("lobby", 2)
	get := func(ch string) (presenceList, presenceCounts) {
		var p presenceList
		var s presenceCounts
		apiJSON(t, n, "GET", "/api/presence?channel="+ch, "", nil, &p)
		apiJSON(t, n, "GET", "/api/presence_stats?channel="+ch, "", nil, &s)
		return p, s
	}
	p, s := get("room:1")
	if !slices.Equal(users(p), []string{"alice", "alice", "bob"}) || s.Clients != 3 || s.Users != 2 || p.Nodes != 1 {
		t.Fatalf("presence %+v, stats %+v", p, s)
	}
	conns := map[string]bool{}
	for _, m := range p.Members {
		conns[m.Conn] = true
	}
	if len(conns) != 3 {
		t.Fatalf("connection ids %v are not distinct", p.Members)
	}
	a1.Send(`{"op":"unsubscribe","channel":"room:1","id":3}`)
	a1.ExpectAck(3)
	if p, s = get("room:1"); !slices.Equal(users(p), []string{"alice", "bob"}) || s.Clients != 2 || s.Users != 2 {
		t.Fatalf("after an unsubscribe: presence %+v, stats %+v", p, s)
	}
	_ = b.Conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		p, s = get("room:1")
		if s.Clients == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bob's close never left presence: %+v", s)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !slices.Equal(users(p), []string{"alice"}) || s.Users != 1 {
		t.Fatalf("after a close: presence %+v, stats %+v", p, s)
	}
	if _, s = get("lobby"); s.Clients != 0 || s.Users != 0 {
		t.Fatalf("lobby after bob left: %+v", s)
	}
	var res struct{ Count int }
	apiJSON(t, n, "POST", "/api/unsubscribe", "", `{"user":"alice","channel":"room:1"}`, &res)
	if p, s = get("room:1"); len(p.Members) != 0 || s.Clients != 0 || res.Count != 1 {
		t.Fatalf("after the API unsubscribe (%d): presence %+v, stats %+v", res.Count, p, s)
	}
	status, body, _ := testutil.APIRequest(n, http.MethodGet, "/api/presence?channel=news", "", nil)
	if status != http.StatusBadRequest {
		t.Fatalf("presence of a channel outside -presence-channels: %d %s", status, body)
	}
}

// TestPresenceJoinLeave: with -presence-join-leave every subscriber of
// the channel hears each join (the joiner included) and each leave, in
// order, with the member's user and connection id; a channel without
// presence sends none.
func TestPresenceJoinLeave(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{TokenSecret: ctlSecret, PresenceChannels: []string{"room:*"}, PresenceJoinLeave: true})
	a := dialUser(t, n, "alice", nil)
	a.Subscribe("room:1", 1)
	ja := readEvent(t, a)
	if ja != (presenceEvent{"join", "room:1", "alice", ja.Conn}) {
		t.Fatalf("alice's own join: %+v", ja)
	}
	b := dialUser(t, n, "bob", nil)
	b.Subscribe("room:1", 1)
	jb := readEvent(t, a)
	if jb.Op != "join" || jb.User != "bob" || jb.Conn == ja.Conn {
		t.Fatalf("alice heard %+v, want bob's join", jb)
	}
	if e := readEvent(t, b); e != jb {
		t.Fatalf("bob heard %+v, want his join %+v", e, jb)
	}
	b.Send(`{"op":"unsubscribe","channel":"room:1","id":2}`)
	b.ExpectAck(2)
	if e := readEvent(t, a); e != (presenceEvent{"leave", "room:1", "bob", jb.Conn}) {
		t.Fatalf("alice heard %+v, want bob's leave", e)
	}
	b.Subscribe("room:1", 3)
	rejoin := readEvent(t, a)
	readEvent(t, b)
	_ = b.Conn.Close()
	if e := readEvent(t, a); e != (presenceEvent{"leave", "room:1", "bob", rejoin.Conn}) {
		t.Fatalf("alice heard %+v, want bob's leave on close", e)
	}
	a.Subscribe("other", 4)
	c := dialUser(t, n, "carol", nil)
	c.Subscribe("other", 1)
	fence(t, n, a, "other") // no join for a channel without presence
}

// TestPresenceAuthorization: the presence endpoints need the API key, and
// a client cannot join the presence of a channel its token does not
// grant, or of another user's channel.
func TestPresenceAuthorization(t *testing.T) {
	t.Parallel()
	const key = "presence-key"
	n := testutil.StartNode(t, testutil.NodeOptions{APIKey: key, TokenSecret: ctlSecret,
		PresenceChannels: []string{"room:*", "user:*"}, PresenceJoinLeave: true})
	a := dialUser(t, n, "alice", []string{"room:1"})
	a.Subscribe("room:1", 1)
	readEvent(t, a)
	m := dialUser(t, n, "mallory", []string{"room:2"})
	m.Send(`{"op":"subscribe","channel":"room:1","id":1}`)
	m.ExpectError(1, "forbidden")
	m.Send(`{"op":"subscribe","channel":"user:alice","id":2}`)
	m.ExpectError(2, "forbidden")
	ping(t, a, 9) // no join reached alice
	for _, path := range []string{"/api/presence?channel=room:1", "/api/presence_stats?channel=room:1"} {
		if status, _, _ := testutil.APIRequest(n, http.MethodGet, path, "", nil); status != http.StatusUnauthorized {
			t.Fatalf("%s without the key: %d", path, status)
		}
	}
	var s presenceCounts
	apiJSON(t, n, "GET", "/api/presence_stats?channel=room:1", key, nil, &s)
	if s.Clients != 1 {
		t.Fatalf("stats %+v: the refused subscribes must not count", s)
	}
	var u presenceCounts
	apiJSON(t, n, "GET", "/api/presence_stats?channel=user:alice", key, nil, &u)
	if u.Clients != 0 {
		t.Fatalf("user:alice %+v", u)
	}
}
