package conformance_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/herald-ws/herald/internal/deflatewin"
	"github.com/herald-ws/herald/internal/testutil"
	"github.com/herald-ws/herald/internal/wstest"
)

// periodicOf repeats a block of period bytes of noise up to n bytes: a
// full-window compressor matches it one period back or further.
func periodicOf(n, period int) []byte {
	block := noise(period)
	b := make([]byte, n)
	for i := range b {
		b[i] = block[i%period]
	}
	return b
}

// expectWindow reads one data frame and checks it is compressed, inflates
// to p, and has no back-reference further than window bytes.
func expectWindow(c *wstest.Conn, op wstest.OpCode, p []byte, window int) {
	f := c.ReadFrame()
	if f.OpCode != op || !f.Fin || f.Rsv != wstest.RSV1 {
		c.Fatalf("want one compressed %s frame, got %s", op, f)
	}
	stream := append(append([]byte(nil), f.Payload...), 0, 0, 0xff, 0xff, 0x01, 0, 0, 0xff, 0xff)
	res, err := deflatewin.Inflate(stream)
	if err != nil {
		c.Fatalf("inflate: %v", err)
	}
	if string(res.Out) != string(p) {
		c.Fatalf("inflates to %d bytes, want the %d sent", len(res.Out), len(p))
	}
	if res.MaxDistance > window {
		c.Fatalf("a back-reference reaches %d bytes back, the negotiated window is %d", res.MaxDistance, window)
	}
}

// TestCompressionWindowBits mirrors Autobahn 13.3.x and 13.5.x (a client
// offering server_max_window_bits from 8 to 15, with and without a
// client_max_window_bits limit of its own): the offer is accepted, and
// every echo of a message built to tempt a full-window compressor into long
// back-references stays inside 2^N bytes.
func TestCompressionWindowBits(t *testing.T) {
	t.Parallel()
	addr := start(t, testutil.Options{Compression: true, CompressionMinSize: compressMin})
	for bits := 8; bits <= 15; bits++ {
		for _, client := range []string{"", "; client_max_window_bits=9"} {
			name := fmt.Sprintf("13.x server_max_window_bits=%d%s", bits, client)
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				offer := fmt.Sprintf("permessage-deflate; server_max_window_bits=%d%s", bits, client)
				c := wstest.Dial(t, addr, "/echo", http.Header{"Sec-Websocket-Extensions": {offer}})
				exts := extensionParams(c.Response.Header)
				want := fmt.Sprintf("server_max_window_bits=%d", bits)
				if len(exts) != 1 || !slices.Contains(exts[0], want) || slices.ContainsFunc(exts[0], func(p string) bool { return strings.HasPrefix(p, "client_max_window_bits") }) {
					t.Fatalf("offer %q: response %q, want %s and no client_max_window_bits", offer, exts, want)
				}
				w := 1 << bits
				var steps []action
				for _, p := range [][]byte{
					periodicOf(w-1, 100), periodicOf(w+1, w/2+1), periodicOf(3*w+7, w+1),
					periodicOf(64<<10, 1000), periodicOf(100000, 20000), textOf(200 << 10),
				} {
					steps = append(steps, send(compressed(wstest.OpBinary, p)),
						func(c *wstest.Conn) { expectWindow(c, wstest.OpBinary, p, w) })
				}
				converse(c, scenario{do: steps})
			})
		}
	}
}
