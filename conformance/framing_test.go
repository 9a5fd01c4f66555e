package conformance_test

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/herald-ws/herald/internal/testutil"
	"github.com/herald-ws/herald/internal/wstest"
)

// TestFraming mirrors Autobahn 1.1, 1.2 and 9.1-9.2: text and binary
// messages at every length-encoding boundary and up to 8 MiB are echoed
// exactly, also when the frame reaches the server in small pieces.
func TestFraming(t *testing.T) {
	t.Parallel()
	addr := start(t, testutil.Options{})
	// Autobahn numbers the sizes up to 64 KiB in 1.1.x (text) and 1.2.x
	// (binary), the large ones in 9.1.x and 9.2.x.
	sizes := []struct {
		text, bin string
		n         int
	}{
		{"1.1.1", "1.2.1", 0}, {"1.1.2", "1.2.2", 125}, {"1.1.3", "1.2.3", 126},
		{"1.1.4", "1.2.4", 127}, {"1.1.5", "1.2.5", 128}, {"1.1.6", "1.2.6", 65535},
		{"1.1.7", "1.2.7", 65536}, {"9.1.3", "9.2.3", 1 << 20}, {"9.1.5", "9.2.5", 8 << 20},
	}
	var cases []scenario
	for _, sz := range sizes {
		cases = append(cases,
			scenario{name: fmt.Sprintf("%s text %s", sz.text, sizeName(sz.n)), do: do(echoSized(wstest.OpText, sz.n, 0))},
			scenario{name: fmt.Sprintf("%s binary %s", sz.bin, sizeName(sz.n)), do: do(echoSized(wstest.OpBinary, sz.n, 0))},
		)
	}
	chunked := []struct{ size, chunk int }{
		{0, 1}, {125, 1}, {126, 1}, {300, 1}, {125, 7}, {4096, 7}, {65536, 7},
		{70000, 997}, {1 << 20, 997}, {65536, 65535},
	}
	for _, ch := range chunked {
		cases = append(cases,
			scenario{name: fmt.Sprintf("1.1.8 text %s in %d-byte writes", sizeName(ch.size), ch.chunk),
				do: do(echoSized(wstest.OpText, ch.size, ch.chunk))},
			scenario{name: fmt.Sprintf("1.2.8 binary %s in %d-byte writes", sizeName(ch.size), ch.chunk),
				do: do(echoSized(wstest.OpBinary, ch.size, ch.chunk))},
		)
	}
	run(t, addr, cases)
}

// TestPingPong mirrors Autobahn 2.x.
func TestPingPong(t *testing.T) {
	t.Parallel()
	addr := start(t, testutil.Options{})
	bin := []byte{0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff}
	var tenPings []byte
	var tenPongs []action
	for i := range 10 {
		p := fmt.Appendf(nil, "ping %d", i)
		tenPings = append(tenPings, ping(p)...)
		tenPongs = append(tenPongs, wantPong(p))
	}
	run(t, addr, []scenario{
		{name: "2.1 empty ping", do: do(send(ping(nil)), wantPong(nil))},
		{name: "2.2 text ping", do: do(send(ping([]byte("Hello, world!"))), wantPong([]byte("Hello, world!")))},
		{name: "2.3 binary ping", do: do(send(ping(bin)), wantPong(bin))},
		{name: "2.4 125-byte ping", do: do(send(ping(binOf(125))), wantPong(binOf(125)))},
		{name: "2.5 126-byte ping", do: do(send(ping(binOf(126)))), close: closeProtocol},
		{name: "2.5 126-byte ping, header only", do: do(send(frame(true, 0, wstest.OpPing, nil, wstest.DeclaredLen(126)))), close: closeProtocol},
		{name: "2.6 125-byte ping bytewise", do: do(sendChunked(1, 100*time.Microsecond, ping(binOf(125))), wantPong(binOf(125)))},
		{name: "2.7 unsolicited empty pong", do: do(send(pong(nil)))},
		{name: "2.8 unsolicited pong with payload", do: do(send(pong([]byte("unsolicited pong payload"))))},
		{name: "2.9 unsolicited pong, then ping", do: do(send(pong([]byte("unsolicited")), ping([]byte("solicited"))), wantPong([]byte("solicited")))},
		{name: "2.10 ten pings", do: append(do(send(tenPings)), tenPongs...)},
		{name: "2.11 ten pings bytewise", do: append(do(sendChunked(1, 0, tenPings)), tenPongs...)},
		{name: "2.x ping between echoes", do: do(send(text("a"), ping([]byte("p")), text("b")), wantText("a"), wantPong([]byte("p")), wantText("b"))},
		{name: "5.1 fragmented ping", do: do(send(frame(false, 0, wstest.OpPing, []byte("frag")), cont(true, "ment"))), close: closeProtocol},
		{name: "5.1 ping without FIN alone", do: do(send(frame(false, 0, wstest.OpPing, nil))), close: closeProtocol},
		{name: "5.2 fragmented pong", do: do(send(frame(false, 0, wstest.OpPong, []byte("frag")), cont(true, "ment"))), close: closeProtocol},
		{name: "126-byte pong", do: do(send(pong(binOf(126)))), close: closeProtocol},
	})
}

// TestReservedBits mirrors Autobahn 3.x: any RSV bit without a negotiated
// extension fails the connection with 1002, after the echo of the message
// sent just before, and the ping after it is not answered.
func TestReservedBits(t *testing.T) {
	t.Parallel()
	addr := start(t, testutil.Options{})
	ops := []struct {
		op wstest.OpCode
		p  []byte
	}{
		{wstest.OpText, []byte("reserved")},
		{wstest.OpBinary, binOf(10)},
		{wstest.OpPing, []byte("reserved")},
		{wstest.OpPong, []byte("reserved")},
		{wstest.OpClose, wstest.ClosePayload(1000, "")},
	}
	var cases []scenario
	for _, o := range ops {
		for rsv := byte(1); rsv <= 7; rsv++ {
			cases = append(cases, scenario{
				name: fmt.Sprintf("3.x %s RSV=%d", o.op, rsv),
				do: do(send(text("before"), frame(true, rsv, o.op, o.p), ping([]byte("after"))),
					wantText("before")),
				close: closeProtocol,
			})
		}
	}
	cases = append(cases,
		scenario{name: "3.4 text RSV=4 bytewise", close: closeProtocol,
			// The bad frame is empty: the server fails it at its last byte, so
			// no write races the server's close.
			do: do(sendChunked(1, 0, text("before"), frame(true, wstest.RSV1, wstest.OpText, nil)), wantText("before"))},
		scenario{name: "3.x RSV=2 on a continuation", close: closeProtocol,
			do: do(send(frame(false, 0, wstest.OpText, []byte("a")), frame(true, wstest.RSV2, wstest.OpContinuation, []byte("b"))))},
		scenario{name: "3.x RSV=1 on the first fragment", close: closeProtocol,
			do: do(send(frame(false, wstest.RSV3, wstest.OpText, []byte("a")), cont(true, "b")))},
	)
	run(t, addr, cases)
}

// TestReservedOpcodes mirrors Autobahn 4.x.
func TestReservedOpcodes(t *testing.T) {
	t.Parallel()
	addr := start(t, testutil.Options{})
	var cases []scenario
	for _, op := range []wstest.OpCode{3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF} {
		group := "4.1"
		if op.IsControl() {
			group = "4.2"
		}
		for _, p := range [][]byte{nil, []byte("reserved opcode payload")} {
			cases = append(cases, scenario{
				name:  fmt.Sprintf("%s opcode %#x with %d-byte payload", group, byte(op), len(p)),
				do:    do(send(text("before"), frame(true, 0, op, p), ping([]byte("after"))), wantText("before")),
				close: closeProtocol,
			})
		}
	}
	cases = append(cases, scenario{name: "4.x reserved opcode inside a fragmented message", close: closeProtocol,
		do: do(send(frame(false, 0, wstest.OpText, []byte("a")), frame(true, 0, 5, []byte("b"))))})
	run(t, addr, cases)
}

// TestLengthsAndMasking covers RFC 6455 section 5.2's length rules (minimal
// encoding, 64-bit lengths with the top bit clear) and section 5.1's
// masking rule.
func TestLengthsAndMasking(t *testing.T) {
	t.Parallel()
	addr := start(t, testutil.Options{})
	nonMinimal := []struct {
		name string
		f    []byte
	}{
		{"1 byte in 16 bits", frame(true, 0, wstest.OpText, []byte("a"), wstest.Len16())},
		{"0 bytes in 16 bits", frame(true, 0, wstest.OpBinary, nil, wstest.Len16())},
		{"125 bytes in 16 bits", frame(true, 0, wstest.OpText, textOf(125), wstest.Len16())},
		{"1 byte in 64 bits", frame(true, 0, wstest.OpText, []byte("a"), wstest.Len64())},
		{"126 bytes in 64 bits", frame(true, 0, wstest.OpBinary, binOf(126), wstest.Len64())},
		{"65535 bytes in 64 bits", frame(true, 0, wstest.OpBinary, binOf(65535), wstest.Len64())},
		{"ping 5 bytes in 16 bits", frame(true, 0, wstest.OpPing, []byte("hello"), wstest.Len16())},
		{"continuation 1 byte in 64 bits", append(frame(false, 0, wstest.OpText, []byte("a")),
			frame(true, 0, wstest.OpContinuation, []byte("b"), wstest.Len64())...)},
	}
	var cases []scenario
	for _, nm := range nonMinimal {
		cases = append(cases, scenario{name: "non-minimal length: " + nm.name, close: closeProtocol,
			do: do(send(text("before"), nm.f), wantText("before"))})
	}
	for _, n := range []uint64{1 << 63, 1<<63 | 10, 1<<64 - 1} {
		cases = append(cases, scenario{name: fmt.Sprintf("64-bit length %#x", n), close: closeProtocol,
			do: do(send(text("before"), frame(true, 0, wstest.OpBinary, nil, wstest.DeclaredLen(n))), wantText("before"))})
	}
	for _, op := range []wstest.OpCode{wstest.OpText, wstest.OpBinary, wstest.OpPing, wstest.OpPong, wstest.OpClose, wstest.OpContinuation} {
		p := []byte("unmasked")
		if op == wstest.OpClose {
			p = wstest.ClosePayload(1000, "")
		}
		cases = append(cases, scenario{name: fmt.Sprintf("unmasked %s", op), close: closeProtocol,
			do: do(send(text("before"), frame(true, 0, op, p, wstest.Unmasked())), wantText("before"))})
	}
	cases = append(cases,
		scenario{name: "unmasked continuation of a masked first fragment", close: closeProtocol,
			do: do(send(frame(false, 0, wstest.OpText, []byte("a")), frame(true, 0, wstest.OpContinuation, []byte("b"), wstest.Unmasked())))},
		scenario{name: "all-zero mask key is still a mask", do: do(
			send(frame(true, 0, wstest.OpText, []byte("zero key"), wstest.WithMask([4]byte{}))), wantText("zero key"))},
	)
	run(t, addr, cases)
}

// TestBatchedFrames sends many complete frames in one write. Every reply
// must come back in order, and the raw bytes must be exactly the server
// frames expected: this exercises the path that answers a whole read with
// one write.
func TestBatchedFrames(t *testing.T) {
	t.Parallel()
	addr := start(t, testutil.Options{})
	cases := []struct {
		name  string
		count int
		size  func(i int) int
	}{
		{"100 small text messages", 100, func(int) int { return 0 }},
		{"50 mixed sizes", 50, func(i int) int { return []int{0, 125, 126, 1000, 65536, 70000}[i%6] }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := wstest.Dial(t, addr, "/echo", nil)
			var in, out []byte
			for i := range tc.count {
				op, p := wstest.OpText, fmt.Appendf(nil, "message %03d ", i)
				if n := tc.size(i); n > 0 {
					op, p = wstest.OpBinary, append(p, binOf(n)...)
				}
				if i%10 == 9 {
					in = append(in, ping(p[:min(len(p), 125)])...)
					out = append(out, serverFrame(wstest.OpPong, p[:min(len(p), 125)])...)
				}
				in = append(in, frame(true, 0, op, p)...)
				out = append(out, serverFrame(op, p)...)
			}
			c.Write(in)
			got := c.ReadRaw(len(out))
			if !bytes.Equal(got, out) {
				i := 0
				for i < len(got) && got[i] == out[i] {
					i++
				}
				t.Fatalf("replies differ from the expected %d bytes at byte %d", len(out), i)
			}
			c.Echo(wstest.OpText, []byte("still open"))
		})
	}
}

// echoSized sends one n-byte message of op, in chunk-byte writes when chunk
// is positive, and expects it back. The payload is built when the step
// runs, so that the table does not hold megabytes for its whole life.
func echoSized(op wstest.OpCode, n, chunk int) action {
	return func(c *wstest.Conn) {
		p := binOf(n)
		if op == wstest.OpText {
			p = textOf(n)
		}
		f := frame(true, 0, op, p)
		if chunk > 0 {
			c.WriteChunked(f, chunk, 0)
		} else {
			c.Write(f)
		}
		c.ExpectMessage(op, p)
	}
}

// serverFrame is what an RFC-conforming server sends for an unfragmented,
// uncompressed message: FIN, no mask, minimal length.
func serverFrame(op wstest.OpCode, p []byte) []byte {
	return wstest.EncodeFrame(true, 0, op, p, wstest.Unmasked())
}
