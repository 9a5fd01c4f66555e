package server_test

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/herald-ws/herald/auth"
	"github.com/herald-ws/herald/internal/testutil"
	"github.com/herald-ws/herald/server"
)

const secret = "test-secret"

func mint(t *testing.T, key, user string, channels []string, publish bool, ttl time.Duration) string {
	t.Helper()
	tok, err := auth.Mint(key, user, channels, publish, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// dialAs connects with a token in ?token=.
func dialAs(t *testing.T, n *server.Node, token string) *testutil.WSClient {
	t.Helper()
	return testutil.DialWS(t, n, "token="+url.QueryEscape(token), nil)
}

func TestAuthRefusesBeforeUpgrade(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{TokenSecret: secret})
	good := mint(t, secret, "42", nil, false, time.Hour)
	for _, tc := range []struct {
		name   string
		target string
		header http.Header
	}{
		{"no token", "/ws", nil},
		{"empty token", "/ws?token=", nil},
		{"garbage token", "/ws?token=abc.def.ghi", nil},
		{"bad signature", "/ws?token=" + mint(t, "other-secret", "42", nil, false, time.Hour), nil},
		{"expired", "/ws?token=" + mint(t, secret, "42", nil, false, -time.Minute), nil},
		{"no subject", "/ws?token=" + mint(t, secret, "", nil, false, time.Hour), nil},
		{"bad bearer", "/ws", http.Header{"Authorization": {"Bearer " + mint(t, "other-secret", "42", nil, false, time.Hour)}}},
		{"token without Bearer", "/ws", http.Header{"Authorization": {good}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if status, body := testutil.Upgrade(t, n, tc.target, tc.header); status != http.StatusUnauthorized {
				t.Fatalf("status %d (%q), want 401", status, body)
			}
		})
	}
	if st := testutil.Stats(t, n, ""); st["upgrades"] != 0 || st["handshake_rejects"] != 8 {
		t.Fatalf("stats %v: want 0 upgrades and 8 handshake rejects", st)
	}
	for _, tc := range []struct {
		name   string
		target string
		header http.Header
	}{
		{"query", "/ws?token=" + good, nil},
		{"bearer", "/ws", http.Header{"Authorization": {"Bearer " + good}}},
		{"lowercase bearer", "/ws", http.Header{"Authorization": {"bearer " + good}}},
	} {
		t.Run("accepts "+tc.name, func(t *testing.T) {
			if status, body := testutil.Upgrade(t, n, tc.target, tc.header); status != http.StatusSwitchingProtocols {
				t.Fatalf("status %d (%q), want 101", status, body)
			}
		})
	}
}

func TestAuthBearerHeaderWorks(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{TokenSecret: secret})
	tok := mint(t, secret, "42", nil, false, time.Hour)
	c := testutil.DialWS(t, n, "", http.Header{"Authorization": {"Bearer " + tok}})
	top := c.Subscribe("news", 1)
	c.Subscribe("user:42", 2)
	off := testutil.Publish(t, n, "news", `"hi"`)
	if off != top+1 {
		t.Fatalf("offset %d, want %d", off, top+1)
	}
	wantRaw(t, c.Read(), messageFrame("news", off, `"hi"`))
}

func TestAuthChannelPatterns(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{TokenSecret: secret})
	c := dialAs(t, n, mint(t, secret, "42", []string{"news", "sport.*"}, false, time.Hour))
	c.Subscribe("news", 1)
	c.Subscribe("sport.live", 2)
	for i, ch := range []string{"weather", "newsroom", "sport", "sports.live", "user:7"} {
		c.Send(fmt.Sprintf(`{"op":"subscribe","channel":%q,"id":%d}`, ch, 3+i))
		c.ExpectError(3+i, "forbidden")
		testutil.Publish(t, n, ch, `"refused"`)
	}
	// A personal channel needs no pattern: it is its owner's.
	c.Subscribe("user:42", 10)
	off := testutil.Publish(t, n, "sport.live", `"goal"`)
	wantRaw(t, c.Read(), messageFrame("sport.live", off, `"goal"`))
	fence(t, n, c, "news")
}

func TestAuthPersonalChannels(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{TokenSecret: secret})
	phone := dialAs(t, n, mint(t, secret, "42", nil, false, time.Hour))
	laptop := dialAs(t, n, mint(t, secret, "42", []string{"news"}, false, time.Hour))
	other := dialAs(t, n, mint(t, secret, "7", nil, false, time.Hour))

	top := phone.Subscribe("user:42", 1)
	if got := laptop.Subscribe("user:42", 1); got != top {
		t.Fatalf("second device acked offset %d, first %d", got, top)
	}
	other.Send(`{"op":"subscribe","channel":"user:42","id":1}`)
	other.ExpectError(1, "forbidden")
	other.Send(`{"op":"subscribe","channel":"user:4","id":2}`)
	other.ExpectError(2, "forbidden")
	other.Send(`{"op":"subscribe","channel":"user:420","id":3}`)
	other.ExpectError(3, "forbidden")
	other.Subscribe("user:7", 4)
	other.Subscribe("news", 5)
	laptop.Subscribe("news", 2)
	phone.Subscribe("news", 2)

	off := testutil.Publish(t, n, "user:42", `{"dm":"for 42"}`)
	if off != top+1 {
		t.Fatalf("offset %d, want %d", off, top+1)
	}
	wantRaw(t, phone.Read(), messageFrame("user:42", off, `{"dm":"for 42"}`))
	wantRaw(t, laptop.Read(), messageFrame("user:42", off, `{"dm":"for 42"}`))
	fence(t, n, other, "user:7")
	// The fence went only to user 7; a news publication reaches all three,
	// and user 7 saw nothing of user 42's channel before it.
	off = testutil.Publish(t, n, "news", `"all"`)
	for _, c := range []*testutil.WSClient{phone, laptop, other} {
		wantRaw(t, c.Read(), messageFrame("news", off, `"all"`))
	}
}

func TestAuthClientPublishClaim(t *testing.T) {
	t.Parallel()
	// ClientPublish is for anonymous mode; with tokens only the claim counts.
	n := testutil.StartNode(t, testutil.NodeOptions{TokenSecret: secret, ClientPublish: true})
	sub := dialAs(t, n, mint(t, secret, "1", nil, false, time.Hour))
	top := sub.Subscribe("chat", 1)

	plain := dialAs(t, n, mint(t, secret, "2", nil, false, time.Hour))
	plain.Send(`{"op":"publish","channel":"chat","data":"no claim","id":1}`)
	plain.ExpectError(1, "forbidden")
	fence(t, n, sub, "chat")

	limited := dialAs(t, n, mint(t, secret, "3", []string{"chat"}, true, time.Hour))
	limited.Send(`{"op":"publish","channel":"other","data":"outside patterns","id":1}`)
	limited.ExpectError(1, "forbidden")
	limited.Send(`{"op":"publish","channel":"user:1","data":"someone else's","id":2}`)
	limited.ExpectError(2, "forbidden")
	fence(t, n, sub, "chat")

	allowed := dialAs(t, n, mint(t, secret, "4", nil, true, time.Hour))
	allowed.Send(`{"op":"publish","channel":"chat","data":"with claim","id":7}`)
	ack := allowed.ExpectAck(7)
	if ack.Offset != top+3 { // the two fences took top+1 and top+2
		t.Fatalf("ack %s, want offset %d", ack.Raw, top+3)
	}
	wantRaw(t, sub.Read(), messageFrame("chat", top+3, `"with claim"`))
	fence(t, n, sub, "chat")
}
