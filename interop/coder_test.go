package interop

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/herald-ws/herald/internal/testutil"
)

// dialCoder connects to /echo on a server started with o, recording the
// wire. opts may be nil. The returned context bounds the whole test.
func dialCoder(t *testing.T, o testutil.Options, opts *websocket.DialOptions) (context.Context, *websocket.Conn, *http.Response, *tap) {
	t.Helper()
	srv := testutil.Start(t, o)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	if opts == nil {
		opts = &websocket.DialOptions{}
	}
	taps := &tapDialer{}
	opts.HTTPClient = &http.Client{Transport: &http.Transport{DialContext: taps.DialContext}}
	c, resp, err := websocket.Dial(ctx, testutil.URL(srv, "/echo"), opts)
	if err != nil {
		t.Fatalf("coder dial: %v", err)
	}
	t.Cleanup(func() { _ = c.CloseNow() })
	c.SetReadLimit(4 << 20)
	return ctx, c, resp, taps.only(t)
}

func coderEcho(t *testing.T, ctx context.Context, c *websocket.Conn, what string, typ websocket.MessageType, payload []byte) {
	t.Helper()
	if err := c.Write(ctx, typ, payload); err != nil {
		t.Fatalf("%s: write: %v", what, err)
	}
	coderExpect(t, ctx, c, what, typ, payload)
}

func coderExpect(t *testing.T, ctx context.Context, c *websocket.Conn, what string, typ websocket.MessageType, payload []byte) {
	t.Helper()
	gotTyp, got, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("%s: read: %v", what, err)
	}
	if gotTyp != typ {
		t.Fatalf("%s: echoed %v, sent %v", what, gotTyp, typ)
	}
	sameBytes(t, what, got, payload)
}

func TestCoderText(t *testing.T) {
	t.Parallel()
	ctx, c, _, _ := dialCoder(t, testutil.Options{}, nil)
	for _, s := range []string{
		"hello, herald",
		"",
		"h\u00e9llo w\u00f6rld \u2713 \U0001F680 \u4f60\u597d",
		strings.Repeat("x", 125),
		strings.Repeat("y", 126),
		strings.Repeat("z", 70_000),
	} {
		coderEcho(t, ctx, c, fmt.Sprintf("text of %d bytes", len(s)), websocket.MessageText, []byte(s))
	}
}

func TestCoderBinary(t *testing.T) {
	t.Parallel()
	ctx, c, _, _ := dialCoder(t, testutil.Options{}, nil)
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	for _, p := range [][]byte{all, {}, {0}, randomBytes(65535, 1), randomBytes(65536, 2), randomBytes(200_000, 3)} {
		coderEcho(t, ctx, c, fmt.Sprintf("binary of %d bytes", len(p)), websocket.MessageBinary, p)
	}
}

// TestCoderFragmented writes through c.Writer, which sends one frame per
// Write call; the wire record proves it.
func TestCoderFragmented(t *testing.T) {
	t.Parallel()
	ctx, c, _, w := dialCoder(t, testutil.Options{}, nil)

	text := []byte("fragmented text: \u20ac " + strings.Repeat("abcdefghij", 30))
	cut := strings.Index(string(text), "\u20ac") + 1 // split the euro sign
	coderWriteChunks(t, ctx, c, websocket.MessageText, [][]byte{text[:cut], text[cut : cut+50], text[cut+50 : cut+51], text[cut+51:]})
	coderExpect(t, ctx, c, "fragmented text", websocket.MessageText, text)

	bin := randomBytes(200_000, 4)
	coderWriteChunks(t, ctx, c, websocket.MessageBinary, [][]byte{bin[:1], bin[1:70_001], bin[70_001:140_001], bin[140_001:]})
	coderExpect(t, ctx, c, "fragmented binary", websocket.MessageBinary, bin)

	coderEcho(t, ctx, c, "text after fragments", websocket.MessageText, []byte("after"))

	r := w.report(t)
	if n := maxFrames(r.sentMsgs, opText); n < 4 {
		t.Fatalf("coder sent the fragmented text in %d frames, want at least 4", n)
	}
	if n := maxFrames(r.sentMsgs, opBinary); n < 4 {
		t.Fatalf("coder sent the fragmented binary in %d frames, want at least 4", n)
	}
}

func coderWriteChunks(t *testing.T, ctx context.Context, c *websocket.Conn, typ websocket.MessageType, chunks [][]byte) {
	t.Helper()
	wr, err := c.Writer(ctx, typ)
	if err != nil {
		t.Fatalf("Writer: %v", err)
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

func TestCoderLargeMessage(t *testing.T) {
	t.Parallel()
	ctx, c, _, _ := dialCoder(t, testutil.Options{}, nil)
	coderEcho(t, ctx, c, "1 MiB binary", websocket.MessageBinary, randomBytes(1<<20, 5))
	coderEcho(t, ctx, c, "1 MiB text", websocket.MessageText, randomText(1<<20, 6))
}

func TestCoderPipelined(t *testing.T) {
	t.Parallel()
	ctx, c, _, _ := dialCoder(t, testutil.Options{}, nil)
	type msg struct {
		typ     websocket.MessageType
		payload []byte
	}
	var sent []msg
	for i := range 100 {
		m := msg{websocket.MessageText, []byte(strings.Repeat(fmt.Sprintf("message %d ", i), 1+i%40))}
		if i%3 == 0 {
			m = msg{websocket.MessageBinary, randomBytes(1+i*97%5000, uint64(i))}
		}
		sent = append(sent, m)
		if err := c.Write(ctx, m.typ, m.payload); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	for i, m := range sent {
		coderExpect(t, ctx, c, fmt.Sprintf("pipelined message %d", i), m.typ, m.payload)
	}
}

// TestCoderPing uses c.Ping, which waits for the pong whose payload matches
// its ping; coder only processes control frames while someone reads, so a
// reader goroutine runs meanwhile.
func TestCoderPing(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var pongs []string
	opts := &websocket.DialOptions{OnPongReceived: func(_ context.Context, p []byte) {
		mu.Lock()
		pongs = append(pongs, string(p))
		mu.Unlock()
	}}
	ctx, c, _, _ := dialCoder(t, testutil.Options{}, opts)

	type read struct {
		typ websocket.MessageType
		p   []byte
		err error
	}
	reads := make(chan read, 1)
	go func() {
		typ, p, err := c.Read(ctx)
		reads <- read{typ, p, err}
	}()
	for i := range 3 {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := c.Ping(pctx)
		cancel()
		if err != nil {
			t.Fatalf("ping %d: %v", i, err)
		}
	}
	if err := c.Write(ctx, websocket.MessageText, []byte("after pings")); err != nil {
		t.Fatalf("write: %v", err)
	}
	r := <-reads
	if r.err != nil || r.typ != websocket.MessageText || string(r.p) != "after pings" {
		t.Fatalf("echo after pings: %v %q %v", r.typ, r.p, r.err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"1", "2", "3"}; !slices.Equal(pongs, want) {
		t.Fatalf("pong payloads %q, want %q (coder numbers its pings)", pongs, want)
	}
}

func TestCoderClose(t *testing.T) {
	t.Parallel()
	ctx, c, _, w := dialCoder(t, testutil.Options{}, nil)
	coderEcho(t, ctx, c, "text before close", websocket.MessageText, []byte("bye soon"))
	// Close returns nil only when the server answered with the same code.
	if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatalf("close handshake: %v", err)
	}
	r := w.report(t)
	if code, ok := lastClose(r.received); !ok || code != 1000 {
		t.Fatalf("server's last close frame: code %d (found %v), want 1000", code, ok)
	}
	if last := r.received[len(r.received)-1]; last.op != opClose {
		t.Fatalf("server sent opcode %#x after its close frame", last.op)
	}
}

// TestCoderMessageTooBig: see tooBigCases. coder fails the connection on a
// write error, so it reads the 1009 only if the server let it finish writing.
func TestCoderMessageTooBig(t *testing.T) {
	t.Parallel()
	for _, tc := range tooBigCases {
		t.Run(tc.name, func(t *testing.T) {
			o := testutil.Options{MaxMessageSize: tooBigLimit, Compression: tc.deflate}
			mode := websocket.CompressionDisabled
			if tc.deflate {
				mode = websocket.CompressionNoContextTakeover
			}
			ctx, c, _, _ := dialCoder(t, o, &websocket.DialOptions{CompressionMode: mode})
			coderEcho(t, ctx, c, "message at the limit", websocket.MessageBinary, make([]byte, tooBigLimit))
			if err := c.Write(ctx, websocket.MessageBinary, make([]byte, tc.size)); err != nil {
				t.Fatalf("writing the oversized message: %v; the server closed the socket before reading the rest of the message, so the client never sees close 1009", err)
			}
			_, _, err := c.Read(ctx)
			if got := websocket.CloseStatus(err); got != websocket.StatusMessageTooBig {
				t.Fatalf("oversized message: %v (status %v), want close 1009", err, got)
			}
		})
	}
}

// TestCoderCompression covers both of coder's modes. Herald keeps no
// compression state between messages, so it answers a context-takeover
// offer with client_no_context_takeover and server_no_context_takeover, and
// coder must fall back to compressing each message on its own.
func TestCoderCompression(t *testing.T) {
	t.Parallel()
	for _, mode := range []websocket.CompressionMode{websocket.CompressionNoContextTakeover, websocket.CompressionContextTakeover} {
		t.Run(fmt.Sprintf("mode=%v", mode), func(t *testing.T) {
			o := testutil.Options{Compression: true, CompressionMinSize: 0}
			// Threshold 1 makes coder compress everything but empty messages.
			ctx, c, resp, w := dialCoder(t, o, &websocket.DialOptions{CompressionMode: mode, CompressionThreshold: 1})
			ext := resp.Header.Get("Sec-WebSocket-Extensions")
			for _, p := range []string{"permessage-deflate", "server_no_context_takeover", "client_no_context_takeover"} {
				if !strings.Contains(ext, p) {
					t.Fatalf("Sec-WebSocket-Extensions %q lacks %s", ext, p)
				}
			}
			for _, k := range payloadKinds {
				typ := websocket.MessageBinary
				if k.text {
					typ = websocket.MessageText
				}
				for _, n := range payloadSizes {
					coderEcho(t, ctx, c, fmt.Sprintf("%s %d B", k.name, n), typ, k.gen(n))
				}
			}
			// The same payload twice: with context takeover wrongly kept,
			// the second copy would be a back-reference the server's
			// fresh inflater cannot resolve.
			rep := compressible(5000)
			coderEcho(t, ctx, c, "repeat 1", websocket.MessageText, rep)
			coderEcho(t, ctx, c, "repeat 2", websocket.MessageText, rep)

			r := w.report(t)
			for i, m := range r.sentMsgs {
				if !m.rsv1 && m.size > 0 {
					t.Fatalf("coder sent message %d uncompressed (%+v); the test would not exercise inflation", i, m)
				}
			}
			for i, m := range r.receivedMsgs {
				if !m.rsv1 {
					t.Fatalf("server echoed message %d uncompressed (%+v) with CompressionMinSize 0", i, m)
				}
			}
			if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
				t.Fatalf("close: %v", err)
			}
		})
	}
}
