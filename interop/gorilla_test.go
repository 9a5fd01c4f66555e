package interop

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/herald-ws/herald/internal/testutil"
)

// dialGorilla connects d (nil: a default dialer) to /echo on a server
// started with o, recording the wire.
func dialGorilla(t *testing.T, o testutil.Options, d *websocket.Dialer) (*websocket.Conn, *http.Response, *tap) {
	t.Helper()
	srv := testutil.Start(t, o)
	if d == nil {
		d = &websocket.Dialer{}
	}
	taps := &tapDialer{}
	d.NetDialContext = taps.DialContext
	d.HandshakeTimeout = 5 * time.Second
	c, resp, err := d.Dial(testutil.URL(srv, "/echo"), nil)
	if err != nil {
		t.Fatalf("gorilla dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	// Every test here finishes in well under this; a hung read fails
	// instead of stalling the package.
	deadline := time.Now().Add(30 * time.Second)
	_ = c.SetReadDeadline(deadline)
	_ = c.SetWriteDeadline(deadline)
	return c, resp, taps.only(t)
}

// gorillaEcho sends one message and checks the echo's opcode and bytes.
func gorillaEcho(t *testing.T, c *websocket.Conn, what string, op int, payload []byte) {
	t.Helper()
	if err := c.WriteMessage(op, payload); err != nil {
		t.Fatalf("%s: write: %v", what, err)
	}
	gorillaExpect(t, c, what, op, payload)
}

func gorillaExpect(t *testing.T, c *websocket.Conn, what string, op int, payload []byte) {
	t.Helper()
	gotOp, got, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("%s: read: %v", what, err)
	}
	if gotOp != op {
		t.Fatalf("%s: echoed opcode %d, sent %d", what, gotOp, op)
	}
	sameBytes(t, what, got, payload)
}

func TestGorillaText(t *testing.T) {
	t.Parallel()
	c, _, w := dialGorilla(t, testutil.Options{}, nil)
	for _, s := range []string{
		"hello, herald",
		"",
		"h\u00e9llo w\u00f6rld \u2713 \U0001F680 \u4f60\u597d",
		strings.Repeat("x", 125),
		strings.Repeat("y", 126),
		strings.Repeat("z", 70_000),
	} {
		gorillaEcho(t, c, fmt.Sprintf("text of %d bytes", len(s)), websocket.TextMessage, []byte(s))
	}
	r := w.report(t)
	for _, m := range r.receivedMsgs {
		if m.op != opText || m.rsv1 || m.frames != 1 {
			t.Fatalf("server framed a text echo as %+v, want one uncompressed text frame", m)
		}
	}
}

func TestGorillaBinary(t *testing.T) {
	t.Parallel()
	c, _, _ := dialGorilla(t, testutil.Options{}, nil)
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	for _, p := range [][]byte{all, {}, {0}, randomBytes(65535, 1), randomBytes(65536, 2), randomBytes(200_000, 3)} {
		gorillaEcho(t, c, fmt.Sprintf("binary of %d bytes", len(p)), websocket.BinaryMessage, p)
	}
}

// TestGorillaFragmented writes messages through NextWriter in several
// chunks. gorilla buffers a message until its write buffer is full, so a
// 64-byte buffer makes it emit one frame per 64 bytes; the wire record
// proves the server really received fragments.
func TestGorillaFragmented(t *testing.T) {
	t.Parallel()
	c, _, w := dialGorilla(t, testutil.Options{}, &websocket.Dialer{WriteBufferSize: 64})

	// The euro sign straddles the first chunk boundary, so UTF-8 must be
	// validated across fragments.
	text := []byte("fragmented text: \u20ac " + strings.Repeat("abcdefghij", 30))
	cut := strings.Index(string(text), "\u20ac") + 1
	chunks := [][]byte{text[:cut], text[cut : cut+50], text[cut+50 : cut+51], text[cut+51:]}
	writeChunks(t, c, websocket.TextMessage, chunks)
	gorillaExpect(t, c, "fragmented text", websocket.TextMessage, text)

	bin := randomBytes(1000, 4)
	writeChunks(t, c, websocket.BinaryMessage, [][]byte{bin[:1], bin[1:500], bin[500:]})
	gorillaExpect(t, c, "fragmented binary", websocket.BinaryMessage, bin)

	// An unfragmented message after fragmented ones still works.
	gorillaEcho(t, c, "text after fragments", websocket.TextMessage, []byte("after"))

	r := w.report(t)
	if n := maxFrames(r.sentMsgs, opText); n < 4 {
		t.Fatalf("gorilla sent the fragmented text in %d frames, want at least 4", n)
	}
	if n := maxFrames(r.sentMsgs, opBinary); n < 4 {
		t.Fatalf("gorilla sent the fragmented binary in %d frames, want at least 4", n)
	}
}

func writeChunks(t *testing.T, c *websocket.Conn, op int, chunks [][]byte) {
	t.Helper()
	wr, err := c.NextWriter(op)
	if err != nil {
		t.Fatalf("NextWriter: %v", err)
	}
	for _, ch := range chunks {
		if _, err := wr.Write(ch); err != nil {
			t.Fatalf("write chunk: %v", err)
		}
	}
	if err := wr.Close(); err != nil {
		t.Fatalf("close writer: %v", err)
	}
}

func TestGorillaLargeMessage(t *testing.T) {
	t.Parallel()
	c, _, _ := dialGorilla(t, testutil.Options{}, nil)
	gorillaEcho(t, c, "1 MiB binary", websocket.BinaryMessage, randomBytes(1<<20, 5))
	gorillaEcho(t, c, "1 MiB text", websocket.TextMessage, randomText(1<<20, 6))
}

func TestGorillaPipelined(t *testing.T) {
	t.Parallel()
	c, _, _ := dialGorilla(t, testutil.Options{}, nil)
	type msg struct {
		op      int
		payload []byte
	}
	var sent []msg
	for i := range 100 {
		m := msg{websocket.TextMessage, []byte(strings.Repeat(fmt.Sprintf("message %d ", i), 1+i%40))}
		if i%3 == 0 {
			m = msg{websocket.BinaryMessage, randomBytes(1+i*97%5000, uint64(i))}
		}
		sent = append(sent, m)
		if err := c.WriteMessage(m.op, m.payload); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	for i, m := range sent {
		gorillaExpect(t, c, fmt.Sprintf("pipelined message %d", i), m.op, m.payload)
	}
}

func TestGorillaPingPong(t *testing.T) {
	t.Parallel()
	c, _, _ := dialGorilla(t, testutil.Options{}, nil)
	var pongs []string
	c.SetPongHandler(func(data string) error {
		pongs = append(pongs, data)
		return nil
	})
	deadline := time.Now().Add(5 * time.Second)
	for _, p := range []string{"are you there?", "", strings.Repeat("p", 125)} {
		if err := c.WriteControl(websocket.PingMessage, []byte(p), deadline); err != nil {
			t.Fatalf("ping: %v", err)
		}
	}
	// The pongs precede the echo, and gorilla runs the handler while it
	// reads towards the next message.
	gorillaEcho(t, c, "text after pings", websocket.TextMessage, []byte("after pings"))
	want := []string{"are you there?", "", strings.Repeat("p", 125)}
	if !slices.Equal(pongs, want) {
		t.Fatalf("pong payloads %q, want %q", pongs, want)
	}
}

func TestGorillaClose(t *testing.T) {
	t.Parallel()
	c, _, w := dialGorilla(t, testutil.Options{}, nil)
	gorillaEcho(t, c, "text before close", websocket.TextMessage, []byte("bye soon"))
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye")
	if err := c.WriteMessage(websocket.CloseMessage, msg); err != nil {
		t.Fatalf("write close: %v", err)
	}
	_, _, err := c.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) {
		t.Fatalf("read after close: %v, want a close frame", err)
	}
	if ce.Code != websocket.CloseNormalClosure {
		t.Fatalf("server answered close with %d %q, want 1000", ce.Code, ce.Text)
	}
	// After the handshake the server must drop the TCP connection itself
	// (RFC 6455 section 7.1.1: the server closes first).
	nc := c.NetConn()
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := nc.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("after the close handshake: read %d bytes, %v; want EOF", n, err)
	}
	r := w.report(t)
	if code, ok := lastClose(r.received); !ok || code != 1000 {
		t.Fatalf("server's last close frame: code %d (found %v), want 1000", code, ok)
	}
	if last := r.received[len(r.received)-1]; last.op != opClose {
		t.Fatalf("server sent opcode %#x after its close frame", last.op)
	}
}

// tooBigCases are messages over a 64 KiB MaxMessageSize that the server
// must answer with close 1009. The client must be able to finish writing
// its message and then read that close frame: a server that closes the
// socket while the rest of the message is still arriving makes the kernel
// answer with RST, the client's write fails with EPIPE or ECONNRESET, and a
// client that treats that as fatal never learns the close code.
var tooBigCases = []struct {
	name    string
	deflate bool
	size    int
}{
	{"plain-one-byte-over", false, 64<<10 + 1},
	{"plain-1MiB", false, 1 << 20},
	// Zeros deflate about 1000:1: a frame far below the limit that
	// inflates past it.
	{"deflate-1MiB-zeros", true, 1 << 20},
}

const tooBigLimit = 64 << 10

// TestGorillaMessageTooBig checks that a message over MaxMessageSize, plain
// or compressed, is answered with close 1009 that the client gets to read.
func TestGorillaMessageTooBig(t *testing.T) {
	t.Parallel()
	for _, tc := range tooBigCases {
		t.Run(tc.name, func(t *testing.T) {
			o := testutil.Options{MaxMessageSize: tooBigLimit, Compression: tc.deflate}
			c, _, _ := dialGorilla(t, o, &websocket.Dialer{EnableCompression: tc.deflate})
			gorillaEcho(t, c, "message at the limit", websocket.BinaryMessage, make([]byte, tooBigLimit))
			if err := c.WriteMessage(websocket.BinaryMessage, make([]byte, tc.size)); err != nil {
				t.Errorf("writing the oversized message: %v; the server closed the socket before reading the rest of the message", err)
			}
			_, _, err := c.ReadMessage()
			if !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
				t.Fatalf("oversized message: %v, want close 1009", err)
			}
		})
	}
}

func TestGorillaCompression(t *testing.T) {
	t.Parallel()
	o := testutil.Options{Compression: true, CompressionMinSize: 0}
	c, resp, w := dialGorilla(t, o, &websocket.Dialer{EnableCompression: true})
	ext := resp.Header.Get("Sec-WebSocket-Extensions")
	if !strings.HasPrefix(ext, "permessage-deflate") || !strings.Contains(ext, "server_no_context_takeover") {
		t.Fatalf("Sec-WebSocket-Extensions %q: want permessage-deflate with server_no_context_takeover", ext)
	}
	for _, k := range payloadKinds {
		op := websocket.BinaryMessage
		if k.text {
			op = websocket.TextMessage
		}
		for _, n := range payloadSizes {
			gorillaEcho(t, c, fmt.Sprintf("%s %d B", k.name, n), op, k.gen(n))
		}
	}

	// A compressed message in several frames: gorilla's compressor writes
	// through the same 4 KiB write buffer, so 100 kB of noise spans frames.
	noise := randomBytes(100_000, 7)
	writeChunks(t, c, websocket.BinaryMessage, [][]byte{noise[:10], noise[10:50_000], noise[50_000:]})
	gorillaExpect(t, c, "fragmented compressed binary", websocket.BinaryMessage, noise)

	r := w.report(t)
	for i, m := range r.sentMsgs {
		if !m.rsv1 {
			t.Fatalf("gorilla sent message %d uncompressed (%+v); the test would not exercise inflation", i, m)
		}
	}
	if last := r.sentMsgs[len(r.sentMsgs)-1]; last.frames < 2 {
		t.Fatalf("the fragmented compressed message went out in %d frame", last.frames)
	}
	for i, m := range r.receivedMsgs {
		if !m.rsv1 {
			t.Fatalf("server echoed message %d uncompressed (%+v) with CompressionMinSize 0", i, m)
		}
	}
}

// TestGorillaCompressionDeclined checks that a server without compression
// ignores gorilla's offer and both sides then send plain frames.
func TestGorillaCompressionDeclined(t *testing.T) {
	t.Parallel()
	c, resp, w := dialGorilla(t, testutil.Options{}, &websocket.Dialer{EnableCompression: true})
	if ext := resp.Header.Get("Sec-WebSocket-Extensions"); ext != "" {
		t.Fatalf("server without compression answered Sec-WebSocket-Extensions %q", ext)
	}
	gorillaEcho(t, c, "text", websocket.TextMessage, compressible(10_000))
	r := w.report(t)
	for _, m := range append(r.sentMsgs, r.receivedMsgs...) {
		if m.rsv1 {
			t.Fatalf("compressed message %+v on a connection without deflate", m)
		}
	}
}
