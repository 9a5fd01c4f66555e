package codec

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gobwas/ws"
)

// Helpers shared by the codec tests, fuzz targets and benchmarks.

// bits turns an RFC-style bit string such as "1000 0001 1 0000101" into
// bytes. Spaces are for the reader only; the bit count must be a multiple of
// eight.
func bits(s string) []byte {
	s = strings.ReplaceAll(s, " ", "")
	if len(s)%8 != 0 {
		panic(fmt.Sprintf("bits: %d bits is not a whole number of bytes", len(s)))
	}
	out := make([]byte, len(s)/8)
	for i, c := range s {
		switch c {
		case '1':
			out[i/8] |= 0x80 >> (i % 8)
		case '0':
		default:
			panic(fmt.Sprintf("bits: bad digit %q", c))
		}
	}
	return out
}

// Frame header bits, named as in RFC 6455 section 5.2.
const (
	fin  byte = 0x80
	rsv1 byte = 0x40
	rsv2 byte = 0x20
	rsv3 byte = 0x10
)

// lenForm selects how a test frame encodes its payload length.
type lenForm int

const (
	lenMinimal lenForm = iota // as a conforming client would
	len16                     // always the 126 + 16-bit form
	len64                     // always the 127 + 64-bit form
)

// frameSpec describes one client frame, including the ways a broken client
// can get it wrong.
type frameSpec struct {
	b0       byte // FIN, RSV1-3 and opcode, e.g. fin|byte(ws.OpText)
	payload  []byte
	unmasked bool
	key      [4]byte
	form     lenForm
	declared int64 // when non-zero, the length written in the header instead of len(payload)
}

// build encodes s as it would appear on the wire, masking the payload with
// s.key unless s.unmasked.
func (s frameSpec) build() []byte {
	n := uint64(len(s.payload))
	if s.declared != 0 {
		n = uint64(s.declared)
	}
	var mask byte
	if !s.unmasked {
		mask = 0x80
	}
	out := []byte{s.b0}
	switch {
	case s.form == len64 || (s.form == lenMinimal && n > 0xffff):
		out = append(out, mask|127)
		out = binary.BigEndian.AppendUint64(out, n)
	case s.form == len16 || (s.form == lenMinimal && n > 125):
		out = append(out, mask|126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	default:
		out = append(out, mask|byte(n))
	}
	if s.unmasked {
		return append(out, s.payload...)
	}
	out = append(out, s.key[:]...)
	start := len(out)
	out = append(out, s.payload...)
	ws.Cipher(out[start:], s.key, 0)
	return out
}

// testKey is the masking key of the examples in RFC 6455 section 5.7.
var testKey = [4]byte{0x37, 0xfa, 0x21, 0x3d}

// keyFor gives frames of a stream different mask keys, so that a decoder
// that carries the mask offset wrongly across partial frames is caught.
func keyFor(payload []byte, b0 byte) [4]byte {
	k := testKey
	k[0] ^= byte(len(payload))
	k[1] ^= b0
	k[2] ^= byte(len(payload) >> 8)
	return k
}

// cf builds a minimal masked client frame: b0 carries FIN, RSV and opcode.
func cf(b0 byte, payload string) []byte {
	return frameSpec{b0: b0, payload: []byte(payload), key: keyFor([]byte(payload), b0)}.build()
}

// cfb is cf for a []byte payload.
func cfb(b0 byte, payload []byte) []byte {
	return frameSpec{b0: b0, payload: payload, key: keyFor(payload, b0)}.build()
}

// closeBody is the payload of a close frame with code and reason.
func closeBody(code uint16, reason string) string {
	return string(binary.BigEndian.AppendUint16(nil, code)) + reason
}

// cat concatenates frames into one stream.
func cat(frames ...[]byte) []byte {
	return bytes.Join(frames, nil)
}

// rec is a decoded event with its payload copied, so that it survives the
// next call to Next and can be compared.
type rec struct {
	Kind    EventKind
	Op      ws.OpCode
	Payload string
	Code    ws.StatusCode
}

func (r rec) String() string {
	p := r.Payload
	if len(p) > 40 {
		p = fmt.Sprintf("%q...(%d bytes)", p[:40], len(p))
	} else {
		p = fmt.Sprintf("%q", p)
	}
	return fmt.Sprintf("{kind %d op %d code %d payload %s}", r.Kind, r.Op, r.Code, p)
}

func toRec(ev Event) rec {
	return rec{Kind: ev.Kind, Op: ev.OpCode, Payload: string(ev.Payload), Code: ev.CloseCode}
}

func msg(op ws.OpCode, p string) rec { return rec{Kind: EventMessage, Op: op, Payload: p} }
func textMsg(p string) rec           { return msg(ws.OpText, p) }
func binMsg(p string) rec            { return msg(ws.OpBinary, p) }
func pingEv(p string) rec            { return rec{Kind: EventPing, Payload: p} }
func pongEv(p string) rec            { return rec{Kind: EventPong, Payload: p} }
func closeEv(code ws.StatusCode, reason string) rec {
	return rec{Kind: EventClose, Code: code, Payload: reason}
}

// feed delivers stream to d the way an event loop does: chunk sizes come
// from next, unconsumed bytes stay in the inbound buffer and new bytes are
// appended behind them, and Next is called until it reports EventNone. It
// returns the events in order and the first error.
//
// On every call it checks the contract of Next: n is within the input, the
// bytes Next did not consume are untouched (the next KiB of them; checking
// all would make long streams of small frames quadratic), and EventNone
// means the input holds no further event (a second call consumes nothing).
func feed(t testing.TB, d *Decoder, stream []byte, next func() int) ([]rec, error) {
	t.Helper()
	var (
		buf      []byte // inbound buffer; buf[start:] is not consumed yet
		start    int
		out      []rec
		off      int // bytes of stream delivered
		consumed int // bytes of stream consumed by the decoder
	)
	for {
		if off < len(stream) {
			k := min(max(next(), 1), len(stream)-off)
			buf = append(buf[:copy(buf, buf[start:])], stream[off:off+k]...)
			start = 0
			off += k
		}
		for {
			in := buf[start:]
			ev, n, err := d.Next(in)
			if n < 0 || n > len(in) {
				t.Fatalf("Next consumed %d bytes of a %d-byte input", n, len(in))
			}
			if err != nil {
				return out, err
			}
			if w := min(len(in), n+1024); !bytes.Equal(in[n:w], stream[consumed+n:consumed+w]) {
				t.Fatalf("Next modified input it did not consume (n=%d)", n)
			}
			if ev.Kind != EventNone {
				out = append(out, toRec(ev))
			}
			consumed += n
			start += n
			if ev.Kind == EventNone {
				if ev2, n2, err2 := d.Next(buf[start:]); ev2.Kind != EventNone || n2 != 0 || err2 != nil {
					t.Fatalf("Next after EventNone: kind %d, n %d, err %v; want nothing", ev2.Kind, n2, err2)
				}
				break
			}
		}
		if off == len(stream) {
			return out, nil
		}
	}
}

// Chunking strategies for feed.
func whole() int   { return 1 << 62 }
func oneByte() int { return 1 }
func chunksOf(n int) func() int {
	return func() int { return n }
}
func randomChunks(seed uint64, maxSize int) func() int {
	r := rand.New(rand.NewPCG(seed, 0x6865726f6c64))
	return func() int { return 1 + r.IntN(maxSize) }
}

// cuts delivers the stream in pieces ending at the given offsets.
func cuts(at ...int) func() int {
	prev, i := 0, 0
	return func() int {
		if i == len(at) {
			return 1 << 62
		}
		n := at[i] - prev
		prev = at[i]
		i++
		return n
	}
}

// decodeAll decodes stream in one piece with a fresh decoder configured by
// cfg and resets it afterwards.
func decodeAll(t testing.TB, cfg Decoder, stream []byte, next func() int) ([]rec, error) {
	t.Helper()
	d := cfg
	defer d.Reset()
	return feed(t, &d, stream, next)
}

// deflateRaw compresses p with compress/flate at level and strips the
// 00 00 ff ff tail of the final sync flush, as RFC 7692 section 7.2.1 has a
// sender do. It does not use any code of this package.
func deflateRaw(p []byte, level int) []byte {
	var b bytes.Buffer
	w, err := flate.NewWriter(&b, level)
	if err != nil {
		panic(err)
	}
	if _, err := w.Write(p); err != nil {
		panic(err)
	}
	if err := w.Flush(); err != nil {
		panic(err)
	}
	out := b.Bytes()
	if !bytes.HasSuffix(out, []byte{0, 0, 0xff, 0xff}) {
		panic("flate: sync flush without the 00 00 ff ff tail")
	}
	return out[:len(out)-4]
}

// maskServerFrame turns an unmasked server frame (as AppendFrame and
// AppendMessage write) into the same frame sent by a client: MASK bit set, a
// key inserted after the length and the payload masked.
func maskServerFrame(f []byte, key [4]byte) []byte {
	hlen := 2
	switch f[1] & 0x7f {
	case 126:
		hlen += 2
	case 127:
		hlen += 8
	}
	if f[1]&0x80 != 0 {
		panic("maskServerFrame: frame already masked")
	}
	out := make([]byte, 0, len(f)+4)
	out = append(out, f[:hlen]...)
	out[1] |= 0x80
	out = append(out, key[:]...)
	out = append(out, f[hlen:]...)
	ws.Cipher(out[hlen+4:], key, 0)
	return out
}

// textOf returns a deterministic payload of n bytes mixing ASCII and
// multi-byte UTF-8 (never cut inside a code point when n allows).
func textOf(n int) []byte {
	const pattern = "Herald κόσμε € 𝄞 — ok. "
	var b []byte
	for len(b) < n {
		b = append(b, pattern...)
	}
	b = b[:n]
	// Trim a trailing partial code point and pad with ASCII.
	for len(b) > 0 && !utf8Accept.Feed(b).Complete() {
		b = b[:len(b)-1]
	}
	for len(b) < n {
		b = append(b, '.')
	}
	return b
}

// binaryOf returns n deterministic pseudo-random bytes.
func binaryOf(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	var w [8]byte
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(w[:], r.Uint64())
		copy(b[i:], w[:])
	}
	return b
}
