package conformance_test

import (
	"math/rand/v2"
	"testing"

	"github.com/herald-ws/herald/internal/testutil"
	"github.com/herald-ws/herald/internal/wstest"
)

// TestMessageSizeLimit mirrors Autobahn 9.x's large messages against a
// server limited to 64 KiB: a message at the limit is echoed, one byte more
// fails with 1009 as soon as the header announces it, before any of the
// payload is sent.
func TestMessageSizeLimit(t *testing.T) {
	t.Parallel()
	const limit = 64 << 10
	addr := start(t, testutil.Options{MaxMessageSize: limit, Compression: true})
	headerOnly := func(op wstest.OpCode, fin bool, n uint64) []byte {
		return frame(fin, 0, op, nil, wstest.DeclaredLen(n))
	}
	half := binOf(40 << 10)
	run(t, addr, []scenario{
		{name: "9.x text at the limit", do: do(send(text(string(textOf(limit)))), want(wstest.OpText, textOf(limit)))},
		{name: "9.x binary at the limit", do: do(send(binary(binOf(limit))), want(wstest.OpBinary, binOf(limit)))},
		{name: "9.x text one byte over, header only", do: do(send(headerOnly(wstest.OpText, true, limit+1))), close: closeTooBig},
		{name: "9.x binary one byte over, header only", do: do(send(headerOnly(wstest.OpBinary, true, limit+1))), close: closeTooBig},
		{name: "9.x binary 1 GiB announced", do: do(send(headerOnly(wstest.OpBinary, true, 1<<30))), close: closeTooBig},
		{name: "9.x echo first, then too big", do: do(send(text("before"), headerOnly(wstest.OpBinary, true, limit+1)), wantText("before")), close: closeTooBig},
		// The server reads and drops what follows a violation, so a client
		// that writes the whole oversized message still reads the 1009
		// rather than a reset.
		{name: "9.x one byte over, whole payload sent", do: do(send(binary(binOf(limit + 1)))), close: closeTooBig},
		{name: "9.x 1 MiB against the limit, whole payload sent", do: do(send(binary(binOf(1 << 20)))), close: closeTooBig},
		{name: "9.x first fragment over the limit", do: do(send(headerOnly(wstest.OpText, false, limit+1))), close: closeTooBig},
		{name: "9.x fragments at the limit", do: do(send(wstest.Fragments(wstest.OpBinary, 0, binOf(limit), 16<<10)), want(wstest.OpBinary, binOf(limit)))},
		{name: "9.x fragments over the limit in total", close: closeTooBig,
			// The second fragment's header alone pushes the total past the
			// limit; its payload is never sent.
			do: do(send(frame(false, 0, wstest.OpBinary, half)), send(headerOnly(wstest.OpContinuation, true, 40<<10)))},
		{name: "9.x 65 fragments of 1 KiB", close: closeTooBig,
			do: do(send(frame(false, 0, wstest.OpBinary, binOf(1<<10))), sendFragments(63, 1<<10),
				send(headerOnly(wstest.OpContinuation, true, 1<<10)))},
		{name: "12.x compressed message inflating past the limit", header: offerDeflate, close: closeTooBig,
			do: do(send(frame(true, wstest.RSV1, wstest.OpBinary, wstest.Deflate(make([]byte, limit+1)))))},
		// Incompressible data grows a little when deflated: a message at
		// the limit may take slightly more than the limit on the wire.
		{name: "12.x incompressible compressed message at the limit", header: offerDeflate, do: do(
			send(frame(true, wstest.RSV1, wstest.OpBinary, wstest.Deflate(noise(limit)))), wantInflated(wstest.OpBinary, noise(limit)))},
		{name: "12.x compressed message inflating to the limit", header: offerDeflate, do: do(
			send(frame(true, wstest.RSV1, wstest.OpBinary, wstest.Deflate(make([]byte, limit)))), wantInflated(wstest.OpBinary, make([]byte, limit)))},
	})
}

// noise returns n pseudo-random bytes that deflate cannot shrink, the same
// for the same n.
func noise(n int) []byte {
	r := rand.New(rand.NewPCG(uint64(n), 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// sendFragments sends n non-final continuation frames of size bytes each.
func sendFragments(n, size int) action {
	var b []byte
	for range n {
		b = append(b, frame(false, 0, wstest.OpContinuation, binOf(size))...)
	}
	return send(b)
}
