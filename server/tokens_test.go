package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/golang-jwt/jwt/v5"

	"github.com/herald-ws/herald/auth"
	"github.com/herald-ws/herald/internal/testutil"
	"github.com/herald-ws/herald/push"
	"github.com/herald-ws/herald/server"
	"github.com/herald-ws/herald/session"
)

func claimsFor(user string, exp time.Time) auth.Claims {
	return auth.Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: user, ExpiresAt: jwt.NewNumericDate(exp)}}
}

func signHS(t *testing.T, c auth.Claims) string {
	t.Helper()
	tok, err := auth.MintClaims(secret, c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// tokenNode is a node with HS256 tokens whose sweep ticks every 100 ms (a
// quarter of the 400 ms handshake timeout), so token deadlines fire on
// time.
func tokenNode(t *testing.T, grace time.Duration, autoPersonal bool, maxChannels int) *server.Node {
	t.Helper()
	return testutil.StartNode(t, testutil.NodeOptions{
		Options:            testutil.Options{HandshakeTimeout: 400 * time.Millisecond},
		TokenSecret:        secret,
		Tokens:             server.TokenOptions{RefreshGrace: grace, AutoPersonal: autoPersonal},
		MaxChannelsPerConn: maxChannels,
	})
}

// expOf is the exp a token minted with exp carries (whole seconds).
func expOf(exp time.Time) time.Time { return jwt.NewNumericDate(exp).Time }

// TestRefreshAfterExpiry: the refresh request comes no earlier than exp,
// and a valid refresh within the grace keeps the connection open past it.
func TestRefreshAfterExpiry(t *testing.T) {
	t.Parallel()
	const grace = 500 * time.Millisecond
	n := tokenNode(t, grace, false, 0)
	exp := time.Now().Add(time.Second)
	c := dialAs(t, n, signHS(t, claimsFor("42", exp)))
	m := c.Expect("refresh")
	if now := time.Now(); now.Before(expOf(exp)) {
		t.Fatalf("refresh request at %v, before the token's exp %v", now, expOf(exp))
	}
	wantRaw(t, m, `{"op":"refresh"}`)
	c.Send(map[string]any{"op": "refresh", "id": 1, "token": signHS(t, claimsFor("42", time.Now().Add(time.Hour)))})
	c.ExpectAck(1)
	time.Sleep(2 * grace)
	c.Send(`{"op":"ping","id":2}`)
	if m := c.Read(); m.Op != "pong" {
		t.Fatalf("after a refresh, got %s instead of the pong (no second refresh request, no close)", m.Raw)
	}
}

// TestRefreshBeforeExpiry: a connection that refreshes early never gets a
// refresh request for the old exp.
func TestRefreshBeforeExpiry(t *testing.T) {
	t.Parallel()
	n := tokenNode(t, 300*time.Millisecond, false, 0)
	exp := time.Now().Add(time.Second)
	c := dialAs(t, n, signHS(t, claimsFor("42", exp)))
	c.Send(map[string]any{"op": "refresh", "id": 1, "token": signHS(t, claimsFor("42", time.Now().Add(time.Hour)))})
	c.ExpectAck(1)
	time.Sleep(time.Until(expOf(exp)) + 600*time.Millisecond)
	c.Send(`{"op":"ping","id":2}`)
	if m := c.Read(); m.Op != "pong" {
		t.Fatalf("after an early refresh, got %s instead of the pong", m.Raw)
	}
}

// TestExpiredTokenClosed4001: without a valid refresh, the connection is
// closed with 4001 once the grace has passed, and not before; refreshes
// that fail (a bad token, another user's, an expired one) change nothing.
func TestExpiredTokenClosed4001(t *testing.T) {
	t.Parallel()
	const grace = 600 * time.Millisecond
	n := tokenNode(t, grace, false, 0)
	c := dialAs(t, n, signHS(t, claimsFor("42", time.Now().Add(time.Second))))
	c.Expect("refresh")
	asked := time.Now()
	c.Send(map[string]any{"op": "refresh", "id": 1, "token": "not.a.token"})
	c.ExpectError(1, push.CodeInvalidToken)
	c.Send(map[string]any{"op": "refresh", "id": 2, "token": signHS(t, claimsFor("7", time.Now().Add(time.Hour)))})
	c.ExpectError(2, push.CodeForbidden)
	c.Send(map[string]any{"op": "refresh", "id": 3, "token": signHS(t, claimsFor("42", time.Now().Add(-time.Minute)))})
	c.ExpectError(3, push.CodeInvalidToken)
	other, _ := auth.Mint("another-secret", "42", nil, false, time.Hour)
	c.Send(map[string]any{"op": "refresh", "id": 4, "token": other})
	c.ExpectError(4, push.CodeInvalidToken)
	c.Send(map[string]any{"op": "refresh", "id": 5})
	c.ExpectError(5, push.CodeInvalidToken)
	_, err := c.Next(10 * time.Second)
	ce, ok := err.(*testutil.CloseError)
	if !ok || ce.Code != session.StatusTokenExpired || ce.Reason != "token expired" {
		t.Fatalf("got %v, want close 4001 \"token expired\"", err)
	}
	// The sweep that sent the request started the grace; allow for the
	// request's trip to the client.
	if waited := time.Since(asked); waited < grace-100*time.Millisecond {
		t.Fatalf("closed %v after the refresh request, before the %v grace", waited, grace)
	}
}

// TestRefreshReplacesPermissions: the new token's channels and publish
// permission replace the old ones; a subscription they no longer allow is
// dropped with an unsubscribed event before the ack, and nothing of it is
// delivered afterwards.
func TestRefreshReplacesPermissions(t *testing.T) {
	t.Parallel()
	n := tokenNode(t, time.Second, false, 0)
	old := claimsFor("42", time.Now().Add(time.Hour))
	old.Channels, old.Publish = []string{"a", "b", "c*"}, true
	c := dialAs(t, n, signHS(t, old))
	c.Subscribe("a", 1)
	c.Subscribe("b", 2)
	c.Subscribe("c1", 3)
	c.Subscribe("user:42", 4)
	next := claimsFor("42", time.Now().Add(time.Hour))
	next.Channels = []string{"a"}
	c.Send(map[string]any{"op": "refresh", "id": 5, "token": signHS(t, next)})
	var dropped []string
	for {
		m := c.Read()
		if m.Op == "ack" {
			if string(m.ID) != "5" {
				t.Fatalf("ack %s, want id 5", m.Raw)
			}
			break
		}
		if m.Op != "unsubscribed" || m.Code != push.CodeForbidden {
			t.Fatalf("got %s, want unsubscribed events then the ack", m.Raw)
		}
		dropped = append(dropped, m.Channel)
	}
	sort.Strings(dropped)
	if strings.Join(dropped, ",") != "b,c1" {
		t.Fatalf("dropped %q, want b and c1 (a is allowed, user:42 is the user's own)", dropped)
	}
	testutil.Publish(t, n, "b", `"gone"`)
	testutil.Publish(t, n, "c1", `"gone"`)
	fence(t, n, c, "a")
	fence(t, n, c, "user:42")
	c.Send(`{"op":"subscribe","channel":"b","id":6}`)
	c.ExpectError(6, push.CodeForbidden)
	c.Send(`{"op":"publish","channel":"a","data":1,"id":7}`)
	c.ExpectError(7, push.CodeForbidden)
}

// TestRefreshAnonymous: an anonymous server has no token to refresh.
func TestRefreshAnonymous(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{})
	c := testutil.DialWS(t, n, "", nil)
	c.Send(map[string]any{"op": "refresh", "id": 1, "token": signHS(t, claimsFor("42", time.Now().Add(time.Hour)))})
	c.ExpectError(1, push.CodeBadRequest)
}

// grantEvents reads n events and returns them by channel.
func grantEvents(t *testing.T, c *testutil.WSClient, n int) map[string]testutil.Msg {
	t.Helper()
	got := map[string]testutil.Msg{}
	for range n {
		m := c.Read()
		if m.Op != "subscribed" && m.Op != "error" {
			t.Fatalf("got %s, want subscribed or error events", m.Raw)
		}
		if _, dup := got[m.Channel]; dup {
			t.Fatalf("second event for %q: %s", m.Channel, m.Raw)
		}
		got[m.Channel] = m
	}
	return got
}

// TestSubsClaim: the subs claim subscribes on connect, each channel checked
// as a subscribe is: the channels the token allows are subscribed (with
// the channel's offset), another user's personal channel, a channel
// outside the token's patterns, a bad name and one past
// -max-channels-per-conn are refused; publications reach exactly the
// subscribed ones.
func TestSubsClaim(t *testing.T) {
	t.Parallel()
	n := tokenNode(t, time.Second, false, 3)
	var newsTop uint64
	for range 3 {
		newsTop = testutil.Publish(t, n, "news", `"old"`)
	}
	cl := claimsFor("42", time.Now().Add(time.Hour))
	cl.Channels = []string{"news", "sport*"}
	cl.Subs = []string{"news", "user:42", "user:7", "secret", "bad name", "news", "sport.1", "sport.2"}
	c := dialAs(t, n, signHS(t, cl))
	got := grantEvents(t, c, 7)
	want := map[string]string{"news": "subscribed", "user:42": "subscribed", "sport.1": "subscribed",
		"user:7": push.CodeForbidden, "secret": push.CodeForbidden, "bad name": push.CodeBadRequest, "sport.2": push.CodeTooManyChannels}
	for ch, w := range want {
		m, ok := got[ch]
		switch {
		case !ok:
			t.Errorf("no event for %q", ch)
		case w == "subscribed" && m.Op != "subscribed":
			t.Errorf("%q: %s, want subscribed", ch, m.Raw)
		case w != "subscribed" && (m.Op != "error" || m.Code != w || m.Message == ""):
			t.Errorf("%q: %s, want error %s", ch, m.Raw, w)
		}
	}
	if m := got["news"]; m.Offset != newsTop {
		t.Errorf("news subscribed at offset %d, want the channel's top %d: %s", m.Offset, newsTop, m.Raw)
	}
	// The offset is the one a subscribe's ack would carry.
	same := dialAs(t, n, signHS(t, claimsFor("42", time.Now().Add(time.Hour))))
	if off := same.Subscribe("user:42", 1); got["user:42"].Offset != off {
		t.Errorf("user:42 subscribed at offset %d, a subscribe's ack says %d", got["user:42"].Offset, off)
	}
	testutil.Publish(t, n, "user:7", `"not yours"`)
	testutil.Publish(t, n, "secret", `"not yours"`)
	fence(t, n, c, "news")
	fence(t, n, c, "user:42")
	fence(t, n, c, "sport.1")
	// The granted subscriptions are the connection's own: it can drop them
	// and may not subscribe twice.
	c.Send(`{"op":"subscribe","channel":"news","id":1}`)
	c.ExpectError(1, push.CodeBadRequest)
	c.Send(`{"op":"unsubscribe","channel":"news","id":2}`)
	c.ExpectAck(2)
	testutil.Publish(t, n, "news", `"after unsubscribe"`)
	fence(t, n, c, "user:42")
}

// TestAutoPersonal: with -auto-personal every connection with a token is
// subscribed to its user:<sub> channel once (also when subs lists it), and
// receives exactly what is published there.
func TestAutoPersonal(t *testing.T) {
	t.Parallel()
	n := tokenNode(t, time.Second, true, 0)
	off := testutil.Publish(t, n, "user:42", `"before"`)
	cl := claimsFor("42", time.Now().Add(time.Hour))
	cl.Subs = []string{"user:42"}
	a := dialAs(t, n, signHS(t, claimsFor("42", time.Now().Add(time.Hour))))
	b := dialAs(t, n, signHS(t, cl))
	other := dialAs(t, n, signHS(t, claimsFor("7", time.Now().Add(time.Hour))))
	for _, c := range []*testutil.WSClient{a, b} {
		m := c.Expect("subscribed")
		if m.Channel != "user:42" || m.Offset != off {
			t.Fatalf("got %s, want subscribed to user:42 at %d", m.Raw, off)
		}
	}
	if m := other.Expect("subscribed"); m.Channel != "user:7" {
		t.Fatalf("user 7 got %s", m.Raw)
	}
	// Exactly once each: the publication is the next frame, not a second
	// event or a second copy.
	for _, p := range []struct {
		channel string
		to      []*testutil.WSClient
	}{{"user:42", []*testutil.WSClient{a, b}}, {"user:7", []*testutil.WSClient{other}}} {
		off := testutil.Publish(t, n, p.channel, `"mark"`)
		for _, c := range p.to {
			wantRaw(t, c.Read(), messageFrame(p.channel, off, `"mark"`))
		}
	}
	fence(t, n, a, "user:42")
}

// TestAutoPersonalAnonymous: anonymous connections have no personal
// channel and get nothing on connect.
func TestAutoPersonalAnonymous(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{Tokens: server.TokenOptions{AutoPersonal: true}})
	c := testutil.DialWS(t, n, "", nil)
	c.Send(`{"op":"ping","id":1}`)
	if m := c.Read(); m.Op != "pong" {
		t.Fatalf("anonymous connection got %s first", m.Raw)
	}
}

// dialProtocols upgrades with the subprotocols offered and returns the
// one the server answered.
func dialProtocols(t *testing.T, n *server.Node, protocols ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, hs, err := ws.Dialer{Protocols: protocols}.Dial(ctx, testutil.WSURL(n, ""))
	if err != nil {
		t.Fatalf("dial offering %q: %v", protocols, err)
	}
	_ = conn.Close()
	return hs.Protocol
}

// TestSubprotocol: an offer of herald.json.v1 (alone or among others) is
// answered with it, no offer gets no answer, an offer of only other
// protocols is refused before the upgrade with 400 naming the protocol.
func TestSubprotocol(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{})
	if p := dialProtocols(t, n); p != "" {
		t.Errorf("no offer answered with %q", p)
	}
	if p := dialProtocols(t, n, push.Subprotocol); p != push.Subprotocol {
		t.Errorf("offer of %s answered with %q", push.Subprotocol, p)
	}
	if p := dialProtocols(t, n, "chat", push.Subprotocol); p != push.Subprotocol {
		t.Errorf("offer of chat, %s answered with %q", push.Subprotocol, p)
	}
	for _, offer := range []string{"chat", "chat, superchat", "HERALD.JSON.V1", "herald.json.v2"} {
		status, body := testutil.Upgrade(t, n, "/ws", http.Header{"Sec-WebSocket-Protocol": {offer}})
		if status != 400 || !strings.Contains(body, push.Subprotocol) {
			t.Errorf("offer %q: %d %q, want 400 naming %s", offer, status, body, push.Subprotocol)
		}
	}
	// The protocol is refused before the token is looked at, so the
	// client learns the real reason.
	auth := testutil.StartNode(t, testutil.NodeOptions{TokenSecret: secret})
	status, body := testutil.Upgrade(t, auth, "/ws", http.Header{"Sec-WebSocket-Protocol": {"mqtt"}})
	if status != 400 || !strings.Contains(body, push.Subprotocol) {
		t.Errorf("tokens on, offer mqtt: %d %q", status, body)
	}
	good := url.QueryEscape(mint(t, secret, "42", nil, false, time.Hour))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, hs, err := ws.Dialer{Protocols: []string{push.Subprotocol}}.Dial(ctx, testutil.WSURL(auth, "token="+good))
	if err != nil || hs.Protocol != push.Subprotocol {
		t.Fatalf("token and subprotocol: %v, protocol %q", err, hs.Protocol)
	}
	_ = conn.Close()
}

// writeKeys writes a PEM file with an RSA and an EC public key and a JWKS
// with one EC key (kid k1), generated now.
func writeKeys(t *testing.T) (dir string, rsaKey *rsa.PrivateKey, ecKey, jwksKey *ecdsa.PrivateKey) {
	t.Helper()
	dir = t.TempDir()
	var err error
	if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	ecKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwksKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	var pemBytes []byte
	for _, k := range []any{&rsaKey.PublicKey, &ecKey.PublicKey} {
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		pemBytes = append(pemBytes, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})...)
	}
	if err := os.WriteFile(filepath.Join(dir, "keys.pem"), pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	writeJWKS(t, dir, map[string]*ecdsa.PrivateKey{"k1": jwksKey})
	return dir, rsaKey, ecKey, jwksKey
}

func writeJWKS(t *testing.T, dir string, keys map[string]*ecdsa.PrivateKey) {
	t.Helper()
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	for kid, k := range keys {
		j, err := auth.JWK(&k.PublicKey, kid)
		if err != nil {
			t.Fatal(err)
		}
		set.Keys = append(set.Keys, j)
	}
	b, _ := json.Marshal(set)
	tmp := filepath.Join(dir, "jwks.json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "jwks.json")); err != nil {
		t.Fatal(err)
	}
}

// TestAsymmetricTokens: RS256 and ES256 tokens from the PEM file and from
// the JWKS connect and carry their claims; a key rotated into the JWKS
// works at once and the retired one stops; foreign keys and HS256 without
// a secret are refused with 401; a refresh may switch algorithms.
func TestAsymmetricTokens(t *testing.T) {
	t.Parallel()
	dir, rsaKey, ecKey, k1 := writeKeys(t)
	n := testutil.StartNode(t, testutil.NodeOptions{Tokens: server.TokenOptions{
		PublicKeyFile: filepath.Join(dir, "keys.pem"), JWKSFile: filepath.Join(dir, "jwks.json")}})
	sign := func(key any, kid, user string, channels ...string) string {
		t.Helper()
		c := claimsFor(user, time.Now().Add(time.Hour))
		if channels != nil {
			c.Channels = channels
		}
		var tok string
		var err error
		switch k := key.(type) {
		case *rsa.PrivateKey:
			tok, err = auth.MintSigned(k, kid, c)
		case *ecdsa.PrivateKey:
			tok, err = auth.MintSigned(k, kid, c)
		}
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	refused := func(tok, why string) {
		t.Helper()
		if status, _ := testutil.Upgrade(t, n, "/ws?token="+url.QueryEscape(tok), nil); status != 401 {
			t.Errorf("%s: status %d, want 401", why, status)
		}
	}
	rs := dialAs(t, n, sign(rsaKey, "", "r", "only"))
	rs.Send(`{"op":"subscribe","channel":"other","id":1}`)
	rs.ExpectError(1, push.CodeForbidden) // the RS256 token's channels claim is in force
	rs.Subscribe("user:r", 2)
	es := dialAs(t, n, sign(ecKey, "", "e"))
	es.Subscribe("user:e", 1)
	jw := dialAs(t, n, sign(k1, "k1", "j"))
	jw.Subscribe("user:j", 1)

	stranger, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	refused(sign(stranger, "", "x"), "unknown EC key")
	refused(sign(stranger, "k1", "x"), "unknown key claiming kid k1")
	refused(mint(t, secret, "x", nil, false, time.Hour), "HS256 with no secret configured")

	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	refused(sign(k2, "k2", "x"), "k2 before rotation")
	writeJWKS(t, dir, map[string]*ecdsa.PrivateKey{"k2": k2})
	rot := dialAs(t, n, sign(k2, "k2", "j2"))
	rot.Subscribe("user:j2", 1)
	refused(sign(k1, "k1", "j"), "retired kid k1 after rotation")
	// The PEM keys are not affected by the JWKS rotation.
	dialAs(t, n, sign(ecKey, "", "e2")).Subscribe("user:e2", 1)
	// Refresh with a token of another algorithm, same user.
	es.Send(map[string]any{"op": "refresh", "id": 2, "token": sign(rsaKey, "", "e")})
	es.ExpectAck(2)
	es.Send(map[string]any{"op": "refresh", "id": 3, "token": sign(k2, "k2", "not-e")})
	es.ExpectError(3, push.CodeForbidden)
}

// TestTokenKeyFileRefused: a node does not start with an unusable key file.
func TestTokenKeyFileRefused(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "bad.pem")
	if err := os.WriteFile(p, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	o := testutil.NodeOptions{Tokens: server.TokenOptions{PublicKeyFile: p}}.ServerOptions()
	if _, err := server.New(o); err == nil {
		t.Fatal("server.New accepted a key file without a key")
	}
}

// TestRefreshRateLimited: a connection gets 8 refresh attempts at once
// (each verifies a signature on the event loop), then rate_limited.
func TestRefreshRateLimited(t *testing.T) {
	t.Parallel()
	n := tokenNode(t, time.Second, false, 0)
	c := dialAs(t, n, signHS(t, claimsFor("42", time.Now().Add(time.Hour))))
	bad, _ := auth.Mint("another-secret", "42", nil, false, time.Hour)
	// Pipelined, so that all of them reach the server within far less
	// than the limiter's one-second refill whatever the machine's load:
	// the burst of 8 is spent, and of the two good refreshes that follow
	// at most one can find a refilled token.
	good := signHS(t, claimsFor("42", time.Now().Add(time.Hour)))
	for i := 1; i <= 10; i++ {
		tok := bad
		if i > 8 {
			tok = good
		}
		c.Send(map[string]any{"op": "refresh", "id": i, "token": tok})
	}
	for i := 1; i <= 8; i++ {
		c.ExpectError(i, push.CodeInvalidToken)
	}
	limited := 0
	for range 2 {
		m := c.Read()
		if m.Op == "error" && m.Code == push.CodeRateLimited {
			limited++
		}
	}
	if limited == 0 {
		t.Fatal("10 refreshes at once: none refused as rate_limited past the burst of 8")
	}
}
