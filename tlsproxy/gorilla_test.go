package tlsproxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/herald-ws/herald/internal/testutil"
)

// TestDocumentedConfigIsTested fails when docs/deployment.md does not show
// nginx.conf, the file the tests run, word for word.
func TestDocumentedConfigIsTested(t *testing.T) {
	doc, err := os.ReadFile("../docs/deployment.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct{ lang, file, text string }{
		{"nginx", "nginx.conf", DocumentedConfig},
		{"haproxy", "haproxy.cfg", DocumentedHAProxyConfig},
	} {
		if !strings.Contains(string(doc), "```"+f.lang+"\n"+f.text+"```\n") {
			t.Errorf("docs/deployment.md does not contain tlsproxy/%s verbatim in a ```%s block; copy the file into it", f.file, f.lang)
		}
	}
	u := Upstreams{WS: "127.0.0.1:1", API: "127.0.0.1:2", Certs: Files{ServerCert: "c", ServerKey: "k"}, Timeout: 1e9}
	if _, err := Render(t.TempDir(), 1234, u); err != nil {
		t.Fatal(err)
	}
	if _, err := RenderHAProxy(1234, "pem", u); err != nil {
		t.Fatal(err)
	}
}

// TestRenderRejectsDrift: a documented value the test relies on replacing
// that appears twice, or not at all, is an error, not a silent miss.
func TestRenderRejectsDrift(t *testing.T) {
	orig := DocumentedConfig
	defer func() { DocumentedConfig = orig }()
	for name, conf := range map[string]string{
		"missing listen":  strings.Replace(orig, "listen 443 ssl;", "listen 8443 ssl;", 1),
		"twice upstream":  strings.Replace(orig, "server 127.0.0.1:8080;", "server 127.0.0.1:8080;\n        server 127.0.0.1:8080;", 1),
		"missing pid":     strings.Replace(orig, "pid /run/nginx-herald.pid;", "", 1),
		"missing api key": strings.Replace(orig, "ssl_certificate_key /etc/ssl/herald/privkey.pem;", "", 1),
	} {
		DocumentedConfig = conf
		if _, err := Render("/tmp/x", 1, Upstreams{}); err == nil {
			t.Errorf("%s: Render accepted it", name)
		}
	}
}

// gorillaDial opens url through nginx with a gorilla client that trusts
// only the test CA.
func (e *env) gorillaDial(url string) (*websocket.Conn, error) {
	d := websocket.Dialer{TLSClientConfig: e.ca.ClientConfig(), HandshakeTimeout: 10 * time.Second}
	c, res, err := d.Dial(url, nil)
	if err != nil {
		if res != nil {
			return nil, fmt.Errorf("dial %s: %w (HTTP %d)", url, err, res.StatusCode)
		}
		return nil, fmt.Errorf("dial %s: %w", url, err)
	}
	e.t.Cleanup(func() { _ = c.Close() })
	return c, nil
}

func readMsg(t *testing.T, c *websocket.Conn) testutil.Msg {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	op, p, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if op != websocket.TextMessage {
		t.Fatalf("opcode %d, want text", op)
	}
	m, err := testutil.DecodeMsg(p)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func closeCode(t *testing.T, c *websocket.Conn) int {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, _, err := c.ReadMessage()
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code
		}
		if err != nil {
			t.Fatalf("waiting for a close frame: %v", err)
		}
	}
}

func subscribe(t *testing.T, c *websocket.Conn, channel string, since *uint64) testutil.Msg {
	t.Helper()
	req := map[string]any{"op": "subscribe", "channel": channel, "id": 1}
	if since != nil {
		req["since"] = *since
	}
	b, _ := json.Marshal(req)
	if err := c.WriteMessage(websocket.TextMessage, b); err != nil {
		t.Fatal(err)
	}
	m := readMsg(t, c)
	if m.Op != "ack" || string(m.ID) != "1" {
		t.Fatalf("got %s, want the subscribe ack", m.Raw)
	}
	return m
}

func expectMessage(t *testing.T, m testutil.Msg, channel string, offset uint64, data string) {
	t.Helper()
	if m.Op != "message" || m.Channel != channel || m.Offset != offset || string(m.Data) != data {
		t.Fatalf("got %s, want message %d %s on %s", m.Raw, offset, data, channel)
	}
}

// TestGorillaWSSRecoversAcrossRestart: a gorilla client over wss://
// through nginx (and HAProxy) subscribes, receives a publication posted over https://
// through the same nginx, is told 1001 when Herald shuts down, and after
// Herald restarts on the same port behind the same nginx recovers with
// since everything published meanwhile (by another node of the cluster),
// with recovered:true, then keeps receiving live.
func TestGorillaWSSRecoversAcrossRestart(t *testing.T) {
	for _, p := range proxies {
		t.Run(p.name, func(t *testing.T) { testGorillaRecovers(t, envOptions{HAProxy: p.haproxy}) })
	}
}

func testGorillaRecovers(t *testing.T, o envOptions) {
	e := newEnv(t, o)
	c, err := e.gorillaDial(e.proxy.WSURL(""))
	if err != nil {
		t.Fatal(err)
	}
	subscribe(t, c, "news", nil)
	off := e.publish("news", `{"n":1}`)
	expectMessage(t, readMsg(t, c), "news", off, `{"n":1}`)

	e.shutdownA()
	if code := closeCode(t, c); code != websocket.CloseGoingAway {
		t.Fatalf("close code %d through nginx at shutdown, want 1001", code)
	}
	if _, err := e.gorillaDial(e.proxy.WSURL("")); err == nil {
		t.Fatal("an upgrade through nginx succeeded while Herald was down")
	}
	missed := []string{`{"n":2}`, `{"n":3}`}
	var offs []uint64
	for _, d := range missed {
		offs = append(offs, e.publishB("news", d))
	}
	e.restartA()
	e.waitUpgradable()

	c2, err := e.gorillaDial(e.proxy.WSURL(""))
	if err != nil {
		t.Fatal(err)
	}
	ack := subscribe(t, c2, "news", &off)
	if ack.Recovered == nil || !*ack.Recovered {
		t.Fatalf("ack %s after the restart, want recovered:true", ack.Raw)
	}
	for i, d := range missed {
		expectMessage(t, readMsg(t, c2), "news", offs[i], d)
	}
	live := e.publish("news", `{"n":4}`)
	expectMessage(t, readMsg(t, c2), "news", live, `{"n":4}`)
}

// TestGorillaWSSCloseCodes: close codes Herald sends reach the client
// through nginx (and HAProxy) unchanged, and the proxy's routing rules
// hold.
func TestGorillaWSSCloseCodes(t *testing.T) {
	for _, p := range proxies {
		t.Run(p.name, func(t *testing.T) { testCloseCodes(t, envOptions{MaxMessageSize: 4096, HAProxy: p.haproxy}) })
	}
}

func testCloseCodes(t *testing.T, o envOptions) {
	e := newEnv(t, o)
	t.Run("1009 too large", func(t *testing.T) {
		c, err := e.gorillaDial(e.proxy.WSURL(""))
		if err != nil {
			t.Fatal(err)
		}
		big := `{"op":"subscribe","channel":"` + strings.Repeat("x", 8000) + `","id":1}`
		if err := c.WriteMessage(websocket.TextMessage, []byte(big)); err != nil {
			t.Fatal(err)
		}
		if code := closeCode(t, c); code != websocket.CloseMessageTooBig {
			t.Fatalf("close code %d, want 1009", code)
		}
	})
	t.Run("1000 echoed", func(t *testing.T) {
		c, err := e.gorillaDial(e.proxy.WSURL(""))
		if err != nil {
			t.Fatal(err)
		}
		msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye")
		if err := c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(5*time.Second)); err != nil {
			t.Fatal(err)
		}
		if code := closeCode(t, c); code != websocket.CloseNormalClosure {
			t.Fatalf("close code %d, want 1000 echoed", code)
		}
	})
	t.Run("plain https to /ws", func(t *testing.T) {
		// Without an Upgrade header Herald sees an ordinary request (nginx's
		// map sends "Connection: close") and refuses it as one.
		res, err := e.HTTPS.Get(e.proxy.URL("/ws"))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusUpgradeRequired {
			t.Fatalf("a GET without Upgrade got HTTP %d through nginx, want 426 from Herald", res.StatusCode)
		}
	})
	t.Run("API closed to other addresses", func(t *testing.T) {
		// The proxy's allow/deny sees the client address: from 127.0.0.2
		// the API is refused.
		tr := &http.Transport{TLSClientConfig: e.ca.ClientConfig(), DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		res, err := c.Post(e.proxy.URL("/api/publish"), "application/json", strings.NewReader(`{"channel":"x","data":1}`))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusForbidden {
			t.Fatalf("publish from 127.0.0.2 got HTTP %d, want 403", res.StatusCode)
		}
		if _, err := e.tryPublish(e.proxy.URL("/api/publish"), "x", "1"); err != nil {
			t.Fatalf("publish from 127.0.0.1: %v", err)
		}
	})
}

// TestPingsKeepIdleConnectionsOpen shows why the documented proxy timeouts
// (nginx's proxy_read_timeout, HAProxy's timeout tunnel) must exceed
// Herald's ping interval, with them shortened to 1 s: an idle subscriber
// that Herald pings more often than that outlives the timeout and still
// receives; without pings the proxy cuts it, with no close frame.
func TestPingsKeepIdleConnectionsOpen(t *testing.T) {
	for _, tc := range []struct {
		name    string
		haproxy bool
		ping    time.Duration
		alive   bool
	}{
		{"nginx pinged every 300 ms", false, 300 * time.Millisecond, true},
		{"nginx never pinged", false, 0, false},
		{"haproxy pinged every 300 ms", true, 300 * time.Millisecond, true},
		{"haproxy never pinged", true, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{PingInterval: tc.ping, ProxyTimeout: time.Second, HAProxy: tc.haproxy})
			c, err := e.gorillaDial(e.proxy.WSURL(""))
			if err != nil {
				t.Fatal(err)
			}
			subscribe(t, c, "idle", nil)
			published := make(chan uint64, 1)
			go func() {
				time.Sleep(2500 * time.Millisecond) // 2.5 x the proxy timeout
				off, err := e.tryPublish(e.proxy.URL("/api/publish"), "idle", `{"late":true}`)
				if err != nil {
					t.Error(err)
				}
				published <- off
			}()
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, p, err := c.ReadMessage() // answers pings while it waits
			off := <-published
			if tc.alive {
				if err != nil {
					t.Fatalf("the pinged connection was cut: %v", err)
				}
				m, derr := testutil.DecodeMsg(p)
				if derr != nil {
					t.Fatal(derr)
				}
				expectMessage(t, m, "idle", off, `{"late":true}`)
				return
			}
			var ce *websocket.CloseError
			if err == nil || (errors.As(err, &ce) && ce.Code != websocket.CloseAbnormalClosure) {
				t.Fatalf("the unpinged connection outlived the proxy timeout: %v %q", err, p)
			}
		})
	}
}
