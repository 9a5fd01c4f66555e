package codec

import (
	"reflect"
	"strings"
	"testing"
)

// parseEverySplit parses in whole and then split at every byte, the prefix
// first and then all of it with scanned = the prefix length, as an event
// loop delivers it. Every split must give the whole parse's result.
func parseEverySplit(t *testing.T, in string, opt ParseOptions) (Request, int, error) {
	t.Helper()
	b := []byte(in)
	var whole Request
	wn, werr := ParseRequest(b, 0, &whole, opt)
	for k := 0; k < len(b); k++ {
		var r Request
		n, err := ParseRequest(b[:k], 0, &r, opt)
		if n != 0 || err != nil {
			// Only a prefix that holds the whole block may complete.
			if !strings.Contains(in[:k], "\r\n\r\n") {
				t.Fatalf("prefix of %d bytes: n %d err %v before the block is complete", k, n, err)
			}
			continue
		}
		n, err = ParseRequest(b, k, &r, opt)
		if n != wn || err != werr || (err == nil && !reflect.DeepEqual(r, whole)) {
			t.Fatalf("split at %d: n %d err %v, whole n %d err %v", k, n, err, wn, werr)
		}
	}
	return whole, wn, werr
}

// plus adds header lines to the default request without replacing any,
// for repeated fields.
func plus(lines ...string) string {
	base := request("GET / HTTP/1.1")
	return base[:len(base)-2] + strings.Join(lines, "\r\n") + "\r\n\r\n"
}

// TestParseRequestStrict is the table of RFC 9110, RFC 9112 and RFC 6455
// section 4.2.1 rules ParseRequest and Check enforce. parse is the error
// ParseRequest must return, check the one Check must return when parsing
// succeeds, status the HTTP status of either (0: accepted).
func TestParseRequestStrict(t *testing.T) {
	key := "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="
	cases := []struct {
		name   string
		in     string
		parse  error
		check  error
		status int
	}{
		// Request line: method SP origin-form SP HTTP-version.
		{"valid", request("GET /chat HTTP/1.1"), nil, nil, 0},
		{"method not a token", request("G@T /chat HTTP/1.1"), ErrMalformedRequest, nil, 400},
		{"method with a parenthesis", request("GE(T /chat HTTP/1.1"), ErrMalformedRequest, nil, 400},
		{"leading space", request(" GET /chat HTTP/1.1"), ErrMalformedRequest, nil, 400},
		{"tab after the method", request("GET\t/chat HTTP/1.1"), ErrMalformedRequest, nil, 400},
		{"tab after the target", request("GET /chat\tHTTP/1.1"), ErrMalformedRequest, nil, 400},
		{"two spaces after the method", request("GET  /chat HTTP/1.1"), ErrMalformedRequest, nil, 400},
		{"two spaces after the target", request("GET /chat  HTTP/1.1"), ErrMalformedRequest, nil, 400},
		{"trailing space", request("GET /chat HTTP/1.1 "), ErrMalformedRequest, nil, 400},
		{"space inside the target", request("GET /ch at HTTP/1.1"), ErrMalformedRequest, nil, 400},
		{"token method other than GET", request("PATCH /chat HTTP/1.1"), nil, ErrMethodNotAllowed, 405},
		{"target without a slash", request("GET chat HTTP/1.1"), ErrMalformedRequest, nil, 400},
		{"absolute-form", request("GET http://server.example.com/chat HTTP/1.1"), ErrMalformedRequest, nil, 400},
		{"authority-form", request("GET server.example.com:80 HTTP/1.1"), ErrMalformedRequest, nil, 400},
		{"asterisk-form", request("GET * HTTP/1.1"), ErrMalformedRequest, nil, 400},
		{"DEL in the target", request("GET /ch\x7fat HTTP/1.1"), ErrMalformedRequest, nil, 400},
		{"control byte in the target", request("GET /ch\x01at HTTP/1.1"), ErrMalformedRequest, nil, 400},
		{"tab in the query", request("GET /chat?a=\tb HTTP/1.1"), ErrMalformedRequest, nil, 400},
		{"non-ASCII target", request("GET /caf\xc3\xa9 HTTP/1.1"), ErrMalformedRequest, nil, 400},
		{"fragment", request("GET /chat#top HTTP/1.1"), ErrMalformedRequest, nil, 400},
		{"fragment after a query", request("GET /chat?a=1#top HTTP/1.1"), ErrMalformedRequest, nil, 400},
		{"pchar punctuation", request("GET /a/b;c=d:e@f!$&'()*+,=-._~ HTTP/1.1"), nil, nil, 0},
		{"browser-unescaped query characters", request("GET /chat?q={\"a\"}|^`<>\\ HTTP/1.1"), nil, nil, 0},
		{"malformed escape in the query", request("GET /chat?a=%zz&token=x HTTP/1.1"), nil, nil, 0},
		{"semicolon pair in the query", request("GET /chat?;&token=x HTTP/1.1"), nil, nil, 0},
		{"HTTP/1.0", request("GET /chat HTTP/1.0"), ErrHTTPVersion, nil, 400},
		{"HTTP/2.0", request("GET /chat HTTP/2.0"), ErrHTTPVersionNotSupported, nil, 505},
		{"HTTP/3.0", request("GET /chat HTTP/3.0"), ErrHTTPVersionNotSupported, nil, 505},
		{"HTTP/0.9", request("GET /chat HTTP/0.9"), ErrHTTPVersionNotSupported, nil, 505},
		{"HTTP/1.2", request("GET /chat HTTP/1.2"), nil, nil, 0},
		{"HTTP/1.9", request("GET /chat HTTP/1.9"), nil, nil, 0},
		{"HTTP/2 without a minor version", request("GET /chat HTTP/2"), ErrMalformedRequest, nil, 400},
		{"two-digit minor version", request("GET /chat HTTP/1.10"), ErrMalformedRequest, nil, 400},
		{"two-digit major version", request("GET /chat HTTP/11.1"), ErrMalformedRequest, nil, 400},
		{"three-part version", request("GET /chat HTTP/1.1.1"), ErrMalformedRequest, nil, 400},
		{"lower-case protocol name", request("GET /chat http/1.1"), ErrMalformedRequest, nil, 400},
		{"HTTPS protocol name", request("GET /chat HTTPS/1.1"), ErrMalformedRequest, nil, 400},
		{"comma in the version", request("GET /chat HTTP/1,1"), ErrMalformedRequest, nil, 400},
		{"letter in the version", request("GET /chat HTTP/a.1"), ErrMalformedRequest, nil, 400},

		// Field names are tokens followed directly by the colon.
		{"space in a name", request("GET / HTTP/1.1", "Bad Name: x"), ErrMalformedRequest, nil, 400},
		{"parenthesis in a name", request("GET / HTTP/1.1", "Bad(Name): x"), ErrMalformedRequest, nil, 400},
		{"slash in a name", request("GET / HTTP/1.1", "Bad/Name: x"), ErrMalformedRequest, nil, 400},
		{"non-ASCII name", request("GET / HTTP/1.1", "Na\xc3\xafve: x"), ErrMalformedRequest, nil, 400},
		{"DEL in a name", request("GET / HTTP/1.1", "X\x7f: x"), ErrMalformedRequest, nil, 400},
		{"every tchar in a name", request("GET / HTTP/1.1", "X-!#$%&'*+-.^_`|~09az: ok"), nil, nil, 0},
		{"space before the colon", request("GET / HTTP/1.1", "Host : server.example.com"), ErrMalformedRequest, nil, 400},
		{"tab before the colon", request("GET / HTTP/1.1", "Upgrade\t: websocket"), ErrMalformedRequest, nil, 400},
		{"empty name", request("GET / HTTP/1.1", ": v"), ErrMalformedRequest, nil, 400},
		{"no colon", request("GET / HTTP/1.1", "NoColon"), ErrMalformedRequest, nil, 400},
		{"obs-fold with a space", request("GET / HTTP/1.1", "X-A: a", " folded"), ErrMalformedRequest, nil, 400},
		{"obs-fold with a tab", request("GET / HTTP/1.1", "X-A: a", "\tfolded"), ErrMalformedRequest, nil, 400},
		{"obs-fold continuing Upgrade", request("GET / HTTP/1.1", "Upgrade: h2c,", " websocket"), ErrMalformedRequest, nil, 400},

		// Values: OWS trimmed, no CTL but HTAB, obs-text allowed.
		{"no whitespace after the colon", request("GET / HTTP/1.1", "Sec-WebSocket-Version:13"), nil, nil, 0},
		{"tabs around a value", request("GET / HTTP/1.1", "Sec-WebSocket-Key:\t dGhlIHNhbXBsZSBub25jZQ== \t"), nil, nil, 0},
		{"tab inside a value", request("GET / HTTP/1.1", "X-A: a\tb"), nil, nil, 0},
		{"obs-text in a value", request("GET / HTTP/1.1", "X-A: caf\xc3\xa9 \xff"), nil, nil, 0},
		{"SOH in a value", request("GET / HTTP/1.1", "X-A: a\x01b"), ErrMalformedRequest, nil, 400},
		{"ESC in a value", request("GET / HTTP/1.1", "X-A: a\x1bb"), ErrMalformedRequest, nil, 400},
		{"DEL in a value", request("GET / HTTP/1.1", "X-A: a\x7fb"), ErrMalformedRequest, nil, 400},
		{"NUL in a value", request("GET / HTTP/1.1", "X-A: a\x00b"), ErrMalformedRequest, nil, 400},
		{"vertical tab in a value", request("GET / HTTP/1.1", "X-A: a\vb"), ErrMalformedRequest, nil, 400},
		{"bare CR in a value", request("GET / HTTP/1.1", "X-A: a\rb"), ErrMalformedRequest, nil, 400},
		{"bare LF in a value", request("GET / HTTP/1.1", "X-A: a\nHost: evil"), ErrMalformedRequest, nil, 400},

		// Singletons.
		{"two Host lines", plus("Host: server.example.com"), ErrDuplicateField, nil, 400},
		{"two Host lines, names in other cases", plus("host: a"), ErrDuplicateField, nil, 400},
		{"two Host lines, the second empty", plus("Host:"), ErrDuplicateField, nil, 400},
		{"two keys", plus(key), ErrDuplicateField, nil, 400},
		{"two versions, both 13", plus("Sec-WebSocket-Version: 13"), ErrDuplicateField, nil, 400},
		{"two Origins", plus("Origin: https://a.example", "Origin: https://b.example"), ErrDuplicateField, nil, 400},
		{"two Authorizations", plus("Authorization: Bearer a", "Authorization: Bearer b"), ErrDuplicateField, nil, 400},
		{"two Content-Lengths", plus("Content-Length: 0", "Content-Length: 0"), ErrDuplicateField, nil, 400},
		{"two versions in one line", request("GET / HTTP/1.1", "Sec-WebSocket-Version: 13, 8"), nil, ErrUnsupportedVersion, 426},

		// Host: required, once, an RFC 3986 host and port.
		{"Host missing", request("GET / HTTP/1.1", "Host: -"), nil, ErrMissingHost, 400},
		{"Host empty", request("GET / HTTP/1.1", "Host:"), nil, ErrMissingHost, 400},
		{"Host with a space", request("GET / HTTP/1.1", "Host: a b"), ErrMalformedRequest, nil, 400},
		{"Host with userinfo", request("GET / HTTP/1.1", "Host: user@server.example.com"), ErrMalformedRequest, nil, 400},
		{"Host with a path", request("GET / HTTP/1.1", "Host: server.example.com/chat"), ErrMalformedRequest, nil, 400},
		{"Host IPv6 with a port", request("GET / HTTP/1.1", "Host: [::1]:8080"), nil, nil, 0},
		{"Host IPv4 with a port", request("GET / HTTP/1.1", "Host: 127.0.0.1:80"), nil, nil, 0},

		// Lists: combined across lines, tokens compared case-insensitively.
		{"Connection in two lines", strings.Replace(plus("Connection: Upgrade"), "Connection: Upgrade", "Connection: keep-alive", 1), nil, nil, 0},
		{"Connection upgrade in the first of two lines", plus("Connection: close"), nil, nil, 0},
		{"Connection with empty elements", request("GET / HTTP/1.1", "Connection: ,, Upgrade ,,"), nil, nil, 0},
		{"Connection upgrade2", request("GET / HTTP/1.1", "Connection: upgrade2"), nil, ErrNotUpgrade, 426},
		{"Connection element not a token", request("GET / HTTP/1.1", "Connection: Upgrade;q=1"), ErrMalformedRequest, nil, 400},
		{"Connection element with a space", request("GET / HTTP/1.1", "Connection: keep alive, Upgrade"), ErrMalformedRequest, nil, 400},
		{"Upgrade in two lines", strings.Replace(plus("Upgrade: WebSocket"), "Upgrade: websocket", "Upgrade: h2c", 1), nil, nil, 0},
		{"Upgrade with a protocol version", request("GET / HTTP/1.1", "Upgrade: HTTP/2.0, websocket"), nil, nil, 0},
		{"Upgrade websocket/13 is another protocol", request("GET / HTTP/1.1", "Upgrade: websocket/13"), nil, ErrNotUpgrade, 426},
		{"Upgrade element with a space", request("GET / HTTP/1.1", "Upgrade: web socket"), ErrMalformedRequest, nil, 400},
		{"Upgrade with an empty version", request("GET / HTTP/1.1", "Upgrade: websocket/"), ErrMalformedRequest, nil, 400},
		{"Upgrade missing", request("GET / HTTP/1.1", "Upgrade: -"), nil, ErrNotUpgrade, 426},
		{"subprotocols in two lines", plus("Sec-WebSocket-Protocol: chat", "Sec-WebSocket-Protocol: superchat, v2.json"), nil, nil, 0},
		{"subprotocol not a token", request("GET / HTTP/1.1", "Sec-WebSocket-Protocol: chat;v=1"), ErrMalformedRequest, nil, 400},
		{"subprotocol with a space", request("GET / HTTP/1.1", "Sec-WebSocket-Protocol: my chat"), ErrMalformedRequest, nil, 400},

		// Bodies.
		{"Content-Length 0", request("GET / HTTP/1.1", "Content-Length: 0"), nil, nil, 0},
		{"Content-Length 000", request("GET / HTTP/1.1", "Content-Length: 000"), nil, nil, 0},
		{"Content-Length 5", request("GET / HTTP/1.1", "Content-Length: 5"), ErrRequestBody, nil, 400},
		{"Content-Length 10", request("GET / HTTP/1.1", "Content-Length: 10"), ErrRequestBody, nil, 400},
		{"Content-Length empty", request("GET / HTTP/1.1", "Content-Length:"), ErrRequestBody, nil, 400},
		{"Content-Length -0", request("GET / HTTP/1.1", "Content-Length: -0"), ErrRequestBody, nil, 400},
		{"Content-Length +0", request("GET / HTTP/1.1", "Content-Length: +0"), ErrRequestBody, nil, 400},
		{"Content-Length 0, 0", request("GET / HTTP/1.1", "Content-Length: 0, 0"), ErrRequestBody, nil, 400},
		{"Content-Length in hex", request("GET / HTTP/1.1", "Content-Length: 0x0"), ErrRequestBody, nil, 400},
		{"Transfer-Encoding chunked", request("GET / HTTP/1.1", "Transfer-Encoding: chunked"), ErrRequestBody, nil, 400},
		{"Transfer-Encoding identity", request("GET / HTTP/1.1", "Transfer-Encoding: identity"), ErrRequestBody, nil, 400},
		{"Transfer-Encoding empty", request("GET / HTTP/1.1", "transfer-encoding:"), ErrRequestBody, nil, 400},
		{"Transfer-Encoding with Content-Length 0", request("GET / HTTP/1.1", "Content-Length: 0", "Transfer-Encoding: chunked"), ErrRequestBody, nil, 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, n, err := parseEverySplit(t, c.in, ParseOptions{Compression: true})
			if err != c.parse {
				t.Fatalf("ParseRequest: %v, want %v", err, c.parse)
			}
			if err != nil {
				if n != 0 || statusOf(err) != c.status {
					t.Fatalf("n %d, status %d, want 0 and %d", n, statusOf(err), c.status)
				}
				return
			}
			if n != len(c.in) {
				t.Fatalf("n %d, want %d", n, len(c.in))
			}
			if err := r.Check(); err != c.check || statusOf(err) != c.status {
				t.Fatalf("Check: %v (status %d), want %v (%d)", err, statusOf(err), c.check, c.status)
			}
		})
	}
}

// TestParseRequestTrimsValues: the fields Herald reads come without the OWS
// around them, and a value keeps its inner whitespace.
func TestParseRequestTrimsValues(t *testing.T) {
	r, _, err := parseEverySplit(t, request("GET / HTTP/1.1",
		"Host: \t server.example.com:8080\t ",
		"Origin:https://app.example.com",
		"Authorization: \tBearer  abc.def\t",
	), ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, got, want string }{
		{"Host", string(r.Host), "server.example.com:8080"},
		{"Origin", string(r.Origin), "https://app.example.com"},
		{"Authorization", string(r.Authorization), "Bearer  abc.def"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
}

// TestAppendHTTPError505 checks the reason phrase of the version refusal.
func TestAppendHTTPError505(t *testing.T) {
	got := string(AppendHTTPError(nil, ErrHTTPVersionNotSupported.Status, ""))
	if !strings.HasPrefix(got, "HTTP/1.1 505 HTTP Version Not Supported\r\n") {
		t.Fatalf("%q", got)
	}
}
