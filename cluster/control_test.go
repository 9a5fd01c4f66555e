package cluster

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/herald-ws/herald/auth"
	"github.com/herald-ws/herald/broker/natsbroker"
	"github.com/herald-ws/herald/internal/testutil"
	"github.com/herald-ws/herald/server"
	"github.com/herald-ws/herald/session"
)

const ctlSecret = "cluster-control-secret"

// startPresenceNode starts a node on NATS at url with tokens and presence
// (with join and leave messages) on room:*.
func startPresenceNode(t *testing.T, url string) *server.Node {
	t.Helper()
	b, err := natsbroker.New(natsbroker.Config{URLs: url, HistorySize: 100, HistoryTTL: time.Hour, Name: t.Name()})
	if err != nil {
		t.Fatalf("natsbroker: %v", err)
	}
	return testutil.StartNode(t, testutil.NodeOptions{Broker: b, TokenSecret: ctlSecret,
		PresenceChannels: []string{"room:*"}, PresenceJoinLeave: true})
}

func dialUser(t *testing.T, n *server.Node, user string) *testutil.WSClient {
	t.Helper()
	tok, err := auth.Mint(ctlSecret, user, nil, false, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return testutil.DialWS(t, n, "token="+tok, nil)
}

func getJSON(t *testing.T, n *server.Node, method, path, body string, v any) {
	t.Helper()
	status, b, err := testutil.APIRequest(n, method, path, "", body)
	if err != nil || status != http.StatusOK {
		t.Fatalf("%s %s on %s: %d %s %v", method, path, n.Addr(), status, b, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %s: %v", path, b, err)
	}
}

// sub subscribes c to channel (an empty NATS channel acks offset 0).
func sub(c *testutil.WSClient, channel string, id int) {
	c.Send(map[string]any{"op": "subscribe", "channel": channel, "id": id})
	c.ExpectAck(id)
}

type clusterPresence struct {
	Members []struct{ User, Conn string }
	Nodes   int
}

func (p clusterPresence) users() []string {
	var u []string
	for _, m := range p.Members {
		u = append(u, m.User)
	}
	sort.Strings(u)
	return u
}

// waitFor retries check (which reports what it saw) until it returns ""
// or within passes.
func waitFor(t *testing.T, within time.Duration, check func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		msg := check()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestClusterControl: on three nodes sharing NATS, presence, channels and
// info asked of any node cover every node; joins and leaves reach the
// channel's subscribers on every node; unsubscribe and disconnect asked
// of one node reach the user's connections on the others; and a node cut
// off from NATS drops out of presence within the control timeout plus
// the directory's TTL.
func TestClusterControl(t *testing.T) {
	ns := startNATS(t)
	px := startProxy(t, fmt.Sprintf("127.0.0.1:%d", ns.port))
	a, b, c := startPresenceNode(t, ns.url()), startPresenceNode(t, ns.url()), startPresenceNode(t, px.url())
	nodes := []*server.Node{a, b, c}
	for _, n := range nodes {
		waitFor(t, 10*time.Second, func() string {
			var info struct{ Nodes []struct{ ID string } }
			getJSON(t, n, "GET", "/api/info", "", &info)
			if len(info.Nodes) != 3 {
				return fmt.Sprintf("%s: info lists %d nodes, want 3", n.Addr(), len(info.Nodes))
			}
			return ""
		})
	}

	alice := dialUser(t, a, "alice")
	sub(alice, "room:1", 1)
	if e := alice.Expect("join"); e.User != "alice" {
		t.Fatalf("alice's own join: %s", e.Raw)
	}
	bob := dialUser(t, b, "bob")
	sub(bob, "room:1", 1)
	aliceC := dialUser(t, c, "alice")
	sub(aliceC, "room:1", 1)
	// Alice on a hears both remote joins, in the order they happened.
	if e := alice.Expect("join"); e.User != "bob" {
		t.Fatalf("alice heard %s, want bob's join", e.Raw)
	}
	if e := alice.Expect("join"); e.User != "alice" || e.Channel != "room:1" {
		t.Fatalf("alice heard %s, want her second connection's join", e.Raw)
	}
	if e := aliceC.Expect("join"); e.User != "alice" {
		t.Fatalf("alice on c heard %s, want her own join", e.Raw)
	}
	for i, n := range nodes {
		var p clusterPresence
		getJSON(t, n, "GET", "/api/presence?channel=room:1", "", &p)
		if !slices.Equal(p.users(), []string{"alice", "alice", "bob"}) || p.Nodes != 3 {
			t.Fatalf("presence on node %d: %+v", i, p)
		}
		var s struct{ Clients, Users, Nodes int }
		getJSON(t, n, "GET", "/api/presence_stats?channel=room:1", "", &s)
		// Users is summed per node: alice on two nodes counts twice.
		if s.Clients != 3 || s.Users != 3 || s.Nodes != 3 {
			t.Fatalf("presence_stats on node %d: %+v", i, s)
		}
		var l struct {
			Channels []struct {
				Channel        string
				Local, Cluster int64
			}
		}
		getJSON(t, n, "GET", "/api/channels?pattern=room:*", "", &l)
		if len(l.Channels) != 1 || l.Channels[0].Local != 1 || l.Channels[0].Cluster != 3 {
			t.Fatalf("channels on node %d: %+v", i, l)
		}
		var info struct{ Connections int64 }
		getJSON(t, n, "GET", "/api/info", "", &info)
		if info.Connections != 3 {
			t.Fatalf("info on node %d: %d connections, want 3", i, info.Connections)
		}
	}

	// Unsubscribe alice everywhere, asked of b.
	var res struct{ Count, Nodes int }
	getJSON(t, b, "POST", "/api/unsubscribe", `{"user":"alice","channel":"room:1"}`, &res)
	if res.Count != 2 || res.Nodes != 3 {
		t.Fatalf("unsubscribe: %+v", res)
	}
	for _, cl := range []*testutil.WSClient{alice, aliceC} {
		if m := cl.Read(); m.Op != "unsubscribed" || m.Channel != "room:1" {
			t.Fatalf("got %s, want unsubscribed", m.Raw)
		}
	}
	// bob heard his own join and alice's on c (the one before his was
	// not his to hear), then two leaves.
	for _, want := range []string{"bob", "alice"} {
		if e := bob.Expect("join"); e.User != want {
			t.Fatalf("bob heard %s, want %s's join", e.Raw, want)
		}
	}
	left := map[string]int{}
	for range 2 {
		e := bob.Expect("leave")
		left[e.User]++
	}
	if left["alice"] != 2 {
		t.Fatalf("bob heard leaves %v", left)
	}

	// Disconnect bob, asked of a.
	getJSON(t, a, "POST", "/api/disconnect", `{"user":"bob"}`, &res)
	if res.Count != 1 || res.Nodes != 3 {
		t.Fatalf("disconnect: %+v", res)
	}
	if code := bob.ExpectClose(); code != session.StatusDisconnected {
		t.Fatalf("bob closed with %d", code)
	}

	// c is cut off from NATS: its member leaves presence.
	sub(aliceC, "room:1", 2)
	waitFor(t, 5*time.Second, func() string {
		var p clusterPresence
		getJSON(t, a, "GET", "/api/presence?channel=room:1", "", &p)
		if len(p.Members) != 1 {
			return fmt.Sprintf("presence before the cut: %+v", p)
		}
		return ""
	})
	px.cut()
	cutAt := time.Now()
	var p clusterPresence
	getJSON(t, a, "GET", "/api/presence?channel=room:1", "", &p)
	if len(p.Members) != 0 || p.Nodes != 2 {
		t.Fatalf("presence right after the cut: %+v, want no member and two nodes", p)
	}
	// Once the directory forgets c, calls stop waiting for it.
	waitFor(t, 10*time.Second, func() string {
		start := time.Now()
		var info struct{ Nodes []struct{ ID string } }
		getJSON(t, a, "GET", "/api/info", "", &info)
		if len(info.Nodes) != 2 || time.Since(start) > time.Second {
			return fmt.Sprintf("info %+v after %v", info, time.Since(start))
		}
		return ""
	})
	t.Logf("cut node left the answers at once; calls fast again after %v", time.Since(cutAt).Round(100*time.Millisecond))
}

// TestClusterHistoryAndLast: history published through one node is paged
// through another from the JetStream stream, every publication once and
// in order, and a subscribe with last on a third node gets the newest
// ones, then the live ones.
func TestClusterHistoryAndLast(t *testing.T) {
	ns := startNATS(t)
	a, b, c := startNode(t, ns, 50), startNode(t, ns, 50), startNode(t, ns, 50)
	var offs []uint64
	for i := range 23 {
		offs = append(offs, testutil.Publish(t, a, "hist", i))
	}
	var got []uint64
	since := uint64(0)
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("history never ended")
		}
		var p struct {
			Top          uint64
			Next         uint64
			More         bool
			Publications []struct{ Offset uint64 }
		}
		getJSON(t, b, "GET", fmt.Sprintf("/api/history?channel=hist&since=%d&limit=5", since), "", &p)
		if p.Top != offs[22] {
			t.Fatalf("top %d, want %d", p.Top, offs[22])
		}
		for _, e := range p.Publications {
			got = append(got, e.Offset)
		}
		if !p.More {
			break
		}
		since = p.Next
	}
	if !slices.Equal(got, offs) {
		t.Fatalf("paged %v, want %v", got, offs)
	}

	cl := testutil.DialWS(t, c, "", nil)
	cl.Send(`{"op":"subscribe","channel":"hist","last":3,"id":1}`)
	if ack := cl.ExpectAck(1); ack.Offset != offs[22] {
		t.Fatalf("ack %s", ack.Raw)
	}
	for _, want := range offs[20:] {
		if m := cl.ExpectMessage("hist"); m.Offset != want {
			t.Fatalf("offset %d, want %d", m.Offset, want)
		}
	}
	live := testutil.Publish(t, a, "hist", `"live"`)
	if m := cl.ExpectMessage("hist"); m.Offset != live {
		t.Fatalf("live offset %d, want %d", m.Offset, live)
	}
}
