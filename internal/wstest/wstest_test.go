package wstest

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"net"
	"strings"
	"testing"
)

// bits turns "1000 0001 ..." into bytes, so expectations read like the
// RFC's frame diagrams.
func bits(s string) []byte {
	s = strings.ReplaceAll(s, " ", "")
	out := make([]byte, len(s)/8)
	for i := range out {
		for _, c := range s[i*8 : i*8+8] {
			out[i] = out[i]<<1 | byte(c-'0')
		}
	}
	return out
}

func unhex(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

func TestEncodeFrame(t *testing.T) {
	key := WithMask([4]byte{0x37, 0xfa, 0x21, 0x3d})
	big := bytes.Repeat([]byte{'x'}, 256)
	cases := []struct {
		name string
		got  []byte
		want []byte
	}{
		// RFC 6455 section 5.7.
		{"unmasked Hello", EncodeFrame(true, 0, OpText, []byte("Hello"), Unmasked()),
			unhex("81 05 48656c6c6f")},
		{"masked Hello", EncodeFrame(true, 0, OpText, []byte("Hello"), key),
			unhex("81 85 37fa213d 7f9f4d5158")},
		{"fragment Hel", EncodeFrame(false, 0, OpText, []byte("Hel"), Unmasked()),
			unhex("01 03 48656c")},
		{"continuation lo", EncodeFrame(true, 0, OpContinuation, []byte("lo"), Unmasked()),
			unhex("80 02 6c6f")},
		{"ping Hello", EncodeFrame(true, 0, OpPing, []byte("Hello"), Unmasked()),
			unhex("89 05 48656c6c6f")},
		{"256 bytes binary", EncodeFrame(true, 0, OpBinary, big, Unmasked())[:4],
			unhex("82 7e 0100")},
		{"64 KiB binary", EncodeFrame(true, 0, OpBinary, make([]byte, 65536), Unmasked())[:10],
			unhex("82 7f 0000000000010000")},
		// Malformed on purpose.
		{"all reserved bits, opcode 0xF", EncodeFrame(false, RSV1|RSV2|RSV3, 0xF, nil, Unmasked()),
			bits("0111 1111 0 0000000")},
		{"non-minimal 16-bit", EncodeFrame(true, 0, OpText, []byte("a"), Unmasked(), Len16()),
			unhex("81 7e 0001 61")},
		{"non-minimal 64-bit", EncodeFrame(true, 0, OpText, []byte("a"), Unmasked(), Len64()),
			unhex("81 7f 0000000000000001 61")},
		{"top bit set", EncodeFrame(true, 0, OpBinary, nil, Unmasked(), DeclaredLen(1<<63)),
			unhex("82 7f 8000000000000000")},
		{"declared 126, masked", EncodeFrame(true, 0, OpPing, nil, key, DeclaredLen(126)),
			unhex("89 fe 007e 37fa213d")},
	}
	for _, tc := range cases {
		if !bytes.Equal(tc.got, tc.want) {
			t.Errorf("%s: got % x, want % x", tc.name, tc.got, tc.want)
		}
	}
}

func TestMaskRoundTrip(t *testing.T) {
	p := make([]byte, 1031)
	for i := range p {
		p[i] = byte(i * 7)
	}
	k := [4]byte{1, 2, 3, 4}
	f := EncodeFrame(true, 0, OpBinary, p, WithMask(k))
	body := f[8:]
	for i := range body {
		body[i] ^= k[i%4]
	}
	if !bytes.Equal(body, p) {
		t.Fatal("masking is not the RFC's XOR")
	}
}

func TestFragments(t *testing.T) {
	var got []byte
	for _, f := range splitFrames(t, Fragments(OpText, RSV1, []byte("Hello"), 2)) {
		got = append(got, byte(f.OpCode), f.Rsv)
		if f.Fin {
			got = append(got, 'F')
		}
		got = append(got, f.Payload...)
	}
	want := "\x01\x04He\x00\x00ll\x00\x00Fo"
	if string(got) != want {
		t.Fatalf("fragments = %q, want %q", got, want)
	}
}

// splitFrames decodes client frames (masked) for the tests above.
func splitFrames(t *testing.T, b []byte) []Frame {
	var out []Frame
	for len(b) > 0 {
		n := int(b[1] & 0x7f)
		if n > 125 {
			t.Fatal("splitFrames handles short frames only")
		}
		f := Frame{Fin: b[0]&0x80 != 0, Rsv: b[0] >> 4 & 7, OpCode: OpCode(b[0] & 0xf)}
		var k [4]byte
		copy(k[:], b[2:6])
		f.Payload = append([]byte(nil), b[6:6+n]...)
		maskBytes(f.Payload, k)
		out = append(out, f)
		b = b[6+n:]
	}
	return out
}

func TestAcceptKey(t *testing.T) {
	// RFC 6455 section 1.3.
	if got := AcceptKey("dGhlIHNhbXBsZSBub25jZQ=="); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("AcceptKey = %q", got)
	}
	if k := NewKey(); len(k) != 24 || k == NewKey() {
		t.Fatalf("NewKey = %q", k)
	}
}

func TestDeflate(t *testing.T) {
	// RFC 7692 section 7.2.3.1: "Hello" compressed without context.
	got, err := Inflate(unhex("f2 48 cd c9 c9 07 00"))
	if err != nil || string(got) != "Hello" {
		t.Fatalf("Inflate = %q, %v", got, err)
	}
	for _, n := range []int{0, 1, 100, 70000} {
		p := bytes.Repeat([]byte("herald "), n)
		back, err := Inflate(Deflate(p))
		if err != nil || !bytes.Equal(back, p) {
			t.Fatalf("round trip of %d bytes: %v", len(p), err)
		}
	}
	if _, err := Inflate([]byte{0xff, 0xff}); err == nil {
		t.Fatal("Inflate accepted garbage")
	}
}

func TestRequestBytes(t *testing.T) {
	h := UpgradeHeader("example.com", "dGhlIHNhbXBsZSBub25jZQ==")
	MergeHeader(h, map[string][]string{"Origin": {"http://example.com"}, "Sec-Websocket-Version": nil})
	got := string(RequestBytes("GET", "/chat", h))
	want := "GET /chat HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\nOrigin: http://example.com\r\n" +
		"Sec-Websocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nUpgrade: websocket\r\n\r\n"
	if got != want {
		t.Fatalf("request:\n%q\nwant\n%q", got, want)
	}
}

// TestReadFrame feeds server frames through a pipe.
func TestReadFrame(t *testing.T) {
	cases := []struct {
		name    string
		in      []byte
		want    Frame
		wantErr string
	}{
		{"text", unhex("81 05 48656c6c6f"), Frame{Fin: true, OpCode: OpText, Payload: []byte("Hello")}, ""},
		{"compressed", unhex("c1 02 6869"), Frame{Fin: true, Rsv: RSV1, OpCode: OpText, Payload: []byte("hi")}, ""},
		{"masked", unhex("81 85 37fa213d 7f9f4d5158"), Frame{}, "masked"},
		{"non-minimal 16", unhex("81 7e 0005 6868686868"), Frame{}, "16-bit"},
		{"non-minimal 64", unhex("81 7f 0000000000000005 6868686868"), Frame{}, "64-bit"},
		{"truncated", unhex("81 05 4865"), Frame{}, "EOF"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			client, server := net.Pipe()
			defer client.Close()
			go func() {
				_, _ = server.Write(tc.in)
				_ = server.Close()
			}()
			c := &Conn{tb: t, NetConn: client, R: bufio.NewReader(client)}
			f, err := c.TryReadFrame()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if f.String() != tc.want.String() {
				t.Fatalf("got %v, want %v", f, tc.want)
			}
			c.ExpectEOF()
		})
	}
}
