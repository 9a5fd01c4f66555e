package codec

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// rfcRequest is the sample handshake of RFC 6455 section 1.3.
const rfcRequest = "GET /chat HTTP/1.1\r\n" +
	"Host: server.example.com\r\n" +
	"Upgrade: websocket\r\n" +
	"Connection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
	"Origin: http://example.com\r\n" +
	"Sec-WebSocket-Protocol: chat, superchat\r\n" +
	"Sec-WebSocket-Version: 13\r\n" +
	"\r\n"

const rfcAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

// browserRequest is what Chrome sends, compression offer included.
const browserRequest = "GET /ws?token=abc&room=7 HTTP/1.1\r\n" +
	"Host: push.example.com\r\n" +
	"Connection: Upgrade\r\n" +
	"Pragma: no-cache\r\n" +
	"Cache-Control: no-cache\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36\r\n" +
	"Upgrade: websocket\r\n" +
	"Origin: https://app.example.com\r\n" +
	"Sec-WebSocket-Version: 13\r\n" +
	"Accept-Encoding: gzip, deflate, br, zstd\r\n" +
	"Accept-Language: en-US,en;q=0.9\r\n" +
	"Cookie: session=0123456789abcdef; theme=dark\r\n" +
	"Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n" +
	"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" +
	"\r\n"

// request builds an upgrade request from the RFC sample, replacing, adding
// (name: value) or removing (name: with value "-") header lines.
func request(requestLine string, headers ...string) string {
	base := []string{
		"Host: server.example.com",
		"Upgrade: websocket",
		"Connection: Upgrade",
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
		"Sec-WebSocket-Version: 13",
	}
	for _, h := range headers {
		name, _, _ := strings.Cut(h, ":")
		replaced := false
		for i, b := range base {
			if bn, _, _ := strings.Cut(b, ":"); strings.EqualFold(bn, name) && !replaced {
				base[i] = h
				replaced = true
			}
		}
		if !replaced {
			base = append(base, h)
		}
	}
	var sb strings.Builder
	sb.WriteString(requestLine + "\r\n")
	for _, h := range base {
		if strings.HasSuffix(h, ": -") {
			continue
		}
		sb.WriteString(h + "\r\n")
	}
	sb.WriteString("\r\n")
	return sb.String()
}

func parse(t testing.TB, s string, opt ParseOptions) (Request, int, error) {
	t.Helper()
	var r Request
	n, err := ParseRequest([]byte(s), 0, &r, opt)
	return r, n, err
}

func TestParseRequestRFC(t *testing.T) {
	r, n, err := parse(t, rfcRequest+"trailing bytes", ParseOptions{})
	if err != nil || n != len(rfcRequest) {
		t.Fatalf("n %d err %v, want %d", n, err, len(rfcRequest))
	}
	want := Request{
		Method:            []byte("GET"),
		Path:              []byte("/chat"),
		Host:              []byte("server.example.com"),
		Origin:            []byte("http://example.com"),
		Key:               []byte("dGhlIHNhbXBsZSBub25jZQ=="),
		Version:           []byte("13"),
		seen:              fieldHost | fieldKey | fieldVersion | fieldOrigin,
		upgradeWebSocket:  true,
		connectionUpgrade: true,
		protocols:         [maxProtocolLines][]byte{[]byte("chat, superchat")},
		nProtocols:        1,
	}
	if !reflect.DeepEqual(r, want) {
		t.Fatalf("got  %+v\nwant %+v", r, want)
	}
	if err := r.Check(); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if got := AcceptKey(string(r.Key)); got != rfcAccept {
		t.Fatalf("AcceptKey %q, want %q", got, rfcAccept)
	}
	got := AppendAccept([]byte("x"), &r, true) // no offer: deflate is not accepted
	wantResp := "xHTTP/1.1 101 Switching Protocols\r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + rfcAccept + "\r\n\r\n"
	if string(got) != wantResp {
		t.Fatalf("AppendAccept:\n%q\nwant\n%q", got, wantResp)
	}
	// net/http reads the response the same way.
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(got[1:])), nil)
	if err != nil || resp.StatusCode != 101 || resp.Header.Get("Sec-WebSocket-Accept") != rfcAccept {
		t.Fatalf("net/http: %v %+v", err, resp)
	}
}

func TestParseRequestFields(t *testing.T) {
	r, n, err := parse(t, browserRequest, ParseOptions{Compression: true})
	if err != nil || n != len(browserRequest) {
		t.Fatalf("n %d err %v", n, err)
	}
	if err := r.Check(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, got, want string }{
		{"Path", string(r.Path), "/ws"},
		{"RawQuery", string(r.RawQuery), "token=abc&room=7"},
		{"Host", string(r.Host), "push.example.com"},
		{"Origin", string(r.Origin), "https://app.example.com"},
		{"Key", string(r.Key), "x3JJHMbDL1EzLkh9GBhXDw=="},
		{"Authorization", string(r.Authorization), ""},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if !r.Deflate {
		t.Errorf("Chrome's offer was declined")
	}
	r, _, err = parse(t, request("GET /a?b HTTP/1.1", "Authorization: Bearer  abc.def "), ParseOptions{})
	if err != nil || string(r.Authorization) != "Bearer  abc.def" || string(r.Path) != "/a" || string(r.RawQuery) != "b" {
		t.Errorf("%q %q %q %v", r.Authorization, r.Path, r.RawQuery, err)
	}
	r, _, err = parse(t, request("GET /? HTTP/1.1"), ParseOptions{})
	if err != nil || string(r.Path) != "/" || r.RawQuery == nil || len(r.RawQuery) != 0 {
		t.Errorf("empty query: %q %q %v", r.Path, r.RawQuery, err)
	}
	// The slices alias the input.
	in := []byte(rfcRequest)
	var rr Request
	if _, err := ParseRequest(in, 0, &rr, ParseOptions{}); err != nil {
		t.Fatal(err)
	}
	if &rr.Method[0] != &in[0] {
		t.Errorf("Method does not alias the input")
	}
}

// TestParseRequestIncremental delivers the request cut at every position:
// until the block is complete ParseRequest returns 0 and no error, after it
// the same request as when parsed at once, with and without scanned.
func TestParseRequestIncremental(t *testing.T) {
	for _, req := range []string{rfcRequest, browserRequest} {
		whole, wn, werr := parse(t, req, ParseOptions{Compression: true})
		if werr != nil {
			t.Fatal(werr)
		}
		in := []byte(req)
		for k := 0; k < len(in); k++ {
			var r Request
			if n, err := ParseRequest(in[:k], 0, &r, ParseOptions{Compression: true}); n != 0 || err != nil {
				t.Fatalf("prefix of %d bytes: n %d err %v", k, n, err)
			}
			for _, scanned := range []int{0, k} {
				n, err := ParseRequest(in, scanned, &r, ParseOptions{Compression: true})
				if n != wn || err != nil || !reflect.DeepEqual(r, whole) {
					t.Fatalf("after %d bytes, scanned %d: n %d err %v", k, scanned, n, err)
				}
			}
		}
		// Byte by byte, as Herald's session does: scanned is the length of
		// the previous attempt.
		scanned := 0
		for k := 1; k <= len(in); k++ {
			var r Request
			n, err := ParseRequest(in[:k], scanned, &r, ParseOptions{Compression: true})
			if err != nil {
				t.Fatal(err)
			}
			if k < len(in) {
				if n != 0 {
					t.Fatalf("complete after %d of %d bytes", k, len(in))
				}
				scanned = k
				continue
			}
			if n != wn || !reflect.DeepEqual(r, whole) {
				t.Fatalf("byte by byte: n %d", n)
			}
		}
	}
}

// TestParseRequestScanned shows ParseRequest trusts scanned: it resumes the
// search three bytes before it (a terminator may straddle the two reads) and
// does not look further back.
func TestParseRequestScanned(t *testing.T) {
	in := []byte(rfcRequest)
	var r Request
	for _, c := range []struct {
		scanned int
		n       int
	}{
		{len(in) - 4, len(in)},
		{len(in) - 1, len(in)}, // "\r\n\r" already seen, "\n" new
		{len(in), 0},           // claims the terminator was searched already
		{len(in) + 3, 0},
	} {
		n, err := ParseRequest(in, c.scanned, &r, ParseOptions{})
		if n != c.n || err != nil {
			t.Errorf("scanned %d: n %d err %v, want n %d", c.scanned, n, err, c.n)
		}
	}
}

func TestParseRequestTooLarge(t *testing.T) {
	head := "GET / HTTP/1.1\r\nHost: h\r\nX-Pad: "
	pad := func(total int) string { // a complete block of exactly total bytes
		return head + strings.Repeat("a", total-len(head)-4) + "\r\n\r\n"
	}
	for _, c := range []struct {
		name string
		in   string
		n    int
		err  error
	}{
		{"block of exactly MaxHeaderBytes", pad(MaxHeaderBytes), MaxHeaderBytes, nil},
		{"block one byte over", pad(MaxHeaderBytes + 1), 0, ErrHeaderTooLarge},
		{"block far over", pad(3 * MaxHeaderBytes), 0, ErrHeaderTooLarge},
		{"never completes, at the limit", head + strings.Repeat("a", MaxHeaderBytes-len(head)), 0, nil},
		{"never completes, one byte over", head + strings.Repeat("a", MaxHeaderBytes+1-len(head)), 0, ErrHeaderTooLarge},
		{"garbage without line ends", strings.Repeat("\x00", 100<<10), 0, ErrHeaderTooLarge},
	} {
		_, n, err := parse(t, c.in, ParseOptions{})
		if n != c.n || err != c.err {
			t.Errorf("%s: n %d err %v, want %d %v", c.name, n, err, c.n, c.err)
		}
		if c.err != nil && statusOf(err) != 431 {
			t.Errorf("%s: status %d", c.name, statusOf(err))
		}
	}
	// Split anywhere, an oversized block is refused once enough has arrived.
	in := []byte(pad(MaxHeaderBytes + 1))
	var r Request
	for _, k := range []int{100, MaxHeaderBytes, MaxHeaderBytes + 1} {
		n, err := ParseRequest(in[:k], 0, &r, ParseOptions{})
		wantErr := error(nil)
		if k > MaxHeaderBytes {
			wantErr = ErrHeaderTooLarge
		}
		if n != 0 || err != wantErr {
			t.Errorf("%d bytes: n %d err %v, want %v", k, n, err, wantErr)
		}
	}
}

func statusOf(err error) int {
	var he *HTTPError
	if errors.As(err, &he) {
		return he.Status
	}
	return 0
}

// TestParseRequestMalformed: syntax errors are answered 400 (505 would also
// do for versions, but the RFC requires only that the upgrade fails).
func TestParseRequestMalformed(t *testing.T) {
	for _, c := range []struct {
		name string
		in   string
		err  error
	}{
		{"HTTP/1.0", request("GET /chat HTTP/1.0"), ErrHTTPVersion},
		{"lower-case version", request("GET /chat http/1.1"), ErrMalformedRequest},
		{"version with junk", request("GET /chat HTTP/1.1x"), ErrMalformedRequest},
		{"no version", request("GET /chat"), ErrMalformedRequest},
		{"only a method", request("GET"), ErrMalformedRequest},
		{"empty request line", request(""), ErrMalformedRequest},
		{"double space", request("GET  /chat HTTP/1.1"), ErrMalformedRequest},
		{"four parts", request("GET /chat HTTP/1.1 extra"), ErrMalformedRequest},
		{"relative target", request("GET chat HTTP/1.1"), ErrMalformedRequest},
		{"absolute-form target", request("GET http://server.example.com/chat HTTP/1.1"), ErrMalformedRequest},
		{"asterisk target", request("OPTIONS * HTTP/1.1"), ErrMalformedRequest},
		{"header without colon", request("GET / HTTP/1.1", "NoColonHere"), ErrMalformedRequest},
		{"space in header name", request("GET / HTTP/1.1", "Bad Name: x"), ErrMalformedRequest},
		{"control byte in header name", request("GET / HTTP/1.1", "Bad\x01Name: x"), ErrMalformedRequest},
		{"obsolete line folding", request("GET / HTTP/1.1", "X-A: a", " folded"), ErrMalformedRequest},
		{"tab folding", request("GET / HTTP/1.1", "X-A: a", "\tfolded"), ErrMalformedRequest},
		// RFC 9112 section 5.1: whitespace between name and colon must be
		// answered with 400; it is how request smuggling starts.
		{"space before colon", request("GET / HTTP/1.1", "Host : other.example.com"), ErrMalformedRequest},
		{"tab before colon", request("GET / HTTP/1.1", "Sec-WebSocket-Key\t: dGhlIHNhbXBsZSBub25jZQ=="), ErrMalformedRequest},
		{"empty header name", request("GET / HTTP/1.1", ": value"), ErrMalformedRequest},
		// RFC 9110 section 5.5, RFC 9112 section 2.2: CR, LF and NUL inside
		// a line are invalid. A proxy that ends lines at a bare LF would see
		// a second Host header here.
		{"bare LF in a value", request("GET / HTTP/1.1", "X-A: a\nHost: evil.example.com"), ErrMalformedRequest},
		{"bare CR in a value", request("GET / HTTP/1.1", "Host: a\rb"), ErrMalformedRequest},
		{"NUL in a value", request("GET / HTTP/1.1", "Origin: http://a\x00.example.com"), ErrMalformedRequest},
		{"bare CR in the request line", request("GET /a\rb HTTP/1.1"), ErrMalformedRequest},
		{"bare LF ending the request line", "GET / HTTP/1.1\n" + rfcRequest[len("GET /chat HTTP/1.1\r\n"):], ErrMalformedRequest},
		{"leading CRLF", "\r\n" + rfcRequest, ErrMalformedRequest},
	} {
		_, n, err := parse(t, c.in, ParseOptions{})
		if n != 0 || err != c.err {
			t.Errorf("%s: n %d err %v, want %v", c.name, n, err, c.err)
		}
		if statusOf(err) != 400 {
			t.Errorf("%s: status %d, want 400", c.name, statusOf(err))
		}
	}
	// Accepted variations.
	for _, c := range []struct{ name, in string }{
		{"HTTP/1.2", request("GET /chat HTTP/1.2")},
		{"value with surrounding whitespace", request("GET / HTTP/1.1", "Host: \t h \t")},
		{"empty value", request("GET / HTTP/1.1", "X-Empty:")},
		{"colon in value", request("GET / HTTP/1.1", "X-Time: 12:30:00")},
	} {
		r, _, err := parse(t, c.in, ParseOptions{})
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
		} else if err := r.Check(); err != nil {
			t.Errorf("%s: Check %v", c.name, err)
		}
	}
}

func TestRequestCheck(t *testing.T) {
	for _, c := range []struct {
		name   string
		in     string
		err    error
		status int
	}{
		{"valid", request("GET /chat HTTP/1.1"), nil, 0},
		{"POST", request("POST /chat HTTP/1.1"), ErrMethodNotAllowed, 405},
		{"lower-case get", request("get /chat HTTP/1.1"), ErrMethodNotAllowed, 405},
		{"HEAD", request("HEAD /chat HTTP/1.1"), ErrMethodNotAllowed, 405},
		{"missing Host", request("GET / HTTP/1.1", "Host: -"), ErrMissingHost, 400},
		{"empty Host", request("GET / HTTP/1.1", "Host:"), ErrMissingHost, 400},
		{"missing Upgrade", request("GET / HTTP/1.1", "Upgrade: -"), ErrNotUpgrade, 426},
		{"Upgrade h2c", request("GET / HTTP/1.1", "Upgrade: h2c"), ErrNotUpgrade, 426},
		{"Upgrade websocketx", request("GET / HTTP/1.1", "Upgrade: websocketx"), ErrNotUpgrade, 426},
		{"missing Connection", request("GET / HTTP/1.1", "Connection: -"), ErrNotUpgrade, 426},
		{"Connection keep-alive", request("GET / HTTP/1.1", "Connection: keep-alive"), ErrNotUpgrade, 426},
		{"Connection upgraded", request("GET / HTTP/1.1", "Connection: upgraded"), ErrNotUpgrade, 426},
		{"missing version", request("GET / HTTP/1.1", "Sec-WebSocket-Version: -"), ErrUnsupportedVersion, 426},
		{"version 8", request("GET / HTTP/1.1", "Sec-WebSocket-Version: 8"), ErrUnsupportedVersion, 426},
		{"version 13, 8", request("GET / HTTP/1.1", "Sec-WebSocket-Version: 13, 8"), ErrUnsupportedVersion, 426},
		{"version 013", request("GET / HTTP/1.1", "Sec-WebSocket-Version: 013"), ErrUnsupportedVersion, 426},
		{"missing key", request("GET / HTTP/1.1", "Sec-WebSocket-Key: -"), ErrBadKey, 400},
		{"key not base64", request("GET / HTTP/1.1", "Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!=="), ErrBadKey, 400},
		{"key of 15 bytes", request("GET / HTTP/1.1", "Sec-WebSocket-Key: MDEyMzQ1Njc4OWFiY2Rl"), ErrBadKey, 400},
		{"key of 17 bytes", request("GET / HTTP/1.1", "Sec-WebSocket-Key: MDEyMzQ1Njc4OWFiY2RlZmc="), ErrBadKey, 400},
		{"key of 18 bytes", request("GET / HTTP/1.1", "Sec-WebSocket-Key: MDEyMzQ1Njc4OWFiY2RlZmdo"), ErrBadKey, 400},
		{"key without padding", request("GET / HTTP/1.1", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ"), ErrBadKey, 400},
		{"key with a space", request("GET / HTTP/1.1", "Sec-WebSocket-Key: dGhlIHNhbX BsZSBub25jZQ=="), ErrBadKey, 400},
		{"url-safe key", request("GET / HTTP/1.1", "Sec-WebSocket-Key: ____________________-w=="), ErrBadKey, 400},
		// Names are case-insensitive, token lists are comma-separated.
		{"mixed-case names", request("GET /chat HTTP/1.1", "hOsT: h", "upgrade: WebSocket", "CONNECTION: UPGRADE",
			"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==", "SEC-WEBSOCKET-VERSION: 13"), nil, 0},
		{"lower-case names, wrong key", request("GET /chat HTTP/1.1", "sec-websocket-key: AAAA"), ErrBadKey, 400},
		{"Connection token list", request("GET / HTTP/1.1", "Connection: keep-alive, Upgrade"), nil, 0},
		{"Connection token list without spaces", request("GET / HTTP/1.1", "Connection: keep-alive,upgrade,foo"), nil, 0},
		{"Connection token list with empty items", request("GET / HTTP/1.1", "Connection: , ,Upgrade ,"), nil, 0},
		{"Connection in two headers", request("GET / HTTP/1.1", "Connection: keep-alive", "Connection: Upgrade"), nil, 0},
		{"Upgrade token list", request("GET / HTTP/1.1", "Upgrade: h2c, WebSocket"), nil, 0},
	} {
		r, _, err := parse(t, c.in, ParseOptions{})
		if err != nil {
			t.Errorf("%s: ParseRequest %v", c.name, err)
			continue
		}
		err = r.Check()
		if err != c.err || statusOf(err) != c.status {
			t.Errorf("%s: Check %v (status %d), want %v", c.name, err, statusOf(err), c.err)
		}
	}
}

func TestNegotiateDeflate(t *testing.T) {
	const accept = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
	for _, c := range []struct {
		name    string
		headers []string
		deflate bool
		echo    bool // server_max_window_bits=15 in the response
		err     error
	}{
		{"no offer", nil, false, false, nil},
		{"plain offer", []string{"Sec-WebSocket-Extensions: permessage-deflate"}, true, false, nil},
		{"client_max_window_bits", []string{"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"}, true, false, nil},
		{"client_max_window_bits=10", []string{"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=10"}, true, false, nil},
		{"both no_context_takeover", []string{"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover"}, true, false, nil},
		{"server_max_window_bits=10", []string{"Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10"}, false, false, nil},
		{"server_max_window_bits=15", []string{"Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=15"}, true, true, nil},
		{"quoted server_max_window_bits=15", []string{`Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits="15"`}, true, true, nil},
		{"server_max_window_bits without value", []string{"Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits"}, false, false, nil},
		{"server_max_window_bits=16", []string{"Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=16"}, false, false, nil},
		{"client_max_window_bits=7", []string{"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=7"}, false, false, nil},
		{"unknown parameter", []string{"Sec-WebSocket-Extensions: permessage-deflate; foo=bar"}, false, false, nil},
		{"duplicate parameter", []string{"Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; client_no_context_takeover"}, false, false, nil},
		{"parameter with a value it must not have", []string{"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover=1"}, false, false, nil},
		{"second offer used", []string{"Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10, permessage-deflate"}, true, false, nil},
		{"second offer echoed", []string{"Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=9, permessage-deflate; server_max_window_bits=15"}, true, true, nil},
		{"first acceptable offer wins", []string{"Sec-WebSocket-Extensions: permessage-deflate, permessage-deflate; server_max_window_bits=15"}, true, false, nil},
		{"other extension first", []string{"Sec-WebSocket-Extensions: x-webkit-deflate-frame, permessage-deflate"}, true, false, nil},
		{"other extension only", []string{"Sec-WebSocket-Extensions: x-webkit-deflate-frame"}, false, false, nil},
		{"offer in a second header", []string{"Sec-WebSocket-Extensions: foo", "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=15"}, true, true, nil},
		{"case-insensitive header name", []string{"sec-websocket-extensions: permessage-deflate"}, true, false, nil},
		{"malformed list", []string{"Sec-WebSocket-Extensions: permessage-deflate;;"}, false, false, ErrBadExtensions},
		{"malformed parameter", []string{"Sec-WebSocket-Extensions: permessage-deflate; ="}, false, false, ErrBadExtensions},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := request("GET / HTTP/1.1", c.headers...)
			r, _, err := parse(t, in, ParseOptions{Compression: true})
			if err != nil {
				t.Fatal(err)
			}
			if r.Deflate != c.deflate {
				t.Fatalf("Deflate %v, want %v", r.Deflate, c.deflate)
			}
			if err := r.Check(); err != c.err {
				t.Fatalf("Check %v, want %v", err, c.err)
			}
			resp := string(AppendAccept(nil, &r, true))
			ext := ""
			if c.deflate {
				ext = "Sec-WebSocket-Extensions: " + accept
				if c.echo {
					ext += "; server_max_window_bits=15"
				}
				ext += "\r\n"
			}
			want := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + rfcAccept + "\r\n" + ext + "\r\n"
			if resp != want {
				t.Fatalf("response\n%q\nwant\n%q", resp, want)
			}
			// A server with compression off accepts nothing.
			if resp := string(AppendAccept(nil, &r, false)); strings.Contains(resp, "Extensions") {
				t.Fatalf("deflate=false response offers an extension: %q", resp)
			}
			// Without ParseOptions.Compression nothing is negotiated and a
			// malformed header is not even looked at.
			r2, _, _ := parse(t, in, ParseOptions{})
			if r2.Deflate || r2.Check() != nil {
				t.Fatalf("negotiated without Compression: Deflate %v Check %v", r2.Deflate, r2.Check())
			}
		})
	}
}

func TestAppendHTTPError(t *testing.T) {
	got := string(AppendHTTPError([]byte("x"), 426, ""))
	want := "xHTTP/1.1 426 Upgrade Required\r\n" +
		"Connection: close\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"Upgrade: websocket\r\n" +
		"Sec-WebSocket-Version: 13\r\n" +
		"Content-Length: 17\r\n" +
		"\r\n" +
		"Upgrade Required\n"
	if got != want {
		t.Fatalf("426:\n%q\nwant\n%q", got, want)
	}
	for _, c := range []struct {
		status  int
		body    string
		text    string
		headers map[string]string
		absent  []string
	}{
		{400, "", "Bad Request", nil, []string{"Allow", "Sec-WebSocket-Version", "Retry-After"}},
		{403, "origin not allowed", "Forbidden", nil, []string{"Allow"}},
		{404, "", "Not Found", nil, nil},
		{405, "", "Method Not Allowed", map[string]string{"Allow": "GET"}, []string{"Sec-WebSocket-Version"}},
		{426, "use WebSocket", "Upgrade Required", map[string]string{"Sec-WebSocket-Version": "13", "Upgrade": "websocket"}, []string{"Allow"}},
		{431, "", "Request Header Fields Too Large", nil, nil},
		{503, "κόσμε", "Service Unavailable", map[string]string{"Retry-After": "1"}, nil},
		{418, "", "Error", nil, nil},
	} {
		raw := AppendHTTPError(nil, c.status, c.body)
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), nil)
		if err != nil {
			t.Fatalf("%d: net/http: %v", c.status, err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%d: body: %v", c.status, err)
		}
		wantBody := c.body
		if wantBody == "" {
			wantBody = c.text
		}
		if resp.StatusCode != c.status || resp.Status != strconv.Itoa(c.status)+" "+c.text {
			t.Errorf("%d: status %q", c.status, resp.Status)
		}
		if string(body) != wantBody+"\n" || resp.ContentLength != int64(len(wantBody)+1) {
			t.Errorf("%d: body %q, Content-Length %d", c.status, body, resp.ContentLength)
		}
		if !bytes.HasSuffix(raw, []byte(wantBody+"\n")) || len(raw) != bytes.Index(raw, []byte("\r\n\r\n"))+4+len(wantBody)+1 {
			t.Errorf("%d: Content-Length does not frame the body exactly", c.status)
		}
		if !resp.Close || !bytes.Contains(raw, []byte("\r\nConnection: close\r\n")) {
			t.Errorf("%d: not Connection: close", c.status)
		}
		for k, v := range c.headers {
			if got := resp.Header.Get(k); got != v {
				t.Errorf("%d: %s = %q, want %q", c.status, k, got, v)
			}
		}
		for _, k := range c.absent {
			if _, ok := resp.Header[http.CanonicalHeaderKey(k)]; ok {
				t.Errorf("%d: unexpected %s header", c.status, k)
			}
		}
	}
	// Every parse and check error maps to a status AppendHTTPError names.
	for _, e := range []*HTTPError{ErrHeaderTooLarge, ErrMalformedRequest, ErrMethodNotAllowed, ErrHTTPVersion, ErrMissingHost,
		ErrNotUpgrade, ErrUnsupportedVersion, ErrBadKey, ErrBadExtensions} {
		if statusText(e.Status) == "Error" {
			t.Errorf("%v: status %d has no reason phrase", e, e.Status)
		}
	}
}

// referenceAccept computes Sec-WebSocket-Accept as RFC 6455 section 4.2.2
// spells it out.
func referenceAccept(key string) string {
	h := sha1.New()
	io.WriteString(h, key+"258EAFA5-E914-47DA-95CA-C5AB0DC85B11")
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// TestAppendAcceptKeys checks the accept key against the RFC sample and
// keys computed the long way.
func TestAppendAcceptKeys(t *testing.T) {
	if got := string(appendAcceptKey([]byte("pre"), []byte("dGhlIHNhbXBsZSBub25jZQ=="))); got != "pre"+rfcAccept {
		t.Fatalf("%q", got)
	}
	for _, key := range []string{"x3JJHMbDL1EzLkh9GBhXDw==", "AAAAAAAAAAAAAAAAAAAAAA==", "/////////////////////w=="} {
		if got, want := AcceptKey(key), referenceAccept(key); got != want {
			t.Errorf("AcceptKey(%q) = %q, want %q", key, got, want)
		}
	}
}
