package codec

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/gobwas/ws"

	"github.com/herald-ws/herald/internal/deflatewin"
)

// serverPayload returns the payload of one unmasked server frame and
// whether RSV1 is set.
func serverPayload(t testing.TB, f []byte) ([]byte, bool) {
	t.Helper()
	hlen, n := 2, int(f[1]&0x7f)
	switch n {
	case 126:
		hlen, n = 4, int(f[2])<<8|int(f[3])
	case 127:
		hlen, n = 10, 0
		for _, b := range f[2:10] {
			n = n<<8 | int(b)
		}
	}
	if f[0]&0x80 == 0 || f[1]&0x80 != 0 || len(f) != hlen+n {
		t.Fatalf("not one unmasked final frame: header % x, %d bytes for a %d-byte payload", f[:hlen], len(f), n)
	}
	return f[hlen:], f[0]&rsv1 != 0
}

// inflateChecked inflates a permessage-deflate payload with the test
// inflater and returns the longest back-reference distance.
func inflateChecked(t testing.TB, c []byte, want []byte) int {
	t.Helper()
	stream := append(append(append([]byte(nil), c...), deflateTail...), finalBlock...)
	res, err := deflatewin.Inflate(stream)
	if err != nil {
		t.Fatalf("inflate: %v", err)
	}
	if !bytes.Equal(res.Out, want) {
		t.Fatalf("inflates to %d bytes, want %d", len(res.Out), len(want))
	}
	return res.MaxDistance
}

// periodic repeats a block of period pseudo-random bytes up to n bytes: a
// compressor with a 32 KiB window matches it one period back (or more).
func periodic(n, period int, seed uint64) []byte {
	block := binaryOf(period, seed)
	out := make([]byte, n)
	for i := range out {
		out[i] = block[i%period]
	}
	return out
}

func windowPayloads(bits int) map[string][]byte {
	w := 1 << bits
	out := map[string][]byte{}
	for _, n := range []int{0, 1, w - 1, w, w + 1, 2*w - 1, 2 * w, 2*w + 1, 3*w + 7, 40000, 100000} {
		out[fmt.Sprintf("random %d", n)] = binaryOf(n, uint64(n))
		out[fmt.Sprintf("text %d", n)] = textOf(n)
		out[fmt.Sprintf("zeros %d", n)] = make([]byte, n)
		// Periods just past the window and well past it: the references a
		// full-window compressor would use are all too far.
		out[fmt.Sprintf("period %d of %d", w+1, n)] = periodic(n, w+1, 7)
		out[fmt.Sprintf("period 1000 of %d", n)] = periodic(n, 1000, 8)
		out[fmt.Sprintf("period 20000 of %d", n)] = periodic(n, 20000, 9)
	}
	out["json 64 KiB"] = []byte(strings.Repeat(`{"op":"message","channel":"news","offset":12,"data":{"title":"Herald"}}`, 1000))
	return out
}

// TestAppendMessageWindowDistances proves the window promise of
// server_max_window_bits: for every window from 8 to 15 bits and payloads
// of every kind around the chunk boundaries, the compressed frame inflates
// to the payload and no back-reference reaches further than 2^bits bytes.
// The frame also round-trips through the Decoder (compress/flate).
func TestAppendMessageWindowDistances(t *testing.T) {
	for bits := 8; bits <= MaxWindowBits; bits++ {
		t.Run(fmt.Sprintf("%d bits", bits), func(t *testing.T) {
			for name, p := range windowPayloads(bits) {
				f := AppendMessageWindow(nil, ws.OpBinary, p, true, 0, bits)
				c, compressed := serverPayload(t, f)
				if !compressed {
					t.Fatalf("%s: RSV1 not set", name)
				}
				if d := inflateChecked(t, c, p); d > 1<<bits {
					t.Fatalf("%s: a back-reference reaches %d bytes, window is %d", name, d, 1<<bits)
				}
				got, err := decodeAll(t, Decoder{Compression: true}, maskServerFrame(f, testKey), whole)
				if err != nil || !equalRecs(got, []rec{binMsg(string(p))}) {
					t.Fatalf("%s: decoder: %v", name, err)
				}
			}
		})
	}
}

// TestAppendMessageWindowCheckerBites shows the distance check can fail: a
// full-window frame of a payload that repeats every 1000 bytes references
// further back than a 256-byte or 512-byte window allows, which is what a
// client that negotiated server_max_window_bits=8 or 9 would reject with
// "invalid distance too far back".
func TestAppendMessageWindowCheckerBites(t *testing.T) {
	p := periodic(20000, 1000, 8)
	c, _ := serverPayload(t, AppendMessage(nil, ws.OpBinary, p, true, 0))
	if d := inflateChecked(t, c, p); d <= 1<<9 {
		t.Fatalf("full-window frame reaches only %d bytes back; the test payload does not exercise the window", d)
	}
}

// TestFrameWindowBits: the table of the key, and the two properties a
// fan-out relies on: frames with equal keys are identical, and a frame
// whose payload fits the window is the full-window frame.
func TestFrameWindowBits(t *testing.T) {
	for _, c := range []struct{ n, bits, want int }{
		{0, 8, 15}, {256, 8, 15}, {257, 8, 8}, {512, 9, 15}, {513, 9, 9},
		{1 << 14, 14, 15}, {1<<14 + 1, 14, 14}, {1 << 20, 15, 15}, {1 << 20, 16, 15},
		{100, 7, 15}, {300, 7, 8}, {300, 0, 8}, {1 << 20, 12, 12},
	} {
		if got := FrameWindowBits(c.n, c.bits); got != c.want {
			t.Errorf("FrameWindowBits(%d, %d) = %d, want %d", c.n, c.bits, got, c.want)
		}
	}
	for _, n := range []int{0, 100, 256, 257, 511, 512, 513, 5000, 70000} {
		p := textOf(n)
		frames := map[int][]byte{}
		for bits := 6; bits <= 17; bits++ {
			f := AppendMessageWindow(nil, ws.OpText, p, true, 0, bits)
			key := FrameWindowBits(n, bits)
			if prev, ok := frames[key]; ok && !bytes.Equal(prev, f) {
				t.Fatalf("%d bytes: frames for %d bits and an earlier window with key %d differ", n, bits, key)
			}
			frames[key] = f
		}
		if !bytes.Equal(frames[MaxWindowBits], AppendMessage(nil, ws.OpText, p, true, 0)) {
			t.Fatalf("%d bytes: the 15-bit frame is not AppendMessage's", n)
		}
	}
	// Below the minimum size nothing is compressed, whatever the window.
	p := textOf(1000)
	if f := AppendMessageWindow(nil, ws.OpText, p, true, 1001, 8); !bytes.Equal(f, AppendFrame(nil, ws.OpText, p)) {
		t.Fatal("payload under minSize compressed")
	}
	if f := AppendMessageWindow(nil, ws.OpText, p, false, 0, 8); !bytes.Equal(f, AppendFrame(nil, ws.OpText, p)) {
		t.Fatal("compress=false compressed")
	}
}

func TestAppendMessageWindowZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	p := periodic(64<<10, 1000, 3)
	dst := make([]byte, 0, 128<<10)
	for _, bits := range []int{8, 9, 12, 15} {
		AppendMessageWindow(dst[:0], ws.OpBinary, p, true, 0, bits) // warm the pool and its buffer
		if a := testing.AllocsPerRun(50, func() { dst = AppendMessageWindow(dst[:0], ws.OpBinary, p, true, 0, bits) }); a != 0 {
			t.Errorf("%d bits: %v allocs", bits, a)
		}
	}
}

// TestNegotiateWindowBits: with ParseOptions.WindowBits every valid
// server_max_window_bits is accepted and echoed; without it only 15 is.
// client_max_window_bits of any valid value is accepted without an answer
// (the decoder's 32 KiB window reads every smaller one); invalid values
// decline the offer (RFC 7692 section 7.1.2).
func TestNegotiateWindowBits(t *testing.T) {
	offer := func(params string) string {
		return request("GET / HTTP/1.1", "Sec-WebSocket-Extensions: permessage-deflate"+params)
	}
	const base = "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover"
	for bits := 8; bits <= 15; bits++ {
		in := offer(fmt.Sprintf("; server_max_window_bits=%d", bits))
		r, _, err := parseEverySplit(t, in, ParseOptions{Compression: true, WindowBits: true})
		if err != nil || !r.Deflate || r.DeflateWindowBits() != bits {
			t.Fatalf("%d bits with WindowBits: err %v Deflate %v window %d", bits, err, r.Deflate, r.DeflateWindowBits())
		}
		want := fmt.Sprintf("%s; server_max_window_bits=%d\r\n", base, bits)
		if resp := string(AppendAccept(nil, &r, true)); !strings.Contains(resp, "\r\n"+want) {
			t.Fatalf("%d bits: response %q lacks %q", bits, resp, want)
		}
		r, _, _ = parse(t, in, ParseOptions{Compression: true})
		if r.Deflate != (bits == 15) {
			t.Fatalf("%d bits without WindowBits: Deflate %v", bits, r.Deflate)
		}

		in = offer(fmt.Sprintf("; client_max_window_bits=%d", bits))
		r, _, err = parse(t, in, ParseOptions{Compression: true})
		if err != nil || !r.Deflate || r.DeflateWindowBits() != 15 {
			t.Fatalf("client_max_window_bits=%d: err %v Deflate %v window %d", bits, err, r.Deflate, r.DeflateWindowBits())
		}
		if resp := string(AppendAccept(nil, &r, true)); strings.Contains(resp, "max_window_bits") {
			t.Fatalf("client_max_window_bits=%d answered: %q", bits, resp)
		}
	}
	for _, params := range []string{
		"; server_max_window_bits=7", "; server_max_window_bits=16", "; server_max_window_bits=", "; server_max_window_bits",
		"; server_max_window_bits=09", "; server_max_window_bits=a", "; client_max_window_bits=7", "; client_max_window_bits=16",
		"; server_max_window_bits=10; server_max_window_bits=10",
	} {
		r, _, err := parse(t, offer(params), ParseOptions{Compression: true, WindowBits: true})
		if err != nil || r.Deflate {
			t.Errorf("offer %q: err %v, Deflate %v; want declined", params, err, r.Deflate)
		}
	}
	// The first acceptable offer is taken, and its window echoed.
	r, _, _ := parse(t, offer("; server_max_window_bits=7, permessage-deflate; server_max_window_bits=9, permessage-deflate"),
		ParseOptions{Compression: true, WindowBits: true})
	if !r.Deflate || r.DeflateWindowBits() != 9 {
		t.Fatalf("second offer: Deflate %v window %d", r.Deflate, r.DeflateWindowBits())
	}
	// Extensions lines form one list: a malformed later line is refused
	// even after an earlier one was accepted.
	r, _, _ = parse(t, plus("Sec-WebSocket-Extensions: permessage-deflate", "Sec-WebSocket-Extensions: permessage-deflate;;"),
		ParseOptions{Compression: true})
	if err := r.Check(); err != ErrBadExtensions {
		t.Fatalf("malformed second extensions line: Check %v", err)
	}
}

// TestDecodeClientWindows: messages a client compressed with any window
// from 8 to 15 bits (client_max_window_bits) inflate.
func TestDecodeClientWindows(t *testing.T) {
	for bits := 8; bits <= 15; bits++ {
		for _, p := range [][]byte{periodic(5000, 300, 1), textOf(70000), binaryOf(3000, 2)} {
			c, _ := serverPayload(t, AppendMessageWindow(nil, ws.OpBinary, p, true, 0, bits))
			frames := cat(cfb(rsv1|byte(ws.OpBinary), c[:len(c)/2]), cfb(fin, c[len(c)/2:]))
			got, err := decodeAll(t, Decoder{Compression: true}, frames, randomChunks(uint64(bits), 700))
			if err != nil || !equalRecs(got, []rec{binMsg(string(p))}) {
				t.Fatalf("%d bits, %d bytes: %v", bits, len(p), err)
			}
		}
	}
}
