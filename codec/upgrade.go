package codec

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"strconv"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws/wsflate"
)

// MaxHeaderBytes is the largest request header block ParseRequest accepts;
// a larger one is answered with 431.
const MaxHeaderBytes = 8 << 10

// Request is a parsed upgrade request. Its byte slices alias the input given
// to ParseRequest and are valid only as long as that input is.
type Request struct {
	Method   []byte
	Path     []byte // request target up to '?'
	RawQuery []byte // after '?', without it
	Host     []byte
	Origin   []byte
	Key      []byte // Sec-WebSocket-Key
	Version  []byte // Sec-WebSocket-Version
	// Authorization is the raw Authorization header value.
	Authorization []byte

	upgradeWebSocket  bool // Upgrade header lists "websocket"
	connectionUpgrade bool // Connection header lists "upgrade"
	badExtensions     bool

	// Deflate reports whether the client offered permessage-deflate with
	// parameters Herald accepts (only filled when ParseOptions.Compression).
	Deflate bool
	// deflateWindowBits is the server_max_window_bits the client asked for,
	// echoed in the response; zero when it asked for none.
	deflateWindowBits wsflate.WindowBits
}

// ParseOptions controls what ParseRequest negotiates.
type ParseOptions struct {
	// Compression enables permessage-deflate negotiation.
	Compression bool
}

// ParseRequest parses the HTTP/1.1 request header block at the start of in.
// It returns n == 0 and a nil error while the block is incomplete (call again
// when more bytes arrive), and the length of the block once it is complete.
// scanned is how many bytes of in an earlier call already searched for the
// end of the block; it saves rescanning when the request trickles in byte by
// byte. Syntax errors come back as an *HTTPError; WebSocket-specific checks
// are left to Request.Check so that the caller can route first.
func ParseRequest(in []byte, scanned int, r *Request, opt ParseOptions) (n int, err error) {
	from := max(scanned-3, 0)
	end := bytes.Index(in[from:], crlfcrlf)
	if end < 0 {
		if len(in) > MaxHeaderBytes {
			return 0, ErrHeaderTooLarge
		}
		return 0, nil
	}
	end += from
	if end+4 > MaxHeaderBytes {
		return 0, ErrHeaderTooLarge
	}
	*r = Request{}
	block := in[:end+2] // keep the last line's CRLF
	// CR, LF and NUL may appear only as the CRLF that ends each line: RFC
	// 9110 section 5.5 has a recipient reject CR, LF and NUL in a field
	// value, and RFC 9112 section 2.2 a bare CR anywhere. Some proxies end
	// lines at a bare LF, so accepting one would let a header hide another.
	// (Counting single bytes is vectorised, cheaper than scanning each line.)
	lines := bytes.Count(block, crlf)
	if bytes.Count(block, cr) != lines || bytes.Count(block, lf) != lines || bytes.IndexByte(block, 0) >= 0 {
		return 0, ErrMalformedRequest
	}

	line, rest := nextLine(block)
	method, target, version := httphead.SplitRequestLine(line)
	if len(method) == 0 || len(target) == 0 || len(version) == 0 {
		return 0, ErrMalformedRequest
	}
	major, minor, ok := httphead.ParseVersion(version)
	if !ok {
		return 0, ErrMalformedRequest
	}
	if major < 1 || (major == 1 && minor < 1) {
		return 0, ErrHTTPVersion
	}
	r.Method = method
	if q := bytes.IndexByte(target, '?'); q >= 0 {
		r.Path, r.RawQuery = target[:q], target[q+1:]
	} else {
		r.Path = target
	}
	if len(r.Path) == 0 || r.Path[0] != '/' {
		// Absolute-form targets (http://host/path) are legal HTTP but no
		// WebSocket client sends them.
		return 0, ErrMalformedRequest
	}

	for len(rest) > 0 {
		line, rest = nextLine(rest)
		if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
			return 0, ErrMalformedRequest // obsolete line folding
		}
		k, v, ok := httphead.ParseHeaderLine(line)
		// ParseHeaderLine trims the name, but RFC 9112 section 5.1 has a
		// server answer whitespace between name and colon with 400 (proxies
		// disagree on such lines; it is how request smuggling starts), and a
		// name is at least one character. The line starts with the name (no
		// folding, checked above), so the colon must follow it directly.
		if !ok || len(k) == 0 || line[len(k)] != ':' {
			return 0, ErrMalformedRequest
		}
		switch {
		case equalFold(k, "Host"):
			r.Host = v
		case equalFold(k, "Upgrade"):
			r.upgradeWebSocket = r.upgradeWebSocket || hasToken(v, "websocket")
		case equalFold(k, "Connection"):
			r.connectionUpgrade = r.connectionUpgrade || hasToken(v, "upgrade")
		case equalFold(k, "Sec-WebSocket-Key"):
			r.Key = v
		case equalFold(k, "Sec-WebSocket-Version"):
			r.Version = v
		case equalFold(k, "Origin"):
			r.Origin = v
		case equalFold(k, "Authorization"):
			r.Authorization = v
		case equalFold(k, "Sec-WebSocket-Extensions"):
			if opt.Compression && !r.Deflate {
				r.negotiateDeflate(v)
			}
		}
	}
	return end + 4, nil
}

// Check applies the WebSocket-specific rules of RFC 6455 section 4.2.1 to a
// parsed request. It returns an *HTTPError for the first rule broken.
func (r *Request) Check() error {
	if !bytes.Equal(r.Method, []byte("GET")) {
		return ErrMethodNotAllowed
	}
	if len(r.Host) == 0 {
		return ErrMissingHost
	}
	if !r.upgradeWebSocket || !r.connectionUpgrade {
		return ErrNotUpgrade
	}
	if !bytes.Equal(r.Version, []byte("13")) {
		return ErrUnsupportedVersion
	}
	if !validKey(r.Key) {
		return ErrBadKey
	}
	if r.badExtensions {
		return ErrBadExtensions
	}
	return nil
}

// negotiateDeflate accepts the first permessage-deflate offer that Herald can
// honour without keeping per-connection compression state: the response
// always carries server_no_context_takeover and client_no_context_takeover,
// and an offer that limits the server's window below 2^15 is declined
// because compress/flate always uses a 32 KiB window.
func (r *Request) negotiateDeflate(header []byte) {
	var scratch [4]httphead.Option
	opts, ok := httphead.ParseOptions(header, scratch[:0])
	if !ok {
		r.badExtensions = true
		return
	}
	for _, o := range opts {
		if !bytes.Equal(o.Name, wsflate.ExtensionNameBytes) {
			continue
		}
		var p wsflate.Parameters
		if err := p.Parse(o); err != nil {
			continue // RFC 7692 section 7: decline a malformed offer
		}
		if p.ServerMaxWindowBits.Defined() && p.ServerMaxWindowBits != 15 {
			continue
		}
		r.Deflate = true
		r.deflateWindowBits = p.ServerMaxWindowBits
		return
	}
}

var (
	cr            = []byte("\r")
	lf            = []byte("\n")
	crlf          = []byte("\r\n")
	crlfcrlf      = []byte("\r\n\r\n")
	websocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
)

func nextLine(b []byte) (line, rest []byte) {
	i := bytes.Index(b, crlf)
	if i < 0 {
		return b, nil
	}
	return b[:i], b[i+2:]
}

// equalFold compares an ASCII header name without allocating.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c, d := b[i], s[i]
		if c|0x20 != d|0x20 {
			return false
		}
	}
	return true
}

// hasToken reports whether a comma-separated header value lists tok,
// compared case-insensitively.
func hasToken(v []byte, tok string) bool {
	for len(v) > 0 {
		var item []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			item, v = v[:i], v[i+1:]
		} else {
			item, v = v, nil
		}
		if equalFold(bytes.TrimSpace(item), tok) {
			return true
		}
	}
	return false
}

// validKey reports whether k is base64 of exactly 16 bytes.
func validKey(k []byte) bool {
	if len(k) != 24 || k[22] != '=' || k[23] != '=' {
		return false
	}
	var dst [18]byte
	n, err := base64.StdEncoding.Decode(dst[:], k)
	return err == nil && n == 16
}

// AppendAccept appends the 101 Switching Protocols response for r to dst.
// r must have passed Check. When deflate is true (the server enables
// compression and r.Deflate), the response accepts permessage-deflate.
func AppendAccept(dst []byte, r *Request, deflate bool) []byte {
	dst = append(dst, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
	dst = appendAcceptKey(dst, r.Key)
	if deflate && r.Deflate {
		dst = append(dst, "\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover"...)
		if r.deflateWindowBits.Defined() {
			dst = append(dst, "; server_max_window_bits=15"...)
		}
	}
	return append(dst, "\r\n\r\n"...)
}

// appendAcceptKey appends base64(SHA-1(key + GUID)) without allocating.
func appendAcceptKey(dst, key []byte) []byte {
	var buf [24 + 36]byte
	copy(buf[:24], key)
	copy(buf[24:], websocketGUID)
	sum := sha1.Sum(buf[:])
	var enc [28]byte
	base64.StdEncoding.Encode(enc[:], sum[:])
	return append(dst, enc[:]...)
}

// AcceptKey returns the Sec-WebSocket-Accept value for a client key.
func AcceptKey(key string) string {
	return string(appendAcceptKey(nil, []byte(key)))
}

// AppendHTTPError appends a complete HTTP/1.1 error response with a short
// plain-text body and Connection: close. A 426 carries
// Sec-WebSocket-Version: 13 and a 405 carries Allow: GET, as RFC 6455 and
// RFC 9110 ask.
func AppendHTTPError(dst []byte, status int, body string) []byte {
	text := statusText(status)
	if body == "" {
		body = text
	}
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(status), 10)
	dst = append(dst, ' ')
	dst = append(dst, text...)
	dst = append(dst, "\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n"...)
	switch status {
	case 426:
		dst = append(dst, "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"...)
	case 405:
		dst = append(dst, "Allow: GET\r\n"...)
	case 503:
		dst = append(dst, "Retry-After: 1\r\n"...)
	}
	dst = append(dst, "Content-Length: "...)
	dst = strconv.AppendInt(dst, int64(len(body)+1), 10)
	dst = append(dst, "\r\n\r\n"...)
	dst = append(dst, body...)
	return append(dst, '\n')
}

func statusText(status int) string {
	switch status {
	case 400:
		return "Bad Request"
	case 401:
		return "Unauthorized"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 405:
		return "Method Not Allowed"
	case 408:
		return "Request Timeout"
	case 426:
		return "Upgrade Required"
	case 429:
		return "Too Many Requests"
	case 431:
		return "Request Header Fields Too Large"
	case 500:
		return "Internal Server Error"
	case 503:
		return "Service Unavailable"
	}
	return "Error"
}
