package codec

import (
	"bytes"
	"compress/flate"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"github.com/valyala/bytebufferpool"
)

// inflateRef inflates a permessage-deflate payload with compress/flate
// alone: the payload, the 00 00 ff ff tail RFC 7692 section 7.2.2 has the
// receiver append, and then whatever the stream holds until the tail ends.
func inflateRef(t *testing.T, payload []byte) []byte {
	t.Helper()
	r := flate.NewReader(io.MultiReader(bytes.NewReader(payload), bytes.NewReader([]byte{0, 0, 0xff, 0xff})))
	out, err := io.ReadAll(r)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("compress/flate: %v", err)
	}
	return out
}

var deflatePayloads = map[string][]byte{
	"json":      []byte(strings.Repeat(`{"channel":"prices","symbol":"EURUSD","bid":1.08312,"ask":1.08315,"ts":1718000000123}`, 12)),
	"text":      textOf(5000),
	"random":    binaryOf(3000, 7), // incompressible: deflate stores it
	"zeros":     make([]byte, 100<<10),
	"one byte":  []byte("a"),
	"multibyte": []byte(strings.Repeat("€𝄞κόσμε", 100)),
}

// TestDeflateRoundTrip compresses with AppendMessage, masks the frame as a
// client would, and decodes it with compression negotiated.
func TestDeflateRoundTrip(t *testing.T) {
	for name, p := range deflatePayloads {
		for _, op := range []ws.OpCode{ws.OpText, ws.OpBinary} {
			if op == ws.OpText && !utf8.Valid(p) {
				continue
			}
			f := AppendMessage(nil, op, p, true, 1)
			if f[0] != 0x80|0x40|byte(op) {
				t.Fatalf("%s: first byte %08b, want FIN, RSV1 and opcode %d", name, f[0], op)
			}
			hf := readServerFrame(t, f)
			if got := inflateRef(t, hf.Payload); !bytes.Equal(got, p) {
				t.Fatalf("%s: compress/flate inflates %d bytes, want %d", name, len(got), len(p))
			}
			if bytes.HasSuffix(hf.Payload, []byte{0, 0, 0xff, 0xff}) {
				t.Fatalf("%s: the 00 00 ff ff tail was not removed", name)
			}
			stream := maskServerFrame(f, testKey)
			for _, next := range []func() int{whole, chunksOf(1000), randomChunks(1, 50)} {
				got, err := decodeAll(t, Decoder{Compression: true, MaxMessageSize: int64(len(p))}, stream, next)
				if err != nil || !equalRecs(got, []rec{msg(op, string(p))}) {
					t.Fatalf("%s op %d: %v, %v", name, op, got, err)
				}
			}
		}
	}
	// Many messages through one decoder reuse the pooled inflaters: nothing
	// may leak from one message into the next (no context takeover).
	var d Decoder
	d.Compression = true
	defer d.Reset()
	var stream []byte
	var want []rec
	for i := range 50 {
		p := fmt.Appendf(nil, "message %d %s", i, strings.Repeat("x", i*10))
		stream = append(stream, maskServerFrame(AppendMessage(nil, ws.OpText, p, true, 0), keyFor(p, 1))...)
		want = append(want, textMsg(string(p)))
	}
	got, err := feed(t, &d, stream, randomChunks(9, 100))
	if err != nil || !equalRecs(got, want) {
		t.Fatalf("50 messages: %d events, %v", len(got), err)
	}
}

// TestDeflateInterop decodes payloads compressed by compress/flate directly,
// at every level, as RFC 7692 section 7.2.1 describes (flush, strip the
// tail), including a stream ended with a final block and a fragmented
// compressed message.
func TestDeflateInterop(t *testing.T) {
	p := deflatePayloads["json"]
	for _, level := range []int{flate.NoCompression, flate.BestSpeed, flate.DefaultCompression, flate.BestCompression, flate.HuffmanOnly} {
		c := deflateRaw(p, level)
		got, err := decodeAll(t, withCompression, cfb(fin|rsv1|byte(ws.OpText), c), whole)
		if err != nil || !equalRecs(got, []rec{textMsg(string(p))}) {
			t.Fatalf("level %d: %v %v", level, got, err)
		}
		// The same payload in fragments of 7 bytes with pings between.
		var frames [][]byte
		for i := 0; i < len(c); i += 7 {
			var b0 byte
			if i == 0 {
				b0 = rsv1 | byte(ws.OpText)
			}
			if i+7 >= len(c) {
				b0 |= fin
			}
			frames = append(frames, cfb(b0, c[i:min(i+7, len(c))]), ping("p"))
		}
		got, err = decodeAll(t, withCompression, cat(frames...), randomChunks(uint64(level+2), 30))
		if err != nil || len(got) != len(frames)/2+1 || got[len(got)-2] != textMsg(string(p)) {
			t.Fatalf("level %d fragmented: %d events, %v", level, len(got), err)
		}
	}
	// A sender that closes the stream (BFINAL set) instead of flushing.
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, flate.BestCompression)
	_, _ = w.Write(p)
	_ = w.Close()
	got, err := decodeAll(t, withCompression, cfb(fin|rsv1|byte(ws.OpBinary), b.Bytes()), whole)
	if err != nil || !equalRecs(got, []rec{binMsg(string(p))}) {
		t.Fatalf("BFINAL stream: %v %v", got, err)
	}
}

// TestDeflateZipBomb sends 10 MiB of zeros compressed to a few KiB to a
// decoder with a 1 MiB limit: the compressed frame passes the header check,
// inflation must stop at the limit.
func TestDeflateZipBomb(t *testing.T) {
	bomb := deflateRaw(make([]byte, 10<<20), flate.BestCompression)
	if len(bomb) > 64<<10 {
		t.Fatalf("bomb is %d bytes", len(bomb))
	}
	for _, op := range []ws.OpCode{ws.OpText, ws.OpBinary} {
		d := Decoder{Compression: true, MaxMessageSize: 1 << 20}
		_, err := feed(t, &d, cfb(fin|rsv1|byte(op), bomb), whole)
		if !errors.Is(err, ErrMessageTooBig) || CloseCode(err) != ws.StatusMessageTooBig {
			t.Fatalf("op %d: err %v, want ErrMessageTooBig", op, err)
		}
		d.Reset()
	}
	// Inflation stops near the limit instead of producing all 10 MiB and
	// checking afterwards. The buffer starts empty: one from messagePool
	// may already be large from an earlier test (or an earlier -count run
	// of this one), which would measure the pool, not the growth.
	out := new(bytebufferpool.ByteBuffer)
	if err := inflate(out, bomb, 1<<20); !errors.Is(err, ErrMessageTooBig) {
		t.Fatalf("inflate: %v", err)
	}
	if cap(out.B) > 3<<20 {
		t.Fatalf("inflate grew its buffer to %d bytes for a 1 MiB limit", cap(out.B))
	}
	// At the limit exactly it inflates; one byte over it does not.
	p := make([]byte, 1<<20)
	c := deflateRaw(p, flate.BestCompression)
	got, err := decodeAll(t, Decoder{Compression: true, MaxMessageSize: 1 << 20}, cfb(fin|rsv1|byte(ws.OpBinary), c), whole)
	if err != nil || len(got) != 1 || len(got[0].Payload) != 1<<20 {
		t.Fatalf("at the limit: %d events, %v", len(got), err)
	}
	if _, err := decodeAll(t, Decoder{Compression: true, MaxMessageSize: 1<<20 - 1}, cfb(fin|rsv1|byte(ws.OpBinary), c), whole); !errors.Is(err, ErrMessageTooBig) {
		t.Fatalf("one byte over: %v", err)
	}
}

func TestDeflateBadPayloads(t *testing.T) {
	good := deflateRaw([]byte("hello hello hello hello"), flate.BestCompression)
	for _, c := range []struct {
		name    string
		op      ws.OpCode
		payload []byte
		err     error
	}{
		{"reserved block type", ws.OpBinary, []byte{0xff, 0xff, 0xff}, ErrBadCompression},
		{"stored block with bad NLEN", ws.OpBinary, []byte{0x00, 0x05, 0x00, 0x00, 0x00, 'h', 'e', 'l', 'l', 'o'}, ErrBadCompression},
		{"stored block longer than the payload", ws.OpBinary, []byte{0x00, 0x00, 0x01, 0xff, 0xfe, 'h'}, ErrBadCompression},
		{"truncated stream", ws.OpText, good[:len(good)/2], ErrBadCompression},
		{"random bytes", ws.OpBinary, binaryOf(200, 3), ErrBadCompression},
		{"invalid UTF-8 after inflation", ws.OpText, deflateRaw([]byte("caf\xe9"), flate.BestSpeed), ErrInvalidUTF8},
		{"surrogate after inflation", ws.OpText, deflateRaw([]byte(strings.Repeat("a", 1000)+"\xed\xb0\x80"), flate.BestSpeed), ErrInvalidUTF8},
	} {
		_, err := decodeAll(t, withCompression, cfb(fin|rsv1|byte(c.op), c.payload), whole)
		if !errors.Is(err, c.err) {
			t.Errorf("%s: err %v, want %v", c.name, err, c.err)
		}
		if CloseCode(err) != ws.StatusInvalidFramePayloadData {
			t.Errorf("%s: close code %d, want 1007", c.name, CloseCode(err))
		}
	}
	// A bad message does not poison the pooled inflater for the next one.
	got, err := decodeAll(t, withCompression, cfb(fin|rsv1|byte(ws.OpText), good), whole)
	if err != nil || !equalRecs(got, []rec{textMsg("hello hello hello hello")}) {
		t.Fatalf("after bad payloads: %v %v", got, err)
	}
}

// TestDeflateIncompressibleAtLimit: MaxMessageSize bounds the message after
// inflation, so an incompressible message of exactly the limit, a few bytes
// longer on the wire than the limit, must pass; one byte more must not.
func TestDeflateIncompressibleAtLimit(t *testing.T) {
	for _, n := range []int{2, 100, 65535, 65536, 200 << 10} {
		p := binaryOf(n, uint64(n))
		f := AppendMessage(nil, ws.OpBinary, p, true, 0)
		wire := len(readServerFrame(t, f).Payload)
		if wire <= n {
			t.Fatalf("%d bytes: compressed to %d, expected deflate to grow random data", n, wire)
		}
		stream := maskServerFrame(f, testKey)
		got, err := decodeAll(t, Decoder{Compression: true, MaxMessageSize: int64(n)}, stream, chunksOf(4000))
		if err != nil || !equalRecs(got, []rec{binMsg(string(p))}) {
			t.Fatalf("%d bytes (%d on the wire) with a limit of %d: %v", n, wire, n, err)
		}
		if _, err := decodeAll(t, Decoder{Compression: true, MaxMessageSize: int64(n - 1)}, stream, whole); !errors.Is(err, ErrMessageTooBig) {
			t.Fatalf("%d bytes with a limit of %d: err %v", n, n-1, err)
		}
	}
	// The slack is for compressed messages only.
	if _, err := decodeAll(t, Decoder{Compression: true, MaxMessageSize: 100}, bin(fin, strings.Repeat("x", 101)), whole); !errors.Is(err, ErrMessageTooBig) {
		t.Fatalf("uncompressed over the limit: %v", err)
	}
}

// TestDeflateNotNegotiated: without Compression, RSV1 is a protocol error
// and the payload is never inflated.
func TestDeflateNotNegotiated(t *testing.T) {
	f := maskServerFrame(AppendMessage(nil, ws.OpText, []byte(strings.Repeat("compress me ", 20)), true, 0), testKey)
	if _, err := decodeAll(t, Decoder{}, f, whole); !errors.Is(err, ErrReservedBits) {
		t.Fatalf("err %v, want ErrReservedBits", err)
	}
}

// A message that inflates past the limit and then turns out corrupt gets
// ErrMessageTooBig whatever the capacity of the buffer it inflates into
// (found by FuzzDecoder: with a large pooled buffer the corruption was
// read in the same call and won, so a peer's close code depended on pool
// state).
func TestInflateLimitBeforeCorruptionIsDeterministic(t *testing.T) {
	var z bytes.Buffer
	fw, _ := flate.NewWriter(&z, flate.BestSpeed)
	_, _ = fw.Write(make([]byte, 70_000)) // crosses the limit in the read that meets the corruption
	_ = fw.Flush()
	payload := append(z.Bytes()[:z.Len()-4:z.Len()-4], 0xff, 0xff, 0xff, 0xff) // a sync flush, then an invalid block
	for _, c := range []int{0, 1, 1000, 65536, 65537, 70_000, 200_000} {
		out := &bytebufferpool.ByteBuffer{B: make([]byte, 0, c)}
		if err := inflate(out, payload, 65536); !errors.Is(err, ErrMessageTooBig) {
			t.Errorf("buffer capacity %d: %v, want ErrMessageTooBig", c, err)
		}
	}
	// Within the limit, the corruption is what it is.
	out := &bytebufferpool.ByteBuffer{}
	if err := inflate(out, payload, 1<<20); !errors.Is(err, ErrBadCompression) {
		t.Errorf("limit above the inflated size: %v, want ErrBadCompression", err)
	}
}
