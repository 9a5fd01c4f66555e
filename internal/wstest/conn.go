package wstest

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"syscall"
	"testing"
	"time"
)

// DefaultTimeout bounds every read and write of a Conn unless its Timeout
// field says otherwise.
const DefaultTimeout = 10 * time.Second

// maxFrame is the largest server frame ReadFrame accepts, so that a garbage
// length cannot make the test allocate gigabytes.
const maxFrame = 64 << 20

// NoStatus, given to ExpectClose, expects a close frame without a body.
const NoStatus = 1005

// Conn is a client connection under test. Its methods fail the test on any
// I/O error, timeout or protocol surprise.
type Conn struct {
	tb testing.TB
	// NetConn is the TCP connection, for tests that need it directly.
	NetConn net.Conn
	// R buffers what the server sends; it may hold frames that arrived in
	// the same segment as the 101 response.
	R *bufio.Reader
	// Response is the server's answer to the upgrade (nil before one).
	Response *http.Response
	// Timeout bounds each read and write; zero means DefaultTimeout.
	Timeout time.Duration
}

// DialTCP connects to addr without sending anything. The connection is
// closed when the test ends.
func DialTCP(tb testing.TB, addr string) *Conn {
	tb.Helper()
	nc, err := net.DialTimeout("tcp", addr, DefaultTimeout)
	if err != nil {
		tb.Fatalf("wstest: dial %s: %v", addr, err)
	}
	tb.Cleanup(func() { _ = nc.Close() })
	return &Conn{tb: tb, NetConn: nc, R: bufio.NewReaderSize(nc, 64<<10)}
}

// Dial connects to addr and upgrades to a WebSocket on path. header adds to
// or replaces the default upgrade headers (see UpgradeHeader); a key mapped
// to an empty slice removes that header. The test fails unless the server
// answers 101 with the right Sec-WebSocket-Accept.
func Dial(tb testing.TB, addr, path string, header http.Header) *Conn {
	tb.Helper()
	c := DialTCP(tb, addr)
	c.Upgrade(path, header)
	return c
}

// Upgrade sends an upgrade request for path on a connection from DialTCP
// and checks that the server answers 101 with the right accept key. It
// returns the response, also kept in c.Response.
func (c *Conn) Upgrade(path string, header http.Header) *http.Response {
	c.tb.Helper()
	key := NewKey()
	h := UpgradeHeader(c.NetConn.RemoteAddr().String(), key)
	MergeHeader(h, header)
	c.Write(RequestBytes("GET", path, h))
	resp := c.ReadResponse()
	CheckUpgrade(c.tb, resp, h.Get("Sec-WebSocket-Key"))
	return resp
}

// CheckUpgrade fails tb unless resp is a valid 101 answer to an upgrade
// request that sent key.
func CheckUpgrade(tb testing.TB, resp *http.Response, key string) {
	tb.Helper()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		tb.Fatalf("wstest: upgrade answered %s, want 101", resp.Status)
	}
	if !headerHasToken(resp.Header, "Upgrade", "websocket") {
		tb.Fatalf("wstest: 101 without Upgrade: websocket (got %q)", resp.Header.Values("Upgrade"))
	}
	if !headerHasToken(resp.Header, "Connection", "upgrade") {
		tb.Fatalf("wstest: 101 without Connection: Upgrade (got %q)", resp.Header.Values("Connection"))
	}
	if got, want := resp.Header.Get("Sec-WebSocket-Accept"), AcceptKey(key); got != want {
		tb.Fatalf("wstest: Sec-WebSocket-Accept = %q, want %q", got, want)
	}
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, item := range bytes.Split([]byte(v), []byte(",")) {
			if bytes.EqualFold(bytes.TrimSpace(item), []byte(token)) {
				return true
			}
		}
	}
	return false
}

// NewKey returns a fresh Sec-WebSocket-Key: 16 random bytes in base64.
func NewKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.StdEncoding.EncodeToString(b[:])
}

// AcceptKey computes Sec-WebSocket-Accept for key (RFC 6455 section 4.2.2)
// independently of the server's code.
func AcceptKey(key string) string {
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// UpgradeHeader returns the headers of a valid upgrade request to host
// with key.
func UpgradeHeader(host, key string) http.Header {
	return http.Header{
		"Host":                  {host},
		"Upgrade":               {"websocket"},
		"Connection":            {"Upgrade"},
		"Sec-Websocket-Key":     {key},
		"Sec-Websocket-Version": {"13"},
	}
}

// MergeHeader sets every header of extra in h, replacing what h had; a key
// mapped to an empty slice deletes it from h.
func MergeHeader(h, extra http.Header) {
	for k, vs := range extra {
		if len(vs) == 0 {
			h.Del(k)
			continue
		}
		h.Del(k)
		for _, v := range vs {
			h.Add(k, v)
		}
	}
}

// RequestBytes returns an HTTP/1.1 request line for method and target
// followed by h (Host first, the rest sorted) and the blank line.
func RequestBytes(method, target string, h http.Header) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\n", method, target)
	for _, v := range h.Values("Host") {
		fmt.Fprintf(&b, "Host: %s\r\n", v)
	}
	keys := make([]string, 0, len(h))
	for k := range h {
		if http.CanonicalHeaderKey(k) != "Host" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range h[k] {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

func (c *Conn) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultTimeout
}

func (c *Conn) readDeadline() {
	_ = c.NetConn.SetReadDeadline(time.Now().Add(c.timeout()))
}

// Write writes b with one call.
func (c *Conn) Write(b []byte) {
	c.tb.Helper()
	_ = c.NetConn.SetWriteDeadline(time.Now().Add(c.timeout()))
	if _, err := c.NetConn.Write(b); err != nil {
		c.tb.Fatalf("wstest: write %d bytes: %v", len(b), err)
	}
}

// WriteChunked writes b in pieces of size bytes, one write (one segment,
// since Go sets TCP_NODELAY) per piece, sleeping pause between pieces so
// that the server is likely to read each one on its own.
func (c *Conn) WriteChunked(b []byte, size int, pause time.Duration) {
	c.tb.Helper()
	if size <= 0 {
		size = 1
	}
	for len(b) > 0 {
		n := min(size, len(b))
		c.Write(b[:n])
		b = b[n:]
		if pause > 0 && len(b) > 0 {
			time.Sleep(pause)
		}
	}
}

// WriteBytewise writes b one byte per write, pausing between writes.
func (c *Conn) WriteBytewise(b []byte, pause time.Duration) { c.WriteChunked(b, 1, pause) }

// WriteFrame encodes one frame with EncodeFrame and writes it.
func (c *Conn) WriteFrame(fin bool, rsv byte, op OpCode, payload []byte, opts ...FrameOption) {
	c.tb.Helper()
	c.Write(EncodeFrame(fin, rsv, op, payload, opts...))
}

// WriteMessage writes payload as one unfragmented message.
func (c *Conn) WriteMessage(op OpCode, payload []byte) {
	c.tb.Helper()
	c.WriteFrame(true, 0, op, payload)
}

// ReadResponse reads an HTTP response (for an error, its body too).
func (c *Conn) ReadResponse() *http.Response {
	c.tb.Helper()
	c.readDeadline()
	resp, err := http.ReadResponse(c.R, nil)
	if err != nil {
		c.tb.Fatalf("wstest: reading HTTP response: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			c.tb.Fatalf("wstest: reading %s body: %v", resp.Status, err)
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
	}
	c.Response = resp
	return resp
}

// ExpectHTTPError reads a response, checks its status and Connection: close,
// and then that the server closes the connection. It returns the response,
// whose Body is the already-read body.
func (c *Conn) ExpectHTTPError(status int) *http.Response {
	c.tb.Helper()
	resp := c.ReadResponse()
	if resp.StatusCode != status {
		c.tb.Fatalf("wstest: got %s, want %d", resp.Status, status)
	}
	// net/http moves Connection: close from the header map to Close.
	if !resp.Close {
		c.tb.Errorf("wstest: %s without Connection: close", resp.Status)
	}
	c.ExpectEOF()
	return resp
}

// ReadFrame reads the next server frame. The test fails if it does not
// arrive in time, is masked, or encodes its length non-minimally.
func (c *Conn) ReadFrame() Frame {
	c.tb.Helper()
	f, err := c.TryReadFrame()
	if err != nil {
		c.tb.Fatalf("wstest: reading frame: %v", err)
	}
	return f
}

// TryReadFrame is ReadFrame returning its error instead of failing.
func (c *Conn) TryReadFrame() (Frame, error) {
	c.readDeadline()
	var hdr [10]byte
	if _, err := io.ReadFull(c.R, hdr[:2]); err != nil {
		return Frame{}, err
	}
	f := Frame{
		Fin:    hdr[0]&0x80 != 0,
		Rsv:    (hdr[0] >> 4) & 7,
		OpCode: OpCode(hdr[0] & 0x0f),
	}
	if hdr[1]&0x80 != 0 {
		return f, fmt.Errorf("server frame %s is masked (RFC 6455 section 5.1)", f.OpCode)
	}
	n := uint64(hdr[1] & 0x7f)
	switch n {
	case 126:
		if _, err := io.ReadFull(c.R, hdr[2:4]); err != nil {
			return f, err
		}
		n = uint64(binary.BigEndian.Uint16(hdr[2:4]))
		if n < 126 {
			return f, fmt.Errorf("server frame length %d in 16-bit form", n)
		}
	case 127:
		if _, err := io.ReadFull(c.R, hdr[2:10]); err != nil {
			return f, err
		}
		n = binary.BigEndian.Uint64(hdr[2:10])
		if n <= 0xffff {
			return f, fmt.Errorf("server frame length %d in 64-bit form", n)
		}
	}
	if n > maxFrame {
		return f, fmt.Errorf("server frame of %d bytes", n)
	}
	f.Payload = make([]byte, n)
	if _, err := io.ReadFull(c.R, f.Payload); err != nil {
		return f, fmt.Errorf("payload of %s frame (%d bytes): %w", f.OpCode, n, err)
	}
	return f, nil
}

// Message is one data message the server sent.
type Message struct {
	OpCode OpCode
	// Payload is as received: still compressed when Compressed.
	Payload []byte
	// Compressed reports RSV1 on the first frame (permessage-deflate).
	Compressed bool
	Frames     int
}

// ReadMessage reads one whole, possibly fragmented, data message. Any
// control frame before or inside it fails the test.
func (c *Conn) ReadMessage() Message {
	c.tb.Helper()
	f := c.ReadFrame()
	if f.OpCode != OpText && f.OpCode != OpBinary {
		c.tb.Fatalf("wstest: want a text or binary frame, got %v", f)
	}
	if f.Rsv&^RSV1 != 0 {
		c.tb.Fatalf("wstest: server frame with RSV2/RSV3: %v", f)
	}
	m := Message{OpCode: f.OpCode, Payload: f.Payload, Compressed: f.Rsv&RSV1 != 0, Frames: 1}
	for !f.Fin {
		f = c.ReadFrame()
		if f.OpCode != OpContinuation || f.Rsv != 0 {
			c.tb.Fatalf("wstest: want a continuation frame, got %v", f)
		}
		m.Payload = append(m.Payload, f.Payload...)
		m.Frames++
	}
	return m
}

// ExpectMessage reads one message and checks that it is an uncompressed
// op message carrying exactly payload.
func (c *Conn) ExpectMessage(op OpCode, payload []byte) {
	c.tb.Helper()
	m := c.ReadMessage()
	if m.Compressed {
		c.tb.Fatalf("wstest: got a compressed message, want an uncompressed one")
	}
	checkPayload(c.tb, m.OpCode, m.Payload, op, payload)
}

// ReadMessageInflated reads one whole message and, when it is compressed,
// inflates its payload (Compressed stays true to say so).
func (c *Conn) ReadMessageInflated() Message {
	c.tb.Helper()
	m := c.ReadMessage()
	if m.Compressed {
		p, err := Inflate(m.Payload)
		if err != nil {
			c.tb.Fatalf("wstest: compressed %s message of %d bytes: %v", m.OpCode, len(m.Payload), err)
		}
		m.Payload = p
	}
	return m
}

// ExpectInflated reads one message and checks that it is a compressed op
// message that inflates to exactly payload.
func (c *Conn) ExpectInflated(op OpCode, payload []byte) {
	c.tb.Helper()
	m := c.ReadMessageInflated()
	if !m.Compressed {
		c.tb.Fatalf("wstest: got an uncompressed %s message of %d bytes, want a compressed one", m.OpCode, len(m.Payload))
	}
	checkPayload(c.tb, m.OpCode, m.Payload, op, payload)
}

// Echo sends payload as one op message and expects it back unchanged.
func (c *Conn) Echo(op OpCode, payload []byte) {
	c.tb.Helper()
	c.WriteMessage(op, payload)
	c.ExpectMessage(op, payload)
}

// ExpectFrame reads one frame and checks that it is a final, RSV-free op
// frame carrying exactly payload (use it for pongs).
func (c *Conn) ExpectFrame(op OpCode, payload []byte) {
	c.tb.Helper()
	f := c.ReadFrame()
	if !f.Fin || f.Rsv != 0 {
		c.tb.Fatalf("wstest: want a final frame without RSV bits, got %v", f)
	}
	checkPayload(c.tb, f.OpCode, f.Payload, op, payload)
}

func checkPayload(tb testing.TB, gotOp OpCode, got []byte, op OpCode, want []byte) {
	tb.Helper()
	if gotOp != op {
		tb.Fatalf("wstest: got a %s frame (%d bytes), want %s", gotOp, len(got), op)
	}
	if !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && i < len(want) && got[i] == want[i] {
			i++
		}
		tb.Fatalf("wstest: %s payload differs: got %d bytes, want %d, first difference at byte %d", op, len(got), len(want), i)
	}
}

// ExpectClose reads the server's close frame and checks its status code
// (NoStatus: no body), then that the server closes TCP. Any other frame
// before the close fails the test, so a case can prove that something was
// not echoed or answered.
func (c *Conn) ExpectClose(code int) {
	c.tb.Helper()
	f := c.ReadFrame()
	if f.OpCode != OpClose {
		c.tb.Fatalf("wstest: want a close frame with %d, got %v", code, f)
	}
	if !f.Fin || f.Rsv != 0 {
		c.tb.Fatalf("wstest: malformed close frame %v", f)
	}
	got := NoStatus
	switch len(f.Payload) {
	case 0:
	case 1:
		c.tb.Fatalf("wstest: close frame with a 1-byte body")
	default:
		got = int(binary.BigEndian.Uint16(f.Payload))
	}
	if got != code {
		c.tb.Fatalf("wstest: close code %d (reason %q), want %d", got, f.Payload[min(2, len(f.Payload)):], code)
	}
	c.ExpectEOF()
}

// ExpectEOF checks that the server closes the connection with a FIN
// within the timeout, sending nothing more. A reset fails: it means the
// server closed with unread input, and a client may then lose the bytes
// the server sent last (its close frame or HTTP error).
func (c *Conn) ExpectEOF() {
	c.tb.Helper()
	c.readDeadline()
	var b [512]byte
	n, err := c.R.Read(b[:])
	switch {
	case n > 0:
		c.tb.Fatalf("wstest: want the server to close, got %d more bytes %q", n, b[:n])
	case errors.Is(err, io.EOF):
	case errors.Is(err, syscall.ECONNRESET):
		c.tb.Fatalf("wstest: the server reset the connection instead of closing it")
	case err == nil:
		c.tb.Fatalf("wstest: empty read while waiting for the server to close")
	default:
		c.tb.Fatalf("wstest: want the server to close the connection: %v", err)
	}
}

// ReadRaw reads exactly n bytes as they come from the server, frames or not.
func (c *Conn) ReadRaw(n int) []byte {
	c.tb.Helper()
	c.readDeadline()
	b := make([]byte, n)
	if _, err := io.ReadFull(c.R, b); err != nil {
		c.tb.Fatalf("wstest: reading %d raw bytes: %v", n, err)
	}
	return b
}

// Fatalf fails the test c belongs to, for checks made outside this package.
func (c *Conn) Fatalf(format string, args ...any) {
	c.tb.Helper()
	c.tb.Fatalf(format, args...)
}

// Close closes the TCP connection without a closing handshake.
func (c *Conn) Close() { _ = c.NetConn.Close() }
