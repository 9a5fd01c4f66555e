package codec

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// readServerFrame decodes one server frame with gobwas/ws, as an independent
// reference, and checks it fills b exactly.
func readServerFrame(t *testing.T, b []byte) ws.Frame {
	t.Helper()
	r := bytes.NewReader(b)
	h, err := ws.ReadHeader(r)
	if err != nil {
		t.Fatalf("gobwas/ws cannot read the header of % x...: %v", b[:min(len(b), 16)], err)
	}
	if h.Length > int64(len(b)) {
		t.Fatalf("header declares %d bytes, only %d given", h.Length, len(b))
	}
	f := ws.Frame{Header: h, Payload: make([]byte, h.Length)}
	if _, err := io.ReadFull(r, f.Payload); err != nil {
		t.Fatalf("payload: %v", err)
	}
	if r.Len() != 0 {
		t.Fatalf("%d bytes left after the frame", r.Len())
	}
	return f
}

func TestAppendFrameHeaders(t *testing.T) {
	for _, c := range []struct {
		op     ws.OpCode
		n      int
		header []byte
	}{
		{ws.OpText, 0, bits("1000 0001  0 0000000")},
		{ws.OpText, 5, bits("1000 0001  0 0000101")},
		{ws.OpBinary, 125, bits("1000 0010  0 1111101")},
		{ws.OpBinary, 126, bits("1000 0010  0 1111110  00000000 01111110")},
		{ws.OpBinary, 65535, bits("1000 0010  0 1111110  11111111 11111111")},
		{ws.OpBinary, 65536, bits("1000 0010  0 1111111  00000000 00000000 00000000 00000000 00000000 00000001 00000000 00000000")},
		{ws.OpBinary, 3<<20 + 7, bits("1000 0010  0 1111111  00000000 00000000 00000000 00000000 00000000 00110000 00000000 00000111")},
		{ws.OpPing, 3, bits("1000 1001  0 0000011")},
		{ws.OpPong, 0, bits("1000 1010  0 0000000")},
	} {
		p := binaryOf(c.n, uint64(c.n))
		got := AppendFrame(nil, c.op, p)
		if !bytes.Equal(got[:len(c.header)], c.header) || !bytes.Equal(got[len(c.header):], p) {
			t.Errorf("op %d, %d bytes: header % x, want % x", c.op, c.n, got[:len(c.header)], c.header)
		}
		if len(c.header) > MaxHeaderSize {
			t.Fatalf("header longer than MaxHeaderSize")
		}
		f := readServerFrame(t, got)
		if !f.Header.Fin || f.Header.Masked || f.Header.Rsv != 0 || f.Header.OpCode != c.op || !bytes.Equal(f.Payload, p) {
			t.Errorf("op %d, %d bytes: gobwas reads %+v", c.op, c.n, f.Header)
		}
	}
}

func TestAppendFrameAppends(t *testing.T) {
	dst := []byte("prefix")
	dst = AppendFrame(dst, ws.OpText, []byte("a"))
	dst = AppendFrame(dst, ws.OpBinary, []byte("bc"))
	want := "prefix\x81\x01a\x82\x02bc"
	if string(dst) != want {
		t.Fatalf("%q, want %q", dst, want)
	}
	// Reusing a buffer with room does not reallocate.
	buf := make([]byte, 0, 64)
	out := AppendFrame(buf, ws.OpText, []byte("hello"))
	if &out[0] != &buf[:1][0] {
		t.Fatalf("AppendFrame reallocated a buffer with room")
	}
}

func TestAppendCloseFrame(t *testing.T) {
	for _, c := range []struct {
		code   ws.StatusCode
		reason string
		want   []byte
	}{
		{1000, "", []byte{0x88, 0x02, 0x03, 0xe8}},
		{1001, "bye", []byte{0x88, 0x05, 0x03, 0xe9, 'b', 'y', 'e'}},
		{4000, "κ", []byte{0x88, 0x04, 0x0f, 0xa0, 0xce, 0xba}},
	} {
		if got := AppendCloseFrame(nil, c.code, c.reason); !bytes.Equal(got, c.want) {
			t.Errorf("close %d %q: % x, want % x", c.code, c.reason, got, c.want)
		}
	}

	long := strings.Repeat("r", 200)
	for _, c := range []struct {
		name, reason, want string
	}{
		{"123 bytes fit", long[:123], long[:123]},
		{"124 bytes are cut to 123", long[:124], long[:123]},
		{"long ASCII", long, long[:123]},
		{"cut at a code point boundary", long[:122] + "€", long[:122]},
		{"cut before a 4-byte code point", long[:120] + "𝄞", long[:120]},
		{"4-byte code point ending at 123", long[:119] + "𝄞" + "tail", long[:119] + "𝄞"},
		{"all multi-byte", strings.Repeat("€", 60), strings.Repeat("€", 41)},
	} {
		got := AppendCloseFrame(nil, ws.StatusGoingAway, c.reason)
		f := readServerFrame(t, got)
		if f.Header.OpCode != ws.OpClose || len(f.Payload) > 125 {
			t.Fatalf("%s: %+v", c.name, f.Header)
		}
		code, reason := ws.ParseCloseFrameData(f.Payload)
		if code != ws.StatusGoingAway || reason != c.want || !utf8.ValidString(reason) {
			t.Errorf("%s: code %d reason %q (%d bytes), want %q", c.name, code, reason, len(reason), c.want)
		}
		// What the server sends, its own decoder accepts (once masked).
		ev, _, err := new(Decoder).Next(maskServerFrame(got, testKey))
		if err != nil || ev.Kind != EventClose || ev.CloseCode != ws.StatusGoingAway || string(ev.Payload) != c.want {
			t.Errorf("%s: decoder reads %v, %v", c.name, toRec(ev), err)
		}
	}
}

func TestAppendMessageUncompressed(t *testing.T) {
	p := textOf(300)
	plain := AppendFrame(nil, ws.OpText, p)
	for _, c := range []struct {
		name     string
		compress bool
		minSize  int
	}{
		{"compression off", false, 0},
		{"below minSize", true, 301},
		{"far below minSize", true, 1 << 20},
	} {
		got := AppendMessage([]byte("x"), ws.OpText, p, c.compress, c.minSize)
		if !bytes.Equal(got, append([]byte("x"), plain...)) {
			t.Errorf("%s: % x..., want the plain frame", c.name, got[:8])
		}
		if got[1]&rsv1 != 0 {
			t.Errorf("%s: RSV1 set", c.name)
		}
	}
	// At minSize exactly it is compressed.
	if got := AppendMessage(nil, ws.OpText, p, true, 300); got[0]&rsv1 == 0 {
		t.Errorf("message of minSize bytes was not compressed")
	}
	// An empty message with minSize 0 compresses to the single byte 0x00
	// of RFC 7692 section 7.2.3.6.
	if got := AppendMessage(nil, ws.OpBinary, nil, true, 0); !bytes.Equal(got, []byte{0xc2, 0x01, 0x00}) {
		t.Errorf("empty compressed message: % x", got)
	}
}
