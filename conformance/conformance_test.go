// Package conformance_test is Herald's own RFC 6455 / RFC 7692 conformance
// suite. It groups cases the way the Autobahn TestSuite does (1.x framing,
// 2.x pings, 3.x reserved bits, 4.x opcodes, 5.x fragmentation, 6.x UTF-8,
// 7.x closing, 9.x limits, 12.x/13.x compression) plus the opening
// handshake, and runs each against a real server on port 0 whose /echo
// route echoes every message, through wstest's raw-socket client. Every case
// asserts the exact echo or the exact close code.
//
// Case names start with the Autobahn case they mirror where there is one.
package conformance_test

import (
	"bytes"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/herald-ws/herald/internal/testutil"
	"github.com/herald-ws/herald/internal/wstest"
)

const (
	closeNormal     = 1000
	closeProtocol   = 1002
	closeInvalidUTF = 1007
	closeTooBig     = 1009
)

// start runs a server with o for the test and its subtests and returns its
// address.
func start(t *testing.T, o testutil.Options) string {
	t.Helper()
	return testutil.Start(t, o).Addr().String()
}

// action is one step of a scenario: something sent or something expected.
type action func(c *wstest.Conn)

// scenario is a conversation on a fresh /echo connection. After its steps
// the server must have closed with close, or, when close is 0, still echo.
type scenario struct {
	name   string
	header http.Header // extra upgrade headers
	do     []action
	close  int
}

// run runs every scenario as a parallel subtest against addr.
func run(t *testing.T, addr string, cases []scenario) {
	t.Helper()
	for _, sc := range cases {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			c := wstest.Dial(t, addr, "/echo", sc.header)
			converse(c, sc)
		})
	}
}

// converse plays sc on c and checks how it ends.
func converse(c *wstest.Conn, sc scenario) {
	for _, a := range sc.do {
		a(c)
	}
	if sc.close != 0 {
		c.ExpectClose(sc.close)
		return
	}
	// A compressed connection may answer compressed; either way the
	// message must come back intact.
	c.WriteMessage(wstest.OpText, []byte("still open"))
	if m := c.ReadMessageInflated(); m.OpCode != wstest.OpText || string(m.Payload) != "still open" {
		c.Fatalf("want the %q echo, got a %s message %q", "still open", m.OpCode, m.Payload)
	}
}

// do is a shorthand for a scenario's step list.
func do(a ...action) []action { return a }

// send writes the frames with one write, so the server most likely reads
// them together.
func send(frames ...[]byte) action {
	b := bytes.Join(frames, nil)
	return func(c *wstest.Conn) { c.Write(b) }
}

// sendChunked writes the frames, concatenated, in size-byte writes with a
// pause between them.
func sendChunked(size int, pause time.Duration, frames ...[]byte) action {
	b := bytes.Join(frames, nil)
	return func(c *wstest.Conn) { c.WriteChunked(b, size, pause) }
}

// sendEach writes each frame with its own write, pausing between them.
func sendEach(frames ...[]byte) action {
	return func(c *wstest.Conn) {
		for i, f := range frames {
			if i > 0 {
				time.Sleep(time.Millisecond)
			}
			c.Write(f)
		}
	}
}

// want expects one uncompressed data message.
func want(op wstest.OpCode, p []byte) action {
	return func(c *wstest.Conn) { c.ExpectMessage(op, p) }
}

func wantText(s string) action { return want(wstest.OpText, []byte(s)) }

// wantPong expects one pong frame carrying p.
func wantPong(p []byte) action {
	return func(c *wstest.Conn) { c.ExpectFrame(wstest.OpPong, p) }
}

// Frame builders; every client frame is masked unless options say not.
func frame(fin bool, rsv byte, op wstest.OpCode, p []byte, opts ...wstest.FrameOption) []byte {
	return wstest.EncodeFrame(fin, rsv, op, p, opts...)
}

func text(s string) []byte   { return frame(true, 0, wstest.OpText, []byte(s)) }
func binary(p []byte) []byte { return frame(true, 0, wstest.OpBinary, p) }
func ping(p []byte) []byte   { return frame(true, 0, wstest.OpPing, p) }
func pong(p []byte) []byte   { return frame(true, 0, wstest.OpPong, p) }
func emptyClose() []byte     { return frame(true, 0, wstest.OpClose, nil) }
func cont(fin bool, s string) []byte {
	return frame(fin, 0, wstest.OpContinuation, []byte(s))
}
func closeFrame(code uint16, reason string) []byte {
	return frame(true, 0, wstest.OpClose, wstest.ClosePayload(code, reason))
}

// textOf returns n bytes of ASCII text.
func textOf(n int) []byte {
	const pattern = "Hello, Herald! 0123456789 abcdefghijklmnopqrstuvwxyz. "
	b := make([]byte, n)
	for i := range b {
		b[i] = pattern[i%len(pattern)]
	}
	return b
}

// binOf returns n bytes using every byte value, in a pattern that does not
// repeat at any power-of-two stride.
func binOf(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*31 + i>>8 + i>>16)
	}
	return b
}

func sizeName(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}
