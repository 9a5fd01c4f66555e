package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/herald-ws/herald/auth"
	"github.com/herald-ws/herald/broker/natsbroker"
	"github.com/herald-ws/herald/internal/testutil"
	"github.com/herald-ws/herald/server"
)

const tokenSecret = "cluster-token-secret"

// startTokenNode starts a node on the NATS broker with HS256 tokens and
// -auto-personal.
func startTokenNode(t *testing.T, ns *natsServer) *server.Node {
	t.Helper()
	b, err := natsbroker.New(natsbroker.Config{URLs: ns.url(), HistorySize: 100, HistoryTTL: time.Hour, Name: t.Name()})
	if err != nil {
		t.Fatalf("natsbroker: %v", err)
	}
	return testutil.StartNode(t, testutil.NodeOptions{Broker: b, HistorySize: 100, TokenSecret: tokenSecret,
		Tokens: server.TokenOptions{AutoPersonal: true}})
}

func userToken(t *testing.T, user string, subs ...string) string {
	t.Helper()
	c := auth.Claims{Subs: subs, RegisteredClaims: jwt.RegisteredClaims{Subject: user, ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}}
	tok, err := auth.MintClaims(tokenSecret, c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// follow reads c's frames in the background from now on.
func follow(c *testutil.WSClient) *subscriber {
	s := &subscriber{c: c, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			m, err := c.Next(30 * time.Second)
			s.mu.Lock()
			if err != nil {
				s.err = err
				s.mu.Unlock()
				return
			}
			s.msgs = append(s.msgs, m)
			s.mu.Unlock()
		}
	}()
	return s
}

// TestGrantedSubscriptionsAcrossNodes: connections of user 42 on three
// nodes, each subscribed on connect to news (the subs claim) and user:42
// (-auto-personal), get their subscribed events with the cluster's
// offsets, then every publication made on any node to either channel,
// exactly once and in offset order; user 7 gets none of user 42's.
func TestGrantedSubscriptionsAcrossNodes(t *testing.T) {
	ns := startNATS(t)
	nodes := []*server.Node{startTokenNode(t, ns), startTokenNode(t, ns), startTokenNode(t, ns)}
	newsTop := testutil.Publish(t, nodes[1], "news", `"before"`)
	var subs []*subscriber
	for i, n := range nodes {
		c := testutil.DialWS(t, n, "token="+url.QueryEscape(userToken(t, "42", "news")), nil)
		got := map[string]uint64{}
		for range 2 {
			m := c.Expect("subscribed")
			got[m.Channel] = m.Offset
		}
		if len(got) != 2 || got["news"] != newsTop {
			t.Fatalf("node %d: subscribed events %v, want news at %d and user:42", i, got, newsTop)
		}
		if _, ok := got["user:42"]; !ok {
			t.Fatalf("node %d: no subscribed event for user:42: %v", i, got)
		}
		subs = append(subs, follow(c))
	}
	other := testutil.DialWS(t, nodes[2], "token="+url.QueryEscape(userToken(t, "7")), nil)
	if m := other.Expect("subscribed"); m.Channel != "user:7" {
		t.Fatalf("user 7: %s", m.Raw)
	}
	otherSub := follow(other)

	const perNode = 10
	var mu sync.Mutex
	acked := map[string][]uint64{}
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range perNode {
				for _, ch := range []string{"user:42", "news"} {
					off, err := testutil.PublishKey(n, "", ch, map[string]any{"node": i, "n": j})
					if err != nil {
						t.Errorf("publish to %s on node %d: %v", ch, i, err)
						return
					}
					mu.Lock()
					acked[ch] = append(acked[ch], off)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	for _, offs := range acked {
		sort.Slice(offs, func(i, j int) bool { return offs[i] < offs[j] })
	}
	mark := testutil.Publish(t, nodes[0], "user:7", `"seven"`)
	for i, s := range subs {
		got := s.waitCount(t, 2*3*perNode, 20*time.Second)
		seen := map[string][]uint64{}
		for _, m := range got {
			if m.Op != "message" {
				t.Fatalf("subscriber on node %d got %s", i, m.Raw)
			}
			seen[m.Channel] = append(seen[m.Channel], m.Offset)
		}
		for _, ch := range []string{"user:42", "news"} {
			if len(seen[ch]) != len(acked[ch]) {
				t.Fatalf("node %d: %d messages on %s, want %d", i, len(seen[ch]), ch, len(acked[ch]))
			}
			for k := range seen[ch] {
				if seen[ch][k] != acked[ch][k] {
					t.Fatalf("node %d: %s message %d at offset %d, want %d (acked offsets in order, once each)", i, ch, k, seen[ch][k], acked[ch][k])
				}
			}
		}
	}
	m := otherSub.waitCount(t, 1, 20*time.Second)
	if m[0].Channel != "user:7" || m[0].Offset != mark {
		t.Fatalf("user 7's first message is %s, want only its own user:7 at %d", m[0].Raw, mark)
	}
	// No stragglers or duplicates arrive later.
	time.Sleep(300 * time.Millisecond)
	for i, s := range subs {
		if n := len(s.messages()); n != 2*3*perNode {
			t.Fatalf("subscriber on node %d ended with %d messages, want %d", i, n, 2*3*perNode)
		}
	}
	if n := len(otherSub.messages()); n != 1 {
		t.Fatalf("user 7 ended with %d messages, want 1", n)
	}
}

// TestRefreshAcrossNodes: on a cluster node, a refresh whose token no
// longer allows a channel drops that subscription for publications from
// every node, keeps the others, and a token left to expire is closed with
// 4001 after the grace.
func TestRefreshAcrossNodes(t *testing.T) {
	ns := startNATS(t)
	mk := func() *server.Node {
		b, err := natsbroker.New(natsbroker.Config{URLs: ns.url(), HistorySize: 100, HistoryTTL: time.Hour, Name: t.Name()})
		if err != nil {
			t.Fatalf("natsbroker: %v", err)
		}
		return testutil.StartNode(t, testutil.NodeOptions{Broker: b, HistorySize: 100, TokenSecret: tokenSecret,
			Options: testutil.Options{HandshakeTimeout: 400 * time.Millisecond},
			Tokens:  server.TokenOptions{RefreshGrace: 500 * time.Millisecond}})
	}
	a, b, c := mk(), mk(), mk()
	claims := func(ttl time.Duration, channels ...string) string {
		t.Helper()
		cl := auth.Claims{Channels: channels, RegisteredClaims: jwt.RegisteredClaims{Subject: "42", ExpiresAt: jwt.NewNumericDate(time.Now().Add(ttl))}}
		tok, err := auth.MintClaims(tokenSecret, cl)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	cl := testutil.DialWS(t, a, "token="+url.QueryEscape(claims(time.Second, "keep", "drop")), nil)
	// A channel's offsets start at 0 on JetStream, so the acks' offsets
	// are not checked here.
	cl.Send(`{"op":"subscribe","channel":"keep","id":1}`)
	cl.ExpectAck(1)
	cl.Send(`{"op":"subscribe","channel":"drop","id":2}`)
	cl.ExpectAck(2)
	cl.Send(map[string]any{"op": "refresh", "id": 3, "token": claims(time.Hour, "keep")})
	if m := cl.Expect("unsubscribed"); m.Channel != "drop" || m.Code != "forbidden" {
		t.Fatalf("got %s, want drop unsubscribed", m.Raw)
	}
	cl.ExpectAck(3)
	testutil.Publish(t, b, "drop", `"gone"`)
	off := testutil.Publish(t, c, "keep", `"kept"`)
	if m := cl.ExpectMessage("keep"); m.Offset != off {
		t.Fatalf("got %s, want keep at %d and nothing of drop", m.Raw, off)
	}

	late := testutil.DialWS(t, b, "token="+url.QueryEscape(claims(time.Second, "keep")), nil)
	late.Expect("refresh")
	if code := late.ExpectClose(); code != 4001 {
		t.Fatalf("close %d, want 4001", code)
	}
	// The refreshed connection on node a outlived its first exp.
	off = testutil.Publish(t, c, "keep", `"still"`)
	if m := cl.ExpectMessage("keep"); m.Offset != off {
		t.Fatalf("got %s after the old exp, want keep at %d", m.Raw, off)
	}
}

// TestJWKSRotationAcrossNodes: three nodes read one JWKS file; an ES256
// token connects on each, a key rotated into the file is accepted by every
// node at once and the retired one by none, and a client connected with
// the new key receives its personal channel's publications from another
// node.
func TestJWKSRotationAcrossNodes(t *testing.T) {
	ns := startNATS(t)
	dir := t.TempDir()
	jwksFile := filepath.Join(dir, "jwks.json")
	writeSet := func(kid string, k *ecdsa.PrivateKey) {
		t.Helper()
		j, err := auth.JWK(&k.PublicKey, kid)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(map[string]any{"keys": []any{j}})
		if err := os.WriteFile(jwksFile+".tmp", b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(jwksFile+".tmp", jwksFile); err != nil {
			t.Fatal(err)
		}
	}
	k1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	writeSet("k1", k1)
	var nodes []*server.Node
	for range 3 {
		b, err := natsbroker.New(natsbroker.Config{URLs: ns.url(), HistorySize: 100, HistoryTTL: time.Hour, Name: t.Name()})
		if err != nil {
			t.Fatalf("natsbroker: %v", err)
		}
		nodes = append(nodes, testutil.StartNode(t, testutil.NodeOptions{Broker: b, HistorySize: 100,
			Tokens: server.TokenOptions{JWKSFile: jwksFile, AutoPersonal: true}}))
	}
	sign := func(k *ecdsa.PrivateKey, kid, user string) string {
		t.Helper()
		tok, err := auth.MintSigned(k, kid, auth.Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: user, ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}})
		if err != nil {
			t.Fatal(err)
		}
		return "/ws?token=" + url.QueryEscape(tok)
	}
	for i, n := range nodes {
		if status, _ := testutil.Upgrade(t, n, sign(k1, "k1", "42"), nil); status != 101 {
			t.Fatalf("node %d: k1 token: status %d", i, status)
		}
		if status, _ := testutil.Upgrade(t, n, sign(k2, "k2", "42"), nil); status != 401 {
			t.Fatalf("node %d: k2 token before the rotation: status %d", i, status)
		}
	}
	writeSet("k2", k2)
	for i, n := range nodes {
		if status, _ := testutil.Upgrade(t, n, sign(k2, "k2", "42"), nil); status != 101 {
			t.Fatalf("node %d: k2 token after the rotation: status %d", i, status)
		}
		if status, _ := testutil.Upgrade(t, n, sign(k1, "k1", "42"), nil); status != 401 {
			t.Fatalf("node %d: retired k1 token: status %d", i, status)
		}
	}
	c := testutil.DialWS(t, nodes[0], strings.TrimPrefix(sign(k2, "k2", "42"), "/ws?"), nil)
	c.Expect("subscribed")
	off := testutil.Publish(t, nodes[2], "user:42", `"hi"`)
	if m := c.ExpectMessage("user:42"); m.Offset != off {
		t.Fatalf("got %s, want user:42 at %d", m.Raw, off)
	}
}
