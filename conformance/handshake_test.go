package conformance_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herald-ws/herald/internal/testutil"
	"github.com/herald-ws/herald/internal/wstest"
)

// bytePause is the pause between one-byte writes: long enough that the
// server usually reads each byte on its own.
const bytePause = 100 * time.Microsecond

// TestHandshakeErrors checks RFC 6455 section 4.2.1 and the HTTP rules
// around it: every refused upgrade gets the right status and headers, and
// the server then closes the connection.
func TestHandshakeErrors(t *testing.T) {
	t.Parallel()
	addr := start(t, testutil.Options{})
	h := func(pairs ...string) http.Header {
		out := http.Header{}
		for i := 0; i < len(pairs); i += 2 {
			if pairs[i+1] == "-" {
				out[http.CanonicalHeaderKey(pairs[i])] = nil // delete the default
				continue
			}
			out.Set(pairs[i], pairs[i+1])
		}
		return out
	}
	cases := []struct {
		name   string
		method string
		path   string
		header http.Header
		raw    string // sent instead of a generated request when set
		status int
		want   http.Header // response headers that must be present
	}{
		{name: "POST", method: "POST", status: 405, want: h("Allow", "GET")},
		{name: "PUT on a missing path", method: "PUT", path: "/nope", status: 405, want: h("Allow", "GET")},
		{name: "wrong path", path: "/nope", status: 404},
		{name: "path prefix is not the route", path: "/echo/x", status: 404},
		{name: "missing Sec-WebSocket-Key", header: h("Sec-WebSocket-Key", "-"), status: 400},
		{name: "short Sec-WebSocket-Key", header: h("Sec-WebSocket-Key", "abc"), status: 400},
		{name: "Sec-WebSocket-Key of 15 bytes", header: h("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAA"), status: 400},
		{name: "Sec-WebSocket-Key of 24 chars, not base64 of 16 bytes", header: h("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAAAA"), status: 400},
		{name: "Sec-WebSocket-Key not base64", header: h("Sec-WebSocket-Key", "!!!!!!!!!!!!!!!!!!!!!!=="), status: 400},
		{name: "Sec-WebSocket-Version 8", header: h("Sec-WebSocket-Version", "8"), status: 426, want: h("Sec-WebSocket-Version", "13")},
		{name: "missing Sec-WebSocket-Version", header: h("Sec-WebSocket-Version", "-"), status: 426, want: h("Sec-WebSocket-Version", "13")},
		{name: "plain GET", header: h("Upgrade", "-", "Connection", "-", "Sec-WebSocket-Key", "-", "Sec-WebSocket-Version", "-"), status: 426},
		{name: "missing Upgrade", header: h("Upgrade", "-"), status: 426},
		{name: "Upgrade: h2c", header: h("Upgrade", "h2c"), status: 426},
		{name: "missing Connection: Upgrade", header: h("Connection", "keep-alive"), status: 426},
		{name: "missing Host", header: h("Host", "-"), status: 400},
		{name: "HTTP/1.0", raw: "GET /echo HTTP/1.0\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", status: 400},
		{name: "garbage request line", raw: "HELLO\r\n\r\n", status: 400},
		{name: "HTTP/2.0", raw: strings.Replace(rawUpgrade(), "HTTP/1.1", "HTTP/2.0", 1), status: 505},
		{name: "two Host lines", raw: rawUpgrade("Host: other.example.com"), status: 400},
		{name: "two Sec-WebSocket-Key lines", raw: rawUpgrade("Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA=="), status: 400},
		{name: "two Sec-WebSocket-Version lines", raw: rawUpgrade("Sec-WebSocket-Version: 13"), status: 400},
		{name: "Content-Length body", raw: rawUpgrade("Content-Length: 9") + "\x81\x85\x37\xfa\x21\x3d\x7f", status: 400},
		{name: "Transfer-Encoding body", raw: rawUpgrade("Transfer-Encoding: chunked") + "0\r\n\r\n", status: 400},
		{name: "obs-fold", raw: rawUpgrade("X-A: a", " folded"), status: 400},
		{name: "space before the colon", raw: rawUpgrade("Origin : http://x"), status: 400},
		{name: "control byte in a value", raw: rawUpgrade("X-A: a\x01b"), status: 400},
		{name: "two spaces in the request line", raw: strings.Replace(rawUpgrade(), "GET /echo", "GET  /echo", 1), status: 400},
		{name: "absolute-form target", raw: strings.Replace(rawUpgrade(), "GET /echo", "GET http://x/echo", 1), status: 400},
		{name: "header block over 8 KiB", header: h("X-Pad", strings.Repeat("p", 9000)), status: 431},
		{name: "unterminated header block over 8 KiB", raw: "GET /echo HTTP/1.1\r\nX-Pad: " + strings.Repeat("p", 9000), status: 431},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := wstest.DialTCP(t, addr)
			req := []byte(tc.raw)
			if tc.raw == "" {
				hdr := wstest.UpgradeHeader(addr, wstest.NewKey())
				wstest.MergeHeader(hdr, tc.header)
				method, path := tc.method, tc.path
				if method == "" {
					method = "GET"
				}
				if path == "" {
					path = "/echo"
				}
				req = wstest.RequestBytes(method, path, hdr)
			}
			c.Write(req)
			resp := c.ExpectHTTPError(tc.status)
			for k := range tc.want {
				if got := resp.Header.Get(k); got != tc.want.Get(k) {
					t.Errorf("%s: %s = %q, want %q", resp.Status, k, got, tc.want.Get(k))
				}
			}
			if resp.Header.Get("Sec-WebSocket-Accept") != "" {
				t.Errorf("%s carries Sec-WebSocket-Accept", resp.Status)
			}
		})
	}
}

// rawUpgrade is a valid /echo upgrade request with extra header lines
// appended as they are, so that a field can be repeated.
func rawUpgrade(extra ...string) string {
	s := "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
	for _, e := range extra {
		s += e + "\r\n"
	}
	return s + "\r\n"
}

// TestHandshakeAccepted covers upgrade requests that must succeed however
// they are written or delivered.
func TestHandshakeAccepted(t *testing.T) {
	t.Parallel()
	addr := start(t, testutil.Options{})
	cases := []struct {
		name   string
		path   string
		header http.Header
	}{
		{"query string", "/echo?token=abc&x=1", nil},
		{"Connection lists Upgrade among others", "/echo", http.Header{"Connection": {"keep-alive, Upgrade"}}},
		{"header values in other cases", "/echo", http.Header{"Upgrade": {"WebSocket"}, "Connection": {"upgrade"}}},
		{"unknown headers and extensions", "/echo", http.Header{"X-Whatever": {"1"}, "Sec-Websocket-Extensions": {"x-unknown"}}},
		{"subprotocol offer ignored", "/echo", http.Header{"Sec-Websocket-Protocol": {"chat"}}},
		{"Connection and Upgrade lists across lines", "/echo", http.Header{"Connection": {"keep-alive", "Upgrade"}, "Upgrade": {"h2c", "websocket"}}},
		{"Content-Length: 0", "/echo", http.Header{"Content-Length": {"0"}}},
		{"malformed escape in the query", "/echo?a=%zz&b={x}", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := wstest.Dial(t, addr, tc.path, tc.header)
			if p := c.Response.Header.Get("Sec-WebSocket-Protocol"); p != "" {
				t.Errorf("server chose subprotocol %q that /echo does not speak", p)
			}
			c.Echo(wstest.OpText, []byte("hello"))
		})
	}

	t.Run("upgrade request one byte per write", func(t *testing.T) {
		t.Parallel()
		c := wstest.DialTCP(t, addr)
		key := wstest.NewKey()
		c.WriteBytewise(wstest.RequestBytes("GET", "/echo", wstest.UpgradeHeader(addr, key)), bytePause)
		wstest.CheckUpgrade(t, c.ReadResponse(), key)
		c.Echo(wstest.OpText, []byte("after a bytewise upgrade"))
	})

	t.Run("whole conversation one byte per write", func(t *testing.T) {
		t.Parallel()
		c := wstest.DialTCP(t, addr)
		key := wstest.NewKey()
		c.WriteBytewise(wstest.RequestBytes("GET", "/echo", wstest.UpgradeHeader(addr, key)), bytePause)
		wstest.CheckUpgrade(t, c.ReadResponse(), key)
		converse(c, scenario{close: closeNormal, do: do(
			sendChunked(1, bytePause, text("Hello, \u00b5 world")), wantText("Hello, \u00b5 world"),
			sendChunked(1, bytePause, binary(binOf(130))), want(wstest.OpBinary, binOf(130)),
			sendChunked(1, bytePause, frame(false, 0, wstest.OpText, []byte("frag-")), ping([]byte("mid")), cont(false, "ment"), cont(true, "ed")),
			wantPong([]byte("mid")), wantText("frag-mented"),
			sendChunked(1, bytePause, ping([]byte("ping"))), wantPong([]byte("ping")),
			sendChunked(1, bytePause, pong([]byte("unsolicited")), text("")), wantText(""),
			sendChunked(1, bytePause, closeFrame(1000, "bye")),
		)})
	})

	t.Run("frames pipelined with the upgrade request", func(t *testing.T) {
		t.Parallel()
		c := wstest.DialTCP(t, addr)
		key := wstest.NewKey()
		req := wstest.RequestBytes("GET", "/echo", wstest.UpgradeHeader(addr, key))
		c.Write(bytes.Join([][]byte{req, text("first"), ping([]byte("p")), binary([]byte{1, 2, 3})}, nil))
		wstest.CheckUpgrade(t, c.ReadResponse(), key)
		converse(c, scenario{do: do(wantText("first"), wantPong([]byte("p")), want(wstest.OpBinary, []byte{1, 2, 3}))})
	})

	t.Run("upgrade request and half a frame, then the rest", func(t *testing.T) {
		t.Parallel()
		c := wstest.DialTCP(t, addr)
		key := wstest.NewKey()
		f := text("split across writes")
		c.Write(append(wstest.RequestBytes("GET", "/echo", wstest.UpgradeHeader(addr, key)), f[:3]...))
		wstest.CheckUpgrade(t, c.ReadResponse(), key)
		c.Write(f[3:])
		c.ExpectMessage(wstest.OpText, []byte("split across writes"))
	})

	t.Run("protocol error pipelined with the upgrade request", func(t *testing.T) {
		t.Parallel()
		c := wstest.DialTCP(t, addr)
		key := wstest.NewKey()
		req := wstest.RequestBytes("GET", "/echo", wstest.UpgradeHeader(addr, key))
		c.Write(bytes.Join([][]byte{req, text("ok"), frame(true, 0, 3, nil)}, nil))
		wstest.CheckUpgrade(t, c.ReadResponse(), key)
		converse(c, scenario{do: do(wantText("ok")), close: closeProtocol})
	})
}

// TestOrigins checks AllowedOrigins: exact matches (case-insensitive), a
// trailing '*' wildcard, and requests without Origin (not from a browser).
func TestOrigins(t *testing.T) {
	t.Parallel()
	addr := start(t, testutil.Options{AllowedOrigins: []string{"https://good.example.com", "http://localhost:*"}})
	cases := []struct {
		origin string // "" sends no Origin header
		ok     bool
	}{
		{"https://good.example.com", true},
		{"HTTPS://GOOD.EXAMPLE.COM", true},
		{"http://localhost:3000", true},
		{"http://localhost:", true},
		{"", true},
		{"https://evil.example.com", false},
		{"http://good.example.com", false},
		{"https://good.example.com.evil.net", false},
		{"https://good.example.co", false},
		{"http://localhost", false},
		{"null", false},
	}
	for _, tc := range cases {
		name := tc.origin
		if name == "" {
			name = "no Origin"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var hdr http.Header
			if tc.origin != "" {
				hdr = http.Header{"Origin": {tc.origin}}
			}
			if tc.ok {
				c := wstest.Dial(t, addr, "/echo", hdr)
				c.Echo(wstest.OpText, []byte("from "+name))
				return
			}
			c := wstest.DialTCP(t, addr)
			h := wstest.UpgradeHeader(addr, wstest.NewKey())
			wstest.MergeHeader(h, hdr)
			c.Write(wstest.RequestBytes("GET", "/echo", h))
			c.ExpectHTTPError(403)
		})
	}
}
