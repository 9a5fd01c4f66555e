package conformance_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/herald-ws/herald/internal/testutil"
	"github.com/herald-ws/herald/internal/wstest"
)

// offerDeflate is the permessage-deflate offer browsers send.
var offerDeflate = http.Header{"Sec-Websocket-Extensions": {"permessage-deflate; client_max_window_bits"}}

// compressMin is the CompressionMinSize of the compression server: shorter
// replies go out uncompressed.
const compressMin = 16

// wantInflated expects one compressed data message that inflates to p.
func wantInflated(op wstest.OpCode, p []byte) action {
	return func(c *wstest.Conn) { c.ExpectInflated(op, p) }
}

// compressed is one message compressed into a single frame with RSV1.
func compressed(op wstest.OpCode, p []byte) []byte {
	return frame(true, wstest.RSV1, op, wstest.Deflate(p))
}

// extensionParams splits a Sec-WebSocket-Extensions response into its
// extensions, each a list of trimmed name and parameters.
func extensionParams(h http.Header) [][]string {
	var out [][]string
	for _, v := range h.Values("Sec-Websocket-Extensions") {
		for _, ext := range strings.Split(v, ",") {
			var params []string
			for _, p := range strings.Split(ext, ";") {
				params = append(params, strings.TrimSpace(p))
			}
			out = append(out, params)
		}
	}
	return out
}

// TestCompressionNegotiation checks the permessage-deflate handshake of
// RFC 7692 section 7.1: Herald accepts offers it can serve without context
// takeover (any server_max_window_bits from 8 to 15, echoed) and declines
// the malformed ones, after which the connection works uncompressed.
func TestCompressionNegotiation(t *testing.T) {
	t.Parallel()
	on := start(t, testutil.Options{Compression: true, CompressionMinSize: compressMin})
	off := start(t, testutil.Options{})
	base := []string{"permessage-deflate", "client_no_context_takeover", "server_no_context_takeover"}
	cases := []struct {
		name   string
		addr   string
		offer  string
		accept []string // nil: declined
	}{
		{"browser offer", on, "permessage-deflate; client_max_window_bits", base},
		{"bare offer", on, "permessage-deflate", base},
		{"offer with no context takeover", on, "permessage-deflate; client_no_context_takeover; server_no_context_takeover", base},
		{"server_max_window_bits=15", on, "permessage-deflate; server_max_window_bits=15", append(slices.Clone(base), "server_max_window_bits=15")},
		{"server_max_window_bits=10", on, "permessage-deflate; server_max_window_bits=10", append(slices.Clone(base), "server_max_window_bits=10")},
		{"server_max_window_bits=9 with client_max_window_bits", on, "permessage-deflate; server_max_window_bits=9; client_max_window_bits", append(slices.Clone(base), "server_max_window_bits=9")},
		{"first offer declined, second accepted", on, "permessage-deflate; server_max_window_bits=7, permessage-deflate; client_max_window_bits", base},
		{"first acceptable offer's window echoed", on, "permessage-deflate; server_max_window_bits=16, permessage-deflate; server_max_window_bits=12, permessage-deflate", append(slices.Clone(base), "server_max_window_bits=12")},
		{"server_max_window_bits=7 declined", on, "permessage-deflate; server_max_window_bits=7", nil},
		{"server_max_window_bits with a leading zero declined", on, "permessage-deflate; server_max_window_bits=09", nil},
		{"server_max_window_bits without a value declined", on, "permessage-deflate; server_max_window_bits", nil},
		{"client_max_window_bits=7 declined", on, "permessage-deflate; client_max_window_bits=7", nil},
		{"client_max_window_bits=9", on, "permessage-deflate; client_max_window_bits=9", base},
		{"server_max_window_bits=8", on, "permessage-deflate; server_max_window_bits=8", append(slices.Clone(base), "server_max_window_bits=8")},
		{"server_max_window_bits=16 declined", on, "permessage-deflate; server_max_window_bits=16", nil},
		{"duplicate parameter declined", on, "permessage-deflate; server_no_context_takeover; server_no_context_takeover", nil},
		{"unknown parameter declined", on, "permessage-deflate; foo=1", nil},
		{"unknown extension ignored", on, "x-webkit-deflate-frame", nil},
		{"compression off ignores the offer", off, "permessage-deflate; client_max_window_bits", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := wstest.Dial(t, tc.addr, "/echo", http.Header{"Sec-Websocket-Extensions": {tc.offer}})
			exts := extensionParams(c.Response.Header)
			if tc.accept == nil {
				if len(exts) != 0 {
					t.Fatalf("offer %q: response accepts %q, want no extension", tc.offer, exts)
				}
				// Declined: large messages come back uncompressed and RSV1
				// is a protocol error.
				converse(c, scenario{close: closeProtocol, do: do(
					send(binary(binOf(1000))), want(wstest.OpBinary, binOf(1000)),
					send(compressed(wstest.OpText, textOf(100))))})
				return
			}
			if len(exts) != 1 {
				t.Fatalf("offer %q: response extensions %q, want one", tc.offer, exts)
			}
			got, wantParams := slices.Clone(exts[0]), slices.Clone(tc.accept)
			slices.Sort(got[1:])
			slices.Sort(wantParams[1:])
			if !slices.Equal(got, wantParams) {
				t.Fatalf("offer %q: response %q, want %q", tc.offer, exts[0], tc.accept)
			}
			converse(c, scenario{do: do(send(compressed(wstest.OpText, textOf(100))), wantInflated(wstest.OpText, textOf(100)))})
		})
	}
}

// TestCompression mirrors Autobahn 12.x and 13.x on a connection that
// negotiated permessage-deflate: compressed messages of every size are
// echoed compressed, uncompressed ones work too, and the RSV1 rules hold.
func TestCompression(t *testing.T) {
	t.Parallel()
	addr := start(t, testutil.Options{Compression: true, CompressionMinSize: compressMin})
	var cases []scenario
	for i, n := range []int{16, 17, 64, 100, 1000, 4096, 65535, 65536, 131072, 256 << 10} {
		cases = append(cases,
			scenario{name: fmt.Sprintf("12.1.%d text %s", i+1, sizeName(n)),
				do: do(send(compressed(wstest.OpText, textOf(n))), wantInflated(wstest.OpText, textOf(n)))},
			scenario{name: fmt.Sprintf("12.2.%d binary %s", i+1, sizeName(n)),
				do: do(send(compressed(wstest.OpBinary, binOf(n))), wantInflated(wstest.OpBinary, binOf(n)))},
		)
	}
	for _, n := range []int{100, 65536} {
		p := noise(n)
		cases = append(cases, scenario{name: fmt.Sprintf("12.x incompressible %s", sizeName(n)),
			do: do(send(compressed(wstest.OpBinary, p)), wantInflated(wstest.OpBinary, p))})
	}
	long := textOf(10000)
	cases = append(cases,
		scenario{name: "13.x compressed message in 100-byte fragments",
			do: do(send(wstest.Fragments(wstest.OpText, wstest.RSV1, wstest.Deflate(long), 100)), wantInflated(wstest.OpText, long))},
		scenario{name: "13.x compressed message in 1-byte fragments",
			do: do(send(wstest.Fragments(wstest.OpBinary, wstest.RSV1, wstest.Deflate(binOf(300)), 1)), wantInflated(wstest.OpBinary, binOf(300)))},
		scenario{name: "13.x ping between compressed fragments", do: do(
			send(frame(false, wstest.RSV1, wstest.OpText, wstest.Deflate(long)[:10]), ping([]byte("mid")), cont(true, string(wstest.Deflate(long)[10:]))),
			wantPong([]byte("mid")), wantInflated(wstest.OpText, long))},
		scenario{name: "13.x compressed bytewise", do: do(sendChunked(1, 0, compressed(wstest.OpText, textOf(200))), wantInflated(wstest.OpText, textOf(200)))},
		scenario{name: "13.x compressed and uncompressed interleaved", do: do(
			send(compressed(wstest.OpText, textOf(100)), text(string(textOf(50))), compressed(wstest.OpBinary, binOf(20)), binary(binOf(5))),
			wantInflated(wstest.OpText, textOf(100)), wantInflated(wstest.OpText, textOf(50)),
			wantInflated(wstest.OpBinary, binOf(20)), want(wstest.OpBinary, binOf(5)))},
		scenario{name: "13.x same message twice (no context takeover)", do: do(
			send(compressed(wstest.OpText, long), compressed(wstest.OpText, long)),
			wantInflated(wstest.OpText, long), wantInflated(wstest.OpText, long))},
		scenario{name: "uncompressed message on a compressed connection", do: do(send(text(string(long))), wantInflated(wstest.OpText, long))},
		scenario{name: "uncompressed fragments on a compressed connection", do: do(send(wstest.Fragments(wstest.OpBinary, 0, binOf(1000), 300)), wantInflated(wstest.OpBinary, binOf(1000)))},
		scenario{name: "compressed reply under the minimum size is uncompressed", do: do(send(compressed(wstest.OpText, textOf(compressMin-1))), want(wstest.OpText, textOf(compressMin-1)))},
		scenario{name: "uncompressed message under the minimum size", do: do(send(binary(binOf(compressMin-1))), want(wstest.OpBinary, binOf(compressMin-1)))},
		scenario{name: "empty compressed message", do: do(send(compressed(wstest.OpText, nil)), want(wstest.OpText, []byte{}))},
		// An empty message compresses to 0x00 (RFC 7692 section 7.2.3.6);
		// an empty payload plus the 00 00 ff ff tail is not DEFLATE data.
		scenario{name: "compressed frame with an empty payload", close: closeInvalidUTF, do: do(send(frame(true, wstest.RSV1, wstest.OpBinary, nil)))},
		// RFC 7692 section 7.2.3.4: a sender may end a message with a
		// BFINAL block instead of the empty stored block.
		scenario{name: "13.x message ending with a BFINAL block", do: do(
			send(frame(true, wstest.RSV1, wstest.OpText, []byte{0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00})), want(wstest.OpText, []byte("Hello")))},
		scenario{name: "13.x RFC 7692 Hello", do: do(
			send(frame(true, wstest.RSV1, wstest.OpText, []byte{0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00})), want(wstest.OpText, []byte("Hello")))},
		scenario{name: "13.x RFC 7692 Hello in two fragments", do: do(
			send(frame(false, wstest.RSV1, wstest.OpText, []byte{0xf2, 0x48, 0xcd}), frame(true, 0, wstest.OpContinuation, []byte{0xc9, 0xc9, 0x07, 0x00})),
			want(wstest.OpText, []byte("Hello")))},
		scenario{name: "13.x RSV1 on a continuation", close: closeProtocol,
			do: do(send(frame(false, wstest.RSV1, wstest.OpText, wstest.Deflate(long)[:10]), frame(true, wstest.RSV1, wstest.OpContinuation, wstest.Deflate(long)[10:])))},
		scenario{name: "13.x RSV1 on a continuation of an uncompressed message", close: closeProtocol,
			do: do(send(frame(false, 0, wstest.OpText, []byte("a")), frame(true, wstest.RSV1, wstest.OpContinuation, []byte("b"))))},
		scenario{name: "13.x RSV1 on a ping", close: closeProtocol, do: do(send(frame(true, wstest.RSV1, wstest.OpPing, []byte("p"))))},
		scenario{name: "13.x RSV1 on a close", close: closeProtocol, do: do(send(frame(true, wstest.RSV1, wstest.OpClose, wstest.ClosePayload(1000, ""))))},
		scenario{name: "13.x RSV2 with compression", close: closeProtocol, do: do(send(frame(true, wstest.RSV1|wstest.RSV2, wstest.OpText, wstest.Deflate([]byte("x")))))},
		scenario{name: "13.x RSV3 with compression", close: closeProtocol, do: do(send(frame(true, wstest.RSV3, wstest.OpText, []byte("x"))))},
		scenario{name: "13.x compressed text with invalid UTF-8", close: closeInvalidUTF,
			do: do(send(compressed(wstest.OpText, []byte("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"))))},
		scenario{name: "13.x compressed fragmented text ending inside a code point", close: closeInvalidUTF,
			do: do(send(wstest.Fragments(wstest.OpText, wstest.RSV1, wstest.Deflate([]byte("abc\xe2\x82")), 2)))},
		scenario{name: "13.x corrupt deflate data", close: closeInvalidUTF, do: do(send(frame(true, wstest.RSV1, wstest.OpBinary, []byte{0xff, 0xff, 0xff, 0xff})))},
	)
	for i := range cases {
		cases[i].header = offerDeflate
	}
	run(t, addr, cases)
}
