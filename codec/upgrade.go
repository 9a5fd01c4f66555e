package codec

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"strconv"
	"strings"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws/wsflate"
)

// MaxHeaderBytes is the largest request header block ParseRequest accepts;
// a larger one is answered with 431.
const MaxHeaderBytes = 8 << 10

// MaxWindowBits is the largest LZ77 window of permessage-deflate, 2^15
// bytes, and the one a connection uses when its offer sets no limit.
const MaxWindowBits = 15

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
	// Subprotocol is the Sec-WebSocket-Protocol the application selected
	// (in session's Authorize) from those the client offered; AppendAccept
	// answers with it. Empty: none, which is the only right answer to a
	// client that offered none (RFC 6455 section 4.1).
	Subprotocol string
	// protocols are the Sec-WebSocket-Protocol field lines, already
	// checked to be lists of tokens (see OffersProtocol).
	protocols  [maxProtocolLines][]byte
	nProtocols uint8
	// LastEventID is the raw Last-Event-ID header value, which an
	// EventSource sends when it reconnects (Server-Sent Events).
	LastEventID []byte

	seen              fieldSet // singleton fields met so far
	upgradeWebSocket  bool     // Upgrade header lists "websocket"
	connectionUpgrade bool     // Connection header lists "upgrade"
	badExtensions     bool

	// Deflate reports whether the client offered permessage-deflate with
	// parameters Herald accepts (only filled when ParseOptions.Compression).
	Deflate bool
	// deflateWindowBits is the server_max_window_bits of the accepted
	// offer, echoed in the response; zero when it set none.
	deflateWindowBits wsflate.WindowBits
}

// ParseOptions controls what ParseRequest negotiates.
type ParseOptions struct {
	// Compression enables permessage-deflate negotiation.
	Compression bool
	// WindowBits accepts permessage-deflate offers that limit the server's
	// LZ77 window (server_max_window_bits=8..14). Without it such offers
	// are declined, as a caller that compresses with AppendMessage (a 32 KiB
	// window) could not honour them. A caller that sets it must compress
	// every message of the connection with AppendMessageWindow and
	// Request.DeflateWindowBits.
	WindowBits bool
}

// fieldSet records which header fields that may appear only once a request
// has carried, so that a repeat is refused (RFC 9112 section 3.2 for Host,
// RFC 6455 section 11.3 for the WebSocket fields, RFC 9110 section 5.3 for
// any field that is not a list).
type fieldSet uint8

const (
	fieldHost fieldSet = 1 << iota
	fieldKey
	fieldVersion
	fieldOrigin
	fieldAuthorization
	fieldContentLength
	fieldLastEventID
)

// ParseRequest parses the HTTP/1.1 request header block at the start of in.
// It returns n == 0 and a nil error while the block is incomplete (call again
// when more bytes arrive), and the length of the block once it is complete.
// scanned is how many bytes of in an earlier call already searched for the
// end of the block; it saves rescanning when the request trickles in byte by
// byte. Syntax errors come back as an *HTTPError; WebSocket-specific checks
// are left to Request.Check so that the caller can route first.
//
// The grammar is RFC 9112's, applied strictly because a WebSocket server
// reads the bytes after the header block as frames, and any disagreement
// with a proxy in front about where a request ends is a smuggling hole:
//
//   - request-line: method token, one SP, an origin-form target (starting
//     with '/', no CTL, space, '#' or non-ASCII byte), one SP, HTTP/1.x with
//     x >= 1. HTTP/1.0 is answered 400 (RFC 6455 needs 1.1); another major
//     version 505 (RFC 9110 section 15.6.6).
//   - field lines: a token name followed directly by ':' (whitespace before
//     the colon, obs-fold and empty names are 400), a value whose leading
//     and trailing OWS is trimmed and which holds no CTL but HTAB.
//   - Host, Sec-WebSocket-Key, Sec-WebSocket-Version, Origin,
//     Authorization, Content-Length and Last-Event-ID may appear once; a repeat is 400.
//     Connection, Upgrade, Sec-WebSocket-Protocol and
//     Sec-WebSocket-Extensions are lists, read as the comma-separated
//     concatenation of every line that carries them.
//   - a request with a body (Content-Length other than 0, or any
//     Transfer-Encoding) is 400, so no byte of a body is ever decoded as a
//     WebSocket frame.
//
// Visible ASCII characters that RFC 3986 leaves out of a target ("<>\^`{|}
// and the quote) are accepted, since browsers send them unescaped in a
// query (WHATWG URL), and a query's percent-escapes are not checked here:
// the application decodes the parameters it reads (see push's tokenOf).
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
	if err := r.parseRequestLine(line); err != nil {
		return 0, err
	}
	for len(rest) > 0 {
		line, rest = nextLine(rest)
		if err := r.parseField(line, opt); err != nil {
			return 0, err
		}
	}
	return end + 4, nil
}

// parseRequestLine reads method SP request-target SP HTTP-version.
func (r *Request) parseRequestLine(line []byte) error {
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 || !isToken(line[:sp]) {
		return ErrMalformedRequest
	}
	r.Method, line = line[:sp], line[sp+1:]
	sp = bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return ErrMalformedRequest
	}
	target, version := line[:sp], line[sp+1:]
	// Absolute-form targets (http://host/path), which RFC 9112 section
	// 3.2.2 has servers accept, are refused: no WebSocket client sends one,
	// and RFC 6455 section 4.1 has the client send origin-form.
	if target[0] != '/' {
		return ErrMalformedRequest
	}
	for _, c := range target {
		if !targetChar[c] {
			return ErrMalformedRequest
		}
	}
	if q := bytes.IndexByte(target, '?'); q >= 0 {
		r.Path, r.RawQuery = target[:q], target[q+1:]
	} else {
		r.Path = target
	}
	// HTTP-version = "HTTP/" DIGIT "." DIGIT, case-sensitive.
	if len(version) != 8 || !bytes.HasPrefix(version, []byte("HTTP/")) || version[6] != '.' ||
		!isDigit(version[5]) || !isDigit(version[7]) {
		return ErrMalformedRequest
	}
	switch major, minor := version[5], version[7]; {
	case major != '1':
		return ErrHTTPVersionNotSupported
	case minor == '0':
		return ErrHTTPVersion
	}
	return nil
}

// parseField reads one field line and records what Herald needs of it.
func (r *Request) parseField(line []byte, opt ParseOptions) error {
	colon := bytes.IndexByte(line, ':')
	// A line starting with SP or HTAB is obs-fold (RFC 9112 section 5.2),
	// and whitespace between name and colon must be answered with 400
	// (section 5.1; proxies disagree on such lines, which is how request
	// smuggling starts). Both fail the token check on the name.
	if colon <= 0 || !isToken(line[:colon]) {
		return ErrMalformedRequest
	}
	k, v := line[:colon], trimOWS(line[colon+1:])
	for _, c := range v {
		if !valueChar[c] {
			return ErrMalformedRequest
		}
	}
	switch {
	case equalFold(k, "Host"):
		if !r.once(fieldHost) {
			return ErrDuplicateField
		}
		if !validHost(v) {
			return ErrMalformedRequest
		}
		r.Host = v
	case equalFold(k, "Last-Event-ID"):
		if !r.once(fieldLastEventID) {
			return ErrDuplicateField
		}
		r.LastEventID = v
	case equalFold(k, "Upgrade"):
		ok, found := scanList(v, "websocket", isProtocol)
		if !ok {
			return ErrMalformedRequest
		}
		r.upgradeWebSocket = r.upgradeWebSocket || found
	case equalFold(k, "Connection"):
		ok, found := scanList(v, "upgrade", isToken)
		if !ok {
			return ErrMalformedRequest
		}
		r.connectionUpgrade = r.connectionUpgrade || found
	case equalFold(k, "Sec-WebSocket-Protocol"):
		if ok, _ := scanList(v, "", isToken); !ok {
			return ErrMalformedRequest
		}
		if int(r.nProtocols) == maxProtocolLines {
			return ErrMalformedRequest
		}
		r.protocols[r.nProtocols] = v
		r.nProtocols++
	case equalFold(k, "Sec-WebSocket-Key"):
		if !r.once(fieldKey) {
			return ErrDuplicateField
		}
		r.Key = v
	case equalFold(k, "Sec-WebSocket-Version"):
		if !r.once(fieldVersion) {
			return ErrDuplicateField
		}
		r.Version = v
	case equalFold(k, "Origin"):
		if !r.once(fieldOrigin) {
			return ErrDuplicateField
		}
		r.Origin = v
	case equalFold(k, "Authorization"):
		if !r.once(fieldAuthorization) {
			return ErrDuplicateField
		}
		r.Authorization = v
	case equalFold(k, "Content-Length"):
		if !r.once(fieldContentLength) {
			return ErrDuplicateField
		}
		if len(v) == 0 || len(bytes.Trim(v, "0")) != 0 {
			return ErrRequestBody
		}
	case equalFold(k, "Transfer-Encoding"):
		return ErrRequestBody
	case equalFold(k, "Sec-WebSocket-Extensions"):
		if opt.Compression {
			r.negotiateDeflate(v, opt.WindowBits)
		}
	}
	return nil
}

// once marks f as seen and reports whether it was not seen before.
func (r *Request) once(f fieldSet) bool {
	if r.seen&f != 0 {
		return false
	}
	r.seen |= f
	return true
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

// DeflateWindowBits is the base-2 logarithm of the LZ77 window the server
// may use for this connection's compressed messages: the
// server_max_window_bits of the accepted offer, or 15 when it set none. It
// is meaningful only when r.Deflate.
func (r *Request) DeflateWindowBits() int {
	if r.deflateWindowBits.Defined() {
		return int(r.deflateWindowBits)
	}
	return MaxWindowBits
}

// negotiateDeflate accepts the first permessage-deflate offer that Herald can
// honour without keeping per-connection compression state: the response
// always carries server_no_context_takeover and client_no_context_takeover.
// An offer that limits the server's window below 2^15 is accepted only with
// windowBits (see ParseOptions.WindowBits). client_max_window_bits needs no
// answer: the decoder inflates with a 32 KiB window, which reads any
// client window (RFC 7692 section 7.1.2.2 lets the server leave it out).
//
// Every Sec-WebSocket-Extensions line is checked for syntax, also after an
// offer was accepted: the lines form one list, and a malformed list is
// refused whole.
func (r *Request) negotiateDeflate(header []byte, windowBits bool) {
	var scratch [4]httphead.Option
	opts, ok := httphead.ParseOptions(header, scratch[:0])
	if !ok {
		r.badExtensions = true
		return
	}
	if r.Deflate {
		return
	}
	for _, o := range opts {
		if !bytes.Equal(o.Name, wsflate.ExtensionNameBytes) {
			continue
		}
		var p wsflate.Parameters
		if err := p.Parse(o); err != nil || leadingZeroBits(o) {
			continue // RFC 7692 section 7: decline a malformed offer
		}
		if p.ServerMaxWindowBits.Defined() && p.ServerMaxWindowBits != MaxWindowBits && !windowBits {
			continue
		}
		r.Deflate = true
		r.deflateWindowBits = p.ServerMaxWindowBits
		return
	}
}

// leadingZeroBits reports a *_max_window_bits value written with a leading
// zero, which RFC 7692 section 7.1.2 forbids and wsflate accepts.
func leadingZeroBits(o httphead.Option) bool {
	bad := false
	o.Parameters.ForEach(func(k, v []byte) bool {
		if bytes.HasSuffix(k, []byte("_max_window_bits")) && len(v) > 1 && v[0] == '0' {
			bad = true
		}
		return !bad
	})
	return bad
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

// Character classes of RFC 9110 section 5.6.2 (tchar), RFC 9110 section 5.5
// (field-vchar, SP, HTAB, obs-text) and the request target (see
// ParseRequest).
var tokenChar, valueChar, targetChar, hostChar [256]bool

func init() {
	for c := 0; c < 256; c++ {
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		tokenChar[c] = alnum || strings.IndexByte("!#$%&'*+-.^_`|~", byte(c)) >= 0
		valueChar[c] = c == '\t' || c >= 0x20 && c != 0x7f
		targetChar[c] = c > 0x20 && c < 0x7f && c != '#'
		// RFC 3986 host (reg-name, IPv4, IP-literal) and port.
		hostChar[c] = alnum || strings.IndexByte("-._~%!$&'()*+,;=:[]", byte(c)) >= 0
	}
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// isToken reports whether b is a non-empty RFC 9110 token.
func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tokenChar[c] {
			return false
		}
	}
	return true
}

// isProtocol reports whether b is an Upgrade protocol: token ["/" token]
// (RFC 9110 section 7.8).
func isProtocol(b []byte) bool {
	name, version, slash := bytes.Cut(b, []byte("/"))
	return isToken(name) && (!slash || isToken(version))
}

func validHost(v []byte) bool {
	for _, c := range v {
		if !hostChar[c] {
			return false
		}
	}
	return true
}

// trimOWS trims the optional whitespace (SP and HTAB) around a field value.
func trimOWS(v []byte) []byte {
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	return v
}

// scanList walks a comma-separated list value (RFC 9110 section 5.6.1),
// skipping empty elements as a recipient must. ok is false when an element
// fails valid; found reports whether an element equals want,
// case-insensitively.
func scanList(v []byte, want string, valid func([]byte) bool) (ok, found bool) {
	for len(v) > 0 {
		var item []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			item, v = v[:i], v[i+1:]
		} else {
			item, v = v, nil
		}
		item = trimOWS(item)
		if len(item) == 0 {
			continue
		}
		if !valid(item) {
			return false, false
		}
		found = found || equalFold(item, want)
	}
	return true, found
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

// maxProtocolLines is how many Sec-WebSocket-Protocol field lines a
// request may carry (each a list); a client sends one, and a bound keeps
// Request free of allocations. More is 400.
const maxProtocolLines = 4

// OffersProtocols reports whether the client offered any subprotocol.
func (r *Request) OffersProtocols() bool {
	for _, line := range r.protocols[:r.nProtocols] {
		if len(bytes.Trim(line, ", \t")) > 0 {
			return true
		}
	}
	return false
}

// OffersProtocol reports whether the client offered the subprotocol name.
// Names compare exactly: RFC 6455 section 11.3.4 makes them
// case-sensitive.
func (r *Request) OffersProtocol(name string) bool {
	if name == "" {
		return false
	}
	for _, line := range r.protocols[:r.nProtocols] {
		for len(line) > 0 {
			var item []byte
			item, line, _ = bytes.Cut(line, []byte(","))
			if string(trimOWS(item)) == name {
				return true
			}
		}
	}
	return false
}

// AppendAccept appends the 101 Switching Protocols response for r to dst.
// r must have passed Check. When deflate is true (the server enables
// compression and r.Deflate), the response accepts permessage-deflate.
func AppendAccept(dst []byte, r *Request, deflate bool) []byte {
	dst = append(dst, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
	dst = appendAcceptKey(dst, r.Key)
	if r.Subprotocol != "" {
		dst = append(dst, "\r\nSec-WebSocket-Protocol: "...)
		dst = append(dst, r.Subprotocol...)
	}
	if deflate && r.Deflate {
		dst = append(dst, "\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover"...)
		if r.deflateWindowBits.Defined() {
			// RFC 7692 section 7.1.2.1: an offer that carries
			// server_max_window_bits must be answered with it.
			dst = append(dst, "; server_max_window_bits="...)
			dst = strconv.AppendInt(dst, int64(r.deflateWindowBits), 10)
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
	case 505:
		return "HTTP Version Not Supported"
	}
	return "Error"
}
