package conformance_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/herald-ws/herald/internal/testutil"
	"github.com/herald-ws/herald/internal/wstest"
)

// TestFragmentation mirrors Autobahn 5.x: fragmented messages are echoed as
// one message, control frames may interleave with fragments, and
// continuation frames must continue something.
func TestFragmentation(t *testing.T) {
	t.Parallel()
	addr := start(t, testutil.Options{})
	first := frame(false, 0, wstest.OpText, []byte("fragment1"))
	last := cont(true, "fragment2")
	cases := []scenario{
		{name: "5.3 text in 2 fragments", do: do(send(first, last), wantText("fragment1fragment2"))},
		{name: "5.4 text in 2 fragments, separate writes", do: do(sendEach(first, last), wantText("fragment1fragment2"))},
		{name: "5.5 text in 2 fragments bytewise", do: do(sendChunked(1, 0, first, last), wantText("fragment1fragment2"))},
		{name: "5.6 text, ping between fragments", do: do(send(first, ping([]byte("ping payload")), last),
			wantPong([]byte("ping payload")), wantText("fragment1fragment2"))},
		{name: "5.7 text, ping between fragments, separate writes", do: do(sendEach(first, ping([]byte("ping payload")), last),
			wantPong([]byte("ping payload")), wantText("fragment1fragment2"))},
		{name: "5.8 text, ping between fragments, bytewise", do: do(sendChunked(1, 0, first, ping([]byte("ping payload")), last),
			wantPong([]byte("ping payload")), wantText("fragment1fragment2"))},
		{name: "5.x ping answered while the message is unfinished", do: do(
			send(first, ping([]byte("mid-message"))), wantPong([]byte("mid-message")),
			send(cont(false, "-middle-")), send(ping([]byte("again"))), wantPong([]byte("again")),
			send(last), wantText("fragment1-middle-fragment2"))},
		{name: "5.x pong between fragments", do: do(send(first, pong([]byte("unsolicited")), last), wantText("fragment1fragment2"))},
		{name: "5.x close between fragments", do: do(send(first, closeFrame(1000, "bye"))), close: closeNormal},
		{name: "5.9 continuation with nothing to continue, FIN", do: do(send(cont(true, "non-continuation payload"), text("Hello, world!"))), close: closeProtocol},
		{name: "5.10 same, bytewise", do: do(sendChunked(1, 0, cont(true, ""))), close: closeProtocol},
		{name: "5.11 same, after an echo", do: do(send(text("before"), cont(true, "x")), wantText("before")), close: closeProtocol},
		{name: "5.12 continuation with nothing to continue, no FIN", do: do(send(cont(false, "non-continuation payload"), text("Hello, world!"))), close: closeProtocol},
		{name: "5.13 continuation with nothing to continue, no FIN, bytewise", do: do(sendChunked(1, 0, cont(false, ""))), close: closeProtocol},
		{name: "5.15 message, then a stray continuation", close: closeProtocol,
			do: do(send(first, last, cont(false, "fragment3"), text("fragment4")), wantText("fragment1fragment2"))},
		{name: "5.17 continuation after a finished message", close: closeProtocol,
			do: do(send(text("done"), cont(true, "late")), wantText("done"))},
		{name: "5.18 new text frame while fragmented", do: do(send(first, text("fragment2"))), close: closeProtocol},
		{name: "5.18 new binary first frame while fragmented", do: do(send(first, frame(false, 0, wstest.OpBinary, []byte("x")))), close: closeProtocol},
		{name: "5.19 five fragments with pings, separate writes", do: do(
			sendEach(frame(false, 0, wstest.OpText, []byte("f1")), cont(false, "f2"), ping([]byte("p1"))), wantPong([]byte("p1")),
			sendEach(cont(false, "f3"), cont(false, "f4"), ping([]byte("p2"))), wantPong([]byte("p2")),
			send(cont(true, "f5")), wantText("f1f2f3f4f5"))},
		{name: "5.x empty fragments", do: do(send(frame(false, 0, wstest.OpText, nil), cont(false, ""), cont(true, "")), wantText(""))},
		{name: "5.x empty first and last fragments", do: do(send(frame(false, 0, wstest.OpText, nil), cont(false, "abc"), cont(true, "")), wantText("abc"))},
		{name: "5.x empty binary fragments bytewise", do: do(sendChunked(1, 0, frame(false, 0, wstest.OpBinary, nil), cont(true, "")), want(wstest.OpBinary, []byte{}))},
		{name: "5.x two fragmented messages back to back", do: do(send(first, last, frame(false, 0, wstest.OpBinary, []byte{1}), frame(true, 0, wstest.OpContinuation, []byte{2})),
			wantText("fragment1fragment2"), want(wstest.OpBinary, []byte{1, 2}))},
		{name: "5.x close between fragments needs no continuation", do: do(send(frame(false, 0, wstest.OpBinary, binOf(1000)), emptyClose())), close: closeNormal},
	}
	// Many fragments, text and binary, in one write and in separate writes.
	for _, n := range []int{2, 3, 10, 100, 1000} {
		msg := textOf(10 * n)
		cases = append(cases,
			scenario{name: fmt.Sprintf("5.x text in %d fragments", n),
				do: do(send(wstest.Fragments(wstest.OpText, 0, msg, 10)), want(wstest.OpText, msg))},
			scenario{name: fmt.Sprintf("5.x binary in %d fragments", n),
				do: do(send(wstest.Fragments(wstest.OpBinary, 0, binOf(10*n), 10)), want(wstest.OpBinary, binOf(10*n)))},
		)
	}
	big := binOf(3 << 20)
	cases = append(cases,
		scenario{name: "5.x 3 MiB binary in 64 KiB fragments", do: do(send(wstest.Fragments(wstest.OpBinary, 0, big, 64<<10)), want(wstest.OpBinary, big))},
		scenario{name: "5.x fragments of 1 byte, 125 bytes, 64 KiB", do: do(send(
			frame(false, 0, wstest.OpText, []byte("a")), cont(false, strings.Repeat("b", 125)), cont(true, strings.Repeat("c", 64<<10))),
			wantText("a"+strings.Repeat("b", 125)+strings.Repeat("c", 64<<10)))},
	)
	run(t, addr, cases)
}
