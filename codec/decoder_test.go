package codec

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unsafe"

	"github.com/gobwas/ws"
)

// vector is one decoder test case: a client byte stream, the events it must
// produce in order, and the error that must end it (nil: none).
type vector struct {
	name   string
	cfg    Decoder // only MaxMessageSize and Compression are set
	stream []byte
	want   []rec
	err    error
}

var (
	withCompression = Decoder{Compression: true}
	limit100        = Decoder{MaxMessageSize: 100}
)

// withPayload completes a header given as bits with testKey and the masked
// payload.
func withPayload(header []byte, payload []byte) []byte {
	out := append(append([]byte{}, header...), testKey[:]...)
	start := len(out)
	out = append(out, payload...)
	ws.Cipher(out[start:], testKey, 0)
	return out
}

func text(b0 byte, p string) []byte { return cf(b0|byte(ws.OpText), p) }
func bin(b0 byte, p string) []byte  { return cf(b0|byte(ws.OpBinary), p) }
func cont(b0 byte, p string) []byte { return cf(b0|byte(ws.OpContinuation), p) }
func ping(p string) []byte          { return cf(fin|byte(ws.OpPing), p) }
func pong(p string) []byte          { return cf(fin|byte(ws.OpPong), p) }
func closeFrame(p string) []byte    { return cf(fin|byte(ws.OpClose), p) }

func decoderVectors() []vector {
	var vs []vector
	add := func(v vector) { vs = append(vs, v) }

	// RFC 6455 section 5.7 examples, byte for byte.
	add(vector{name: "rfc masked text Hello",
		stream: []byte{0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58},
		want:   []rec{textMsg("Hello")}})
	add(vector{name: "rfc masked pong Hello",
		stream: []byte{0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58},
		want:   []rec{pongEv("Hello")}})
	add(vector{name: "rfc unmasked text Hello from a client",
		stream: []byte{0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f}, err: ErrUnmaskedFrame})
	add(vector{name: "rfc unmasked ping Hello from a client",
		stream: []byte{0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f}, err: ErrUnmaskedFrame})
	add(vector{name: "rfc fragmented Hel lo",
		stream: cat(text(0, "Hel"), cont(fin, "lo")), want: []rec{textMsg("Hello")}})

	// Payload sizes around the length encodings.
	for _, n := range []int{0, 1, 125, 126, 127, 65535, 65536, 3 << 20} {
		p := binaryOf(n, uint64(n))
		add(vector{name: fmt.Sprintf("binary %d bytes", n),
			stream: cfb(fin|byte(ws.OpBinary), p), want: []rec{binMsg(string(p))}})
	}
	for _, n := range []int{0, 125, 126, 65535, 65536, 256 << 10} {
		p := textOf(n)
		add(vector{name: fmt.Sprintf("text %d bytes", n),
			stream: cfb(fin|byte(ws.OpText), p), want: []rec{textMsg(string(p))}})
	}

	// Length encodings written out bit by bit.
	p125, p126, p65535, p65536 := binaryOf(125, 1), binaryOf(126, 2), binaryOf(65535, 3), binaryOf(65536, 4)
	add(vector{name: "bits 7-bit length 125",
		stream: withPayload(bits("1000 0010  1 1111101"), p125), want: []rec{binMsg(string(p125))}})
	add(vector{name: "bits 16-bit length 126",
		stream: withPayload(bits("1000 0010  1 1111110  00000000 01111110"), p126), want: []rec{binMsg(string(p126))}})
	add(vector{name: "bits 16-bit length 65535",
		stream: withPayload(bits("1000 0010  1 1111110  11111111 11111111"), p65535), want: []rec{binMsg(string(p65535))}})
	add(vector{name: "bits 64-bit length 65536",
		stream: withPayload(bits("1000 0010  1 1111111  00000000 00000000 00000000 00000000 00000000 00000001 00000000 00000000"), p65536),
		want:   []rec{binMsg(string(p65536))}})
	add(vector{name: "bits 16-bit length 125 is not minimal",
		stream: withPayload(bits("1000 0010  1 1111110  00000000 01111101"), p125), err: ErrNonMinimalLength})
	add(vector{name: "bits 16-bit length 0 is not minimal",
		stream: withPayload(bits("1000 0010  1 1111110  00000000 00000000"), nil), err: ErrNonMinimalLength})
	add(vector{name: "bits 64-bit length 65535 is not minimal",
		stream: withPayload(bits("1000 0010  1 1111111  00000000 00000000 00000000 00000000 00000000 00000000 11111111 11111111"), p65535),
		err:    ErrNonMinimalLength})
	add(vector{name: "bits 64-bit length 126 is not minimal",
		stream: withPayload(bits("1000 0010  1 1111111  00000000 00000000 00000000 00000000 00000000 00000000 00000000 01111110"), p126),
		err:    ErrNonMinimalLength})
	add(vector{name: "bits 64-bit length 0 is not minimal",
		stream: withPayload(bits("1000 0001  1 1111111  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000"), nil),
		err:    ErrNonMinimalLength})
	add(vector{name: "bits 64-bit length with MSB set",
		stream: withPayload(bits("1000 0010  1 1111111  10000000 00000000 00000000 00000000 00000000 00000001 00000000 00000000"), nil),
		err:    ErrLengthOverflow})
	add(vector{name: "bits 64-bit length all ones",
		stream: withPayload(bits("1000 0010  1 1111111  11111111 11111111 11111111 11111111 11111111 11111111 11111111 11111111"), nil),
		err:    ErrLengthOverflow})
	add(vector{name: "bits 64-bit length 2^62 without a limit waits for the payload",
		stream: withPayload(bits("1000 0010  1 1111111  01000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000"), []byte("abc"))})
	add(vector{name: "bits 64-bit length 2^62 over the limit",
		cfg:    limit100,
		stream: withPayload(bits("1000 0010  1 1111111  01000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000"), []byte("abc")),
		err:    ErrMessageTooBig})

	// Masking.
	add(vector{name: "unmasked binary", stream: frameSpec{b0: fin | byte(ws.OpBinary), payload: []byte("x"), unmasked: true}.build(), err: ErrUnmaskedFrame})
	add(vector{name: "unmasked empty text", stream: bits("1000 0001  0 0000000"), err: ErrUnmaskedFrame})
	add(vector{name: "unmasked close", stream: frameSpec{b0: fin | byte(ws.OpClose), payload: []byte{3, 232}, unmasked: true}.build(), err: ErrUnmaskedFrame})
	add(vector{name: "unmasked continuation",
		stream: cat(text(0, "a"), frameSpec{b0: fin, payload: []byte("b"), unmasked: true}.build()), err: ErrUnmaskedFrame})
	add(vector{name: "masked with zero key",
		stream: frameSpec{b0: fin | byte(ws.OpText), payload: []byte("zero key")}.build(), want: []rec{textMsg("zero key")}})

	// Reserved bits.
	add(vector{name: "rsv1 text without compression", stream: text(rsv1|fin, "a"), err: ErrReservedBits})
	add(vector{name: "rsv2 text", stream: text(rsv2|fin, "a"), err: ErrReservedBits})
	add(vector{name: "rsv3 text", stream: text(rsv3|fin, "a"), err: ErrReservedBits})
	add(vector{name: "rsv2 text with compression", cfg: withCompression, stream: text(rsv2|fin, "a"), err: ErrReservedBits})
	add(vector{name: "rsv3 binary with compression", cfg: withCompression, stream: bin(rsv3|fin, "a"), err: ErrReservedBits})
	add(vector{name: "rsv1+rsv2 with compression", cfg: withCompression, stream: text(rsv1|rsv2|fin, "a"), err: ErrReservedBits})
	add(vector{name: "rsv1 ping with compression", cfg: withCompression, stream: cf(rsv1|fin|byte(ws.OpPing), "a"), err: ErrReservedBits})
	add(vector{name: "rsv1 close without compression", stream: cf(rsv1|fin|byte(ws.OpClose), ""), err: ErrReservedBits})
	add(vector{name: "rsv3 pong", stream: cf(rsv3|fin|byte(ws.OpPong), ""), err: ErrReservedBits})
	add(vector{name: "rsv1 on a continuation with compression", cfg: withCompression,
		stream: cat(text(rsv1, "\xf2\x48"), cont(rsv1|fin, "\xcd\xc9\xc9\x07\x00")), err: ErrReservedBits})
	add(vector{name: "rsv1 on a continuation of an uncompressed message", cfg: withCompression,
		stream: cat(text(0, "He"), cont(rsv1|fin, "llo")), err: ErrReservedBits})
	add(vector{name: "rsv2 on a continuation", stream: cat(bin(0, "a"), cont(rsv2|fin, "b")), err: ErrReservedBits})

	// Reserved opcodes.
	for _, op := range []byte{3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf} {
		add(vector{name: fmt.Sprintf("reserved opcode %#x", op), stream: cf(fin|op, ""), err: ErrReservedOpcode})
		add(vector{name: fmt.Sprintf("reserved opcode %#x not final with payload", op), stream: cf(op, "abc"), err: ErrReservedOpcode})
		add(vector{name: fmt.Sprintf("reserved opcode %#x inside a fragmented message", op),
			stream: cat(text(0, "a"), cf(fin|op, "")), err: ErrReservedOpcode})
	}

	// Control frames.
	p125s := strings.Repeat("p", 125)
	add(vector{name: "ping echo", stream: ping("hello"), want: []rec{pingEv("hello")}})
	add(vector{name: "empty ping", stream: ping(""), want: []rec{pingEv("")}})
	add(vector{name: "ping 125 bytes", stream: ping(p125s), want: []rec{pingEv(p125s)}})
	add(vector{name: "pong payload", stream: pong("data"), want: []rec{pongEv("data")}})
	add(vector{name: "empty pong", stream: pong(""), want: []rec{pongEv("")}})
	add(vector{name: "ping with binary payload", stream: cf(fin|byte(ws.OpPing), "\x00\xff\xfe"), want: []rec{pingEv("\x00\xff\xfe")}})
	add(vector{name: "ping 126 bytes", stream: ping(p125s + "p"), err: ErrControlTooLong})
	add(vector{name: "pong 126 bytes", stream: pong(p125s + "p"), err: ErrControlTooLong})
	add(vector{name: "close 126 bytes", stream: closeFrame(closeBody(1000, p125s[:124])), err: ErrControlTooLong})
	add(vector{name: "ping 65536 bytes in 64-bit form",
		stream: frameSpec{b0: fin | byte(ws.OpPing), payload: binaryOf(65536, 9)}.build(), err: ErrControlTooLong})
	add(vector{name: "ping with 16-bit length 125", stream: frameSpec{b0: fin | byte(ws.OpPing), payload: []byte(p125s), form: len16}.build(),
		err: ErrNonMinimalLength})
	add(vector{name: "200 bytes in the 64-bit form", stream: frameSpec{b0: fin | byte(ws.OpBinary), payload: binaryOf(200, 5), form: len64}.build(),
		err: ErrNonMinimalLength})
	add(vector{name: "fragmented ping", stream: cf(byte(ws.OpPing), "a"), err: ErrControlFragmented})
	add(vector{name: "fragmented pong", stream: cf(byte(ws.OpPong), ""), err: ErrControlFragmented})
	add(vector{name: "fragmented close", stream: cf(byte(ws.OpClose), closeBody(1000, "")), err: ErrControlFragmented})

	// Fragmentation.
	add(vector{name: "binary in three fragments",
		stream: cat(bin(0, "\x00\x01"), cont(0, "\x02"), cont(fin, "\x03\x04")), want: []rec{binMsg("\x00\x01\x02\x03\x04")}})
	many := textOf(1000)
	var manyFrames [][]byte
	for i := range many {
		b0 := byte(ws.OpContinuation)
		if i == 0 {
			b0 = byte(ws.OpText)
		}
		if i == len(many)-1 {
			b0 |= fin
		}
		manyFrames = append(manyFrames, cfb(b0, many[i:i+1]))
	}
	add(vector{name: "text in 1000 one-byte fragments", stream: cat(manyFrames...), want: []rec{textMsg(string(many))}})
	add(vector{name: "all fragments empty", stream: cat(text(0, ""), cont(0, ""), cont(fin, "")), want: []rec{textMsg("")}})
	add(vector{name: "empty first and last fragments", stream: cat(bin(0, ""), cont(0, "ab"), cont(0, ""), cont(fin, "")),
		want: []rec{binMsg("ab")}})
	add(vector{name: "empty middle fragments", stream: cat(text(0, "a"), cont(0, ""), cont(0, ""), cont(fin, "b")), want: []rec{textMsg("ab")}})
	add(vector{name: "ping between fragments",
		stream: cat(text(0, "Hel"), ping("p"), cont(fin, "lo")), want: []rec{pingEv("p"), textMsg("Hello")}})
	add(vector{name: "pong and ping between fragments",
		stream: cat(bin(0, "a"), pong("1"), cont(0, "b"), ping("2"), ping(""), cont(fin, "c")),
		want:   []rec{pongEv("1"), pingEv("2"), pingEv(""), binMsg("abc")}})
	add(vector{name: "close between fragments",
		stream: cat(text(0, "Hel"), closeFrame(closeBody(1001, "going"))), want: []rec{closeEv(1001, "going")}})
	add(vector{name: "control frames after empty fragments",
		stream: cat(text(0, ""), ping("a"), cont(0, ""), pong("b"), cont(fin, "")), want: []rec{pingEv("a"), pongEv("b"), textMsg("")}})
	add(vector{name: "continuation without a message", stream: cont(fin, "x"), err: ErrUnexpectedContinuation})
	add(vector{name: "non-final continuation without a message", stream: cont(0, "x"), err: ErrUnexpectedContinuation})
	add(vector{name: "continuation after a complete message",
		stream: cat(text(fin, "a"), cont(fin, "b")), want: []rec{textMsg("a")}, err: ErrUnexpectedContinuation})
	add(vector{name: "continuation after a complete fragmented message",
		stream: cat(text(0, "a"), cont(fin, "b"), cont(fin, "c")), want: []rec{textMsg("ab")}, err: ErrUnexpectedContinuation})
	add(vector{name: "text during a fragmented text message",
		stream: cat(text(0, "a"), text(fin, "b")), err: ErrExpectedContinuation})
	add(vector{name: "binary during a fragmented text message",
		stream: cat(text(0, "a"), cont(0, "b"), bin(fin, "c")), err: ErrExpectedContinuation})
	add(vector{name: "non-final text during a fragmented binary message",
		stream: cat(bin(0, "a"), text(0, "b")), err: ErrExpectedContinuation})
	add(vector{name: "messages after a fragmented one",
		stream: cat(bin(0, "a"), cont(fin, "b"), text(fin, "c"), text(0, "d"), cont(fin, "e")),
		want:   []rec{binMsg("ab"), textMsg("c"), textMsg("de")}})

	// UTF-8.
	for _, s := range []string{"κόσμε", "€", "𝄞", "\U0010FFFF", "\uFFFD", "\uD7FF", "\uE000", "\x00", "\u0080", "\u07FF", "\u0800", "\uFFFF", "\U00010000",
		"Herald κόσμε € 𝄞 \U0010FFFF end"} {
		add(vector{name: fmt.Sprintf("valid text %q", s), stream: text(fin, s), want: []rec{textMsg(s)}})
	}
	for _, s := range []string{
		"\xc0\xaf", "\xc1\xbf", "\xe0\x80\xaf", "\xe0\x9f\xbf", "\xf0\x80\x80\xaf", "\xf0\x8f\xbf\xbf", // overlong
		"\xed\xa0\x80", "\xed\xbf\xbf", "\xed\xa0\x80\xed\xb0\x80", // surrogates, also as a pair
		"\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xf7\xbf\xbf\xbf", "\xf8\x88\x80\x80\x80", "\xfc\x84\x80\x80\x80\x80", // beyond U+10FFFF
		"\x80", "\xbf", "a\x80b", "\xfe", "\xff", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
		"\xce", "\xe2\x82", "\xf0\x9d\x84", "ok\xe2\x82", // truncated at the end of the message
		"\xe2\x82a", "\xf0\x9d\x84\x9e\x9e",
	} {
		add(vector{name: fmt.Sprintf("invalid text %q", s), stream: text(fin, s), err: ErrInvalidUTF8})
	}
	add(vector{name: "text truncated at the end of a fragmented message",
		stream: cat(text(0, "ok"), cont(0, "\xe2"), cont(fin, "\x82")), err: ErrInvalidUTF8})
	add(vector{name: "code point split across three fragments",
		stream: cat(text(0, "\xf0"), cont(0, "\x9d\x84"), ping("x"), cont(fin, "\x9e")), want: []rec{pingEv("x"), textMsg("𝄞")}})
	add(vector{name: "invalid continuation byte in the next fragment",
		stream: cat(text(0, "\xe2\x82"), cont(fin, "a")), err: ErrInvalidUTF8})
	add(vector{name: "surrogate split across fragments",
		stream: cat(text(0, "ab\xed"), cont(fin, "\xa0\x80")), err: ErrInvalidUTF8})
	add(vector{name: "invalid UTF-8 in a binary message is fine",
		stream: bin(fin, "\xff\xfe\xed\xa0\x80"), want: []rec{binMsg("\xff\xfe\xed\xa0\x80")}})
	add(vector{name: "invalid UTF-8 in a ping is fine",
		stream: ping("\xff"), want: []rec{pingEv("\xff")}})

	// Close frames.
	add(vector{name: "close without body", stream: closeFrame(""), want: []rec{closeEv(ws.StatusNoStatusRcvd, "")}})
	add(vector{name: "close with one byte", stream: closeFrame("\x03"), err: ErrCloseBody})
	add(vector{name: "close 1000", stream: closeFrame(closeBody(1000, "")), want: []rec{closeEv(1000, "")}})
	add(vector{name: "close 1000 bye", stream: closeFrame(closeBody(1000, "bye")), want: []rec{closeEv(1000, "bye")}})
	add(vector{name: "close 1001 longest reason", stream: closeFrame(closeBody(1001, p125s[:123])), want: []rec{closeEv(1001, p125s[:123])}})
	add(vector{name: "close 4999 multibyte reason", stream: closeFrame(closeBody(4999, "κόσμε")), want: []rec{closeEv(4999, "κόσμε")}})
	for _, code := range []uint16{0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535} {
		add(vector{name: fmt.Sprintf("close code %d", code), stream: closeFrame(closeBody(code, "")), err: ErrCloseCode})
	}
	add(vector{name: "close reason invalid UTF-8", stream: closeFrame(closeBody(1000, "\xff")), err: ErrInvalidUTF8})
	add(vector{name: "close reason truncated code point", stream: closeFrame(closeBody(1000, "ab\xe2\x82")), err: ErrInvalidUTF8})
	add(vector{name: "close reason surrogate", stream: closeFrame(closeBody(1000, "\xed\xa0\x80")), err: ErrInvalidUTF8})

	// MaxMessageSize.
	p100 := string(binaryOf(100, 100))
	add(vector{name: "limit: message at the limit", cfg: limit100, stream: bin(fin, p100), want: []rec{binMsg(p100)}})
	add(vector{name: "limit: message one byte over", cfg: limit100, stream: bin(fin, p100+"x"), err: ErrMessageTooBig})
	add(vector{name: "limit: text one byte over", cfg: limit100, stream: text(fin, strings.Repeat("a", 101)), err: ErrMessageTooBig})
	add(vector{name: "limit: fragments at the limit", cfg: limit100,
		stream: cat(bin(0, p100[:60]), ping(p125s), cont(fin, p100[60:])), want: []rec{pingEv(p125s), binMsg(p100)}})
	add(vector{name: "limit: fragments over the limit", cfg: limit100,
		stream: cat(bin(0, p100[:60]), cont(0, p100[60:]), cont(fin, "x")), err: ErrMessageTooBig})
	add(vector{name: "limit: second message is counted afresh", cfg: limit100,
		stream: cat(bin(fin, p100), text(0, strings.Repeat("b", 50)), cont(fin, strings.Repeat("c", 50))),
		want:   []rec{binMsg(p100), textMsg(strings.Repeat("b", 50) + strings.Repeat("c", 50))}})
	add(vector{name: "limit: control frames are not counted", cfg: limit100,
		stream: cat(ping(p125s), closeFrame(closeBody(1000, p125s[:123]))), want: []rec{pingEv(p125s), closeEv(1000, p125s[:123])}})

	// Several frames in one input.
	add(vector{name: "many frames",
		stream: cat(text(fin, "one"), bin(fin, "two"), ping("three"), text(0, "fo"), pong("five"), cont(fin, "ur"), closeFrame(closeBody(1000, "six"))),
		want:   []rec{textMsg("one"), binMsg("two"), pingEv("three"), pongEv("five"), textMsg("four"), closeEv(1000, "six")}})
	add(vector{name: "events before an error are delivered",
		stream: cat(text(fin, "ok"), ping("p"), text(fin, "\xff"), text(fin, "never")),
		want:   []rec{textMsg("ok"), pingEv("p")}, err: ErrInvalidUTF8})
	add(vector{name: "incomplete trailing frame",
		stream: cat(text(fin, "done"), text(fin, "partial")[:5]), want: []rec{textMsg("done")}})

	// permessage-deflate, RFC 7692 section 7.2.3 examples.
	add(vector{name: "rfc7692 compressed Hello", cfg: withCompression,
		stream: cf(rsv1|fin|byte(ws.OpText), "\xf2\x48\xcd\xc9\xc9\x07\x00"), want: []rec{textMsg("Hello")}})
	add(vector{name: "rfc7692 compressed Hello in two fragments", cfg: withCompression,
		stream: cat(cf(rsv1|byte(ws.OpText), "\xf2\x48\xcd"), cf(fin, "\xc9\xc9\x07\x00")), want: []rec{textMsg("Hello")}})
	add(vector{name: "rfc7692 compressed Hello with a ping between fragments", cfg: withCompression,
		stream: cat(cf(rsv1|byte(ws.OpText), "\xf2\x48\xcd"), ping("p"), cf(fin, "\xc9\xc9\x07\x00")),
		want:   []rec{pingEv("p"), textMsg("Hello")}})
	add(vector{name: "rfc7692 stored block", cfg: withCompression,
		stream: cf(rsv1|fin|byte(ws.OpText), "\x00\x05\x00\xfa\xff\x48\x65\x6c\x6c\x6f\x00"), want: []rec{textMsg("Hello")}})
	add(vector{name: "rfc7692 BFINAL set", cfg: withCompression,
		stream: cf(rsv1|fin|byte(ws.OpText), "\xf3\x48\xcd\xc9\xc9\x07\x00\x00"), want: []rec{textMsg("Hello")}})
	add(vector{name: "rfc7692 two deflate blocks", cfg: withCompression,
		stream: cf(rsv1|fin|byte(ws.OpText), "\xf2\x48\x05\x00\x00\x00\xff\xff\xca\xc9\xc9\x07\x00"), want: []rec{textMsg("Hello")}})
	add(vector{name: "rfc7692 empty message", cfg: withCompression,
		stream: cf(rsv1|fin|byte(ws.OpBinary), "\x00"), want: []rec{binMsg("")}})
	add(vector{name: "uncompressed message with compression negotiated", cfg: withCompression,
		stream: text(fin, "plain"), want: []rec{textMsg("plain")}})
	add(vector{name: "compressed then uncompressed", cfg: withCompression,
		stream: cat(cf(rsv1|fin|byte(ws.OpText), "\xf2\x48\xcd\xc9\xc9\x07\x00"), text(fin, "\xf2")),
		want:   []rec{textMsg("Hello")}, err: ErrInvalidUTF8})
	add(vector{name: "garbage compressed payload", cfg: withCompression,
		stream: cf(rsv1|fin|byte(ws.OpBinary), "\xff\xff\xff\xff"), err: ErrBadCompression})
	add(vector{name: "empty compressed payload", cfg: withCompression,
		stream: cf(rsv1|fin|byte(ws.OpBinary), ""), err: ErrBadCompression})
	add(vector{name: "compressed text with invalid UTF-8", cfg: withCompression,
		stream: cfb(rsv1|fin|byte(ws.OpText), deflateRaw([]byte("ok \xed\xa0\x80"), 6)), err: ErrInvalidUTF8})
	add(vector{name: "compressed text truncated code point", cfg: withCompression,
		stream: cfb(rsv1|fin|byte(ws.OpText), deflateRaw([]byte("ok \xe2\x82"), 6)), err: ErrInvalidUTF8})
	add(vector{name: "compressed binary with invalid UTF-8 is fine", cfg: withCompression,
		stream: cfb(rsv1|fin|byte(ws.OpBinary), deflateRaw([]byte("\xff\xfe"), 6)), want: []rec{binMsg("\xff\xfe")}})
	big := textOf(200 << 10)
	add(vector{name: "compressed 200 KiB text", cfg: Decoder{Compression: true, MaxMessageSize: 200 << 10},
		stream: cfb(rsv1|fin|byte(ws.OpText), deflateRaw(big, 9)), want: []rec{textMsg(string(big))}})
	add(vector{name: "compressed 200 KiB text over a limit of 200 KiB - 1", cfg: Decoder{Compression: true, MaxMessageSize: 200<<10 - 1},
		stream: cfb(rsv1|fin|byte(ws.OpText), deflateRaw(big, 9)), err: ErrMessageTooBig})
	return vs
}

// TestDecoderVectors decodes every vector with the stream delivered whole,
// one byte per call, in fixed and random chunk sizes, and (for short
// streams) split in two at every position. Every delivery must give the same
// events and the same error.
func TestDecoderVectors(t *testing.T) {
	for _, v := range decoderVectors() {
		t.Run(v.name, func(t *testing.T) {
			check := func(how string, next func() int) {
				t.Helper()
				got, err := decodeAll(t, v.cfg, v.stream, next)
				if !errors.Is(err, v.err) || (v.err == nil) != (err == nil) {
					t.Fatalf("%s: error %v, want %v", how, err, v.err)
				}
				if !equalRecs(got, v.want) {
					t.Fatalf("%s: events\n got %v\nwant %v", how, got, v.want)
				}
			}
			check("whole", whole)
			check("one byte per call", oneByte)
			for _, n := range []int{2, 3, 7, 13, 4096} {
				check(fmt.Sprintf("chunks of %d", n), chunksOf(n))
			}
			for seed := range uint64(3) {
				check(fmt.Sprintf("random chunks up to 16 (seed %d)", seed), randomChunks(seed, 16))
				check(fmt.Sprintf("random chunks up to 64 KiB (seed %d)", seed), randomChunks(seed, 64<<10))
			}
			if len(v.stream) <= 300 {
				for k := 0; k <= len(v.stream); k++ {
					check(fmt.Sprintf("split at %d", k), cuts(k))
				}
			}
		})
	}
}

func equalRecs(a, b []rec) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestErrorCloseCodes pins the close code each decoder error fails the
// connection with.
func TestErrorCloseCodes(t *testing.T) {
	for _, c := range []struct {
		err  error
		code ws.StatusCode
	}{
		{ErrReservedBits, 1002}, {ErrReservedOpcode, 1002}, {ErrUnmaskedFrame, 1002},
		{ErrControlTooLong, 1002}, {ErrControlFragmented, 1002}, {ErrUnexpectedContinuation, 1002},
		{ErrExpectedContinuation, 1002}, {ErrNonMinimalLength, 1002}, {ErrLengthOverflow, 1002},
		{ErrCloseBody, 1002}, {ErrCloseCode, 1002},
		{ErrInvalidUTF8, 1007}, {ErrBadCompression, 1007},
		{ErrMessageTooBig, 1009},
		{errors.New("anything else"), 1011},
		{fmt.Errorf("session: read: %w", ErrInvalidUTF8), 1007},
	} {
		if got := CloseCode(c.err); got != c.code {
			t.Errorf("CloseCode(%v) = %d, want %d", c.err, got, c.code)
		}
	}
}

// TestValidCloseCode checks every 16-bit code against RFC 6455 section 7.4
// and the IANA registry: 1000-1003 and 1007-1014 are defined, 3000-4999 are
// for libraries and applications; 1004 is reserved, 1005, 1006 and 1015 must
// never be sent, and everything else is unassigned or reserved.
func TestValidCloseCode(t *testing.T) {
	defined := map[int]bool{1000: true, 1001: true, 1002: true, 1003: true, 1007: true, 1008: true, 1009: true,
		1010: true, 1011: true, 1012: true, 1013: true, 1014: true}
	for code := 0; code <= 0xffff; code++ {
		want := defined[code] || (code >= 3000 && code <= 4999)
		if got := ValidCloseCode(ws.StatusCode(code)); got != want {
			t.Errorf("ValidCloseCode(%d) = %v, want %v", code, got, want)
		}
	}
}

// TestCloseCodesOnTheWire sends a close frame with every code 0..5000 and
// checks the decoder accepts exactly the valid ones.
func TestCloseCodesOnTheWire(t *testing.T) {
	var d Decoder
	defer d.Reset()
	for code := 0; code <= 5000; code++ {
		in := closeFrame(closeBody(uint16(code), "r"))
		ev, n, err := d.Next(in)
		if ValidCloseCode(ws.StatusCode(code)) {
			if err != nil || n != len(in) || ev.Kind != EventClose || ev.CloseCode != ws.StatusCode(code) || string(ev.Payload) != "r" {
				t.Fatalf("close %d: event %v, n %d, err %v", code, toRec(ev), n, err)
			}
		} else if !errors.Is(err, ErrCloseCode) {
			t.Fatalf("close %d: err %v, want ErrCloseCode", code, err)
		}
	}
}

// TestMaxMessageSizeFromHeader feeds only a frame header whose length is
// over the limit: the decoder must refuse it without waiting for the payload.
func TestMaxMessageSizeFromHeader(t *testing.T) {
	for _, c := range []struct {
		name  string
		limit int64
		lead  []byte // frames before the one over the limit
		spec  frameSpec
	}{
		{"7-bit length", 100, nil, frameSpec{b0: fin | byte(ws.OpBinary), declared: 101, key: testKey}},
		{"16-bit length", 1000, nil, frameSpec{b0: fin | byte(ws.OpText), declared: 1001, key: testKey}},
		{"64-bit length", 1 << 20, nil, frameSpec{b0: byte(ws.OpBinary), declared: 1<<20 + 1, key: testKey}},
		{"64-bit length near 2^63", 1 << 20, nil, frameSpec{b0: fin | byte(ws.OpBinary), declared: 1<<63 - 1, key: testKey}},
		{"continuation over the total", 100, cat(text(0, strings.Repeat("a", 99))), frameSpec{b0: fin, declared: 2, key: testKey}},
		// msgLen + 2^63-1 wraps around to a negative total: the limit must
		// hold anyway, or the peer could stream an unbounded message.
		{"continuation whose length would overflow the total", 100, cat(text(0, "a")), frameSpec{b0: fin, declared: 1<<63 - 1, key: testKey}},
		{"compressed continuation whose length would overflow the total", 100, cat(cf(rsv1|byte(ws.OpText), "\xf2")),
			frameSpec{b0: fin, declared: 1<<63 - 1, key: testKey}},
		{"continuation after a ping", 100, cat(bin(0, strings.Repeat("a", 50)), ping("x"), cont(0, strings.Repeat("a", 50))),
			frameSpec{b0: 0, declared: 1, key: testKey}},
	} {
		t.Run(c.name, func(t *testing.T) {
			header := c.spec.build() // declared length, no payload: exactly the header
			d := Decoder{MaxMessageSize: c.limit, Compression: true}
			defer d.Reset()
			got, err := feed(t, &d, cat(c.lead, header), whole)
			if !errors.Is(err, ErrMessageTooBig) {
				t.Fatalf("events %v, err %v; want ErrMessageTooBig from the header alone", got, err)
			}
			if CloseCode(err) != ws.StatusMessageTooBig {
				t.Fatalf("close code %d", CloseCode(err))
			}
			// One byte short of the header is not enough to decide.
			d2 := Decoder{MaxMessageSize: c.limit, Compression: true}
			defer d2.Reset()
			stream := cat(c.lead, header[:len(header)-1])
			if _, err := feed(t, &d2, stream, whole); err != nil {
				t.Fatalf("partial header: err %v", err)
			}
		})
	}
}

// TestFailFastUTF8 delivers the first part of a text frame whose payload
// holds an invalid byte: the decoder must report it before the rest of the
// frame arrives.
func TestFailFastUTF8(t *testing.T) {
	for _, c := range []struct {
		name   string
		stream []byte
		bad    int // offset of the first byte no continuation can repair
	}{
		{"invalid byte in a partial frame", text(fin, "ab\xff"+strings.Repeat("c", 1000)), 8 + 2},
		{"overlong start in a partial frame", text(fin, "ab\xc0"+strings.Repeat("c", 1000)), 8 + 2},
		{"surrogate in a partial frame", text(fin, "ab\xed\xa0"+strings.Repeat("c", 1000)), 8 + 3},
		{"invalid byte in a partial first fragment", cat(text(0, "x\xf5"+strings.Repeat("c", 300)), cont(fin, "y")), 8 + 1},
		{"overlong in a partial continuation", cat(text(0, "ok"), cont(fin, "\xe0\x80"+strings.Repeat("c", 300))), 8 + 8 + 1},
		{"beyond U+10FFFF in a partial frame", text(fin, "\xf4\x90"+strings.Repeat("c", 70000)), 14 + 1},
	} {
		cut := c.bad + 1
		if cut >= len(c.stream) {
			t.Fatalf("%s: the frame must be incomplete", c.name)
		}
		t.Run(c.name, func(t *testing.T) {
			var d Decoder
			defer d.Reset()
			_, err := feed(t, &d, c.stream[:cut], whole)
			if !errors.Is(err, ErrInvalidUTF8) {
				t.Fatalf("after %d of %d bytes: err %v, want ErrInvalidUTF8", cut, len(c.stream), err)
			}
			// And byte by byte: the error comes at the same point.
			var d2 Decoder
			defer d2.Reset()
			if _, err := feed(t, &d2, c.stream[:cut], oneByte); !errors.Is(err, ErrInvalidUTF8) {
				t.Fatalf("byte by byte: err %v", err)
			}
			// One byte fewer and the prefix is still valid.
			var d3 Decoder
			defer d3.Reset()
			if _, err := feed(t, &d3, c.stream[:c.bad], oneByte); err != nil {
				t.Fatalf("one byte before the bad one: err %v", err)
			}
		})
	}
}

// TestTextSplitEverywhere splits valid multi-byte text into two and three
// fragments at every byte position, and delivers each stream byte by byte.
func TestTextSplitEverywhere(t *testing.T) {
	s := "aκόσμε€𝄞\U0010FFFFz\u0800"
	for i := 0; i <= len(s); i++ {
		stream := cat(text(0, s[:i]), cont(fin, s[i:]))
		for _, next := range []func() int{whole, oneByte} {
			got, err := decodeAll(t, Decoder{}, stream, next)
			if err != nil || !equalRecs(got, []rec{textMsg(s)}) {
				t.Fatalf("split at %d: %v, %v", i, got, err)
			}
		}
		for j := i; j <= len(s); j++ {
			stream := cat(text(0, s[:i]), ping("p"), cont(0, s[i:j]), cont(fin, s[j:]))
			got, err := decodeAll(t, Decoder{}, stream, chunksOf(3))
			if err != nil || !equalRecs(got, []rec{pingEv("p"), textMsg(s)}) {
				t.Fatalf("split at %d and %d: %v, %v", i, j, got, err)
			}
		}
	}
	// The same text as one frame, with the stream cut at every position and
	// at every pair of positions.
	stream := text(fin, s)
	for i := 0; i <= len(stream); i++ {
		for j := i; j <= len(stream); j++ {
			got, err := decodeAll(t, Decoder{}, stream, cuts(i, j))
			if err != nil || !equalRecs(got, []rec{textMsg(s)}) {
				t.Fatalf("cuts at %d, %d: %v, %v", i, j, got, err)
			}
		}
	}
}

// TestNextConsumesExactly checks n: a complete frame consumes exactly its
// bytes, the next frame's bytes are untouched, and each call returns one
// event.
func TestNextConsumesExactly(t *testing.T) {
	frames := [][]byte{text(fin, "one"), ping("two"), bin(fin, string(binaryOf(300, 1))), closeFrame(closeBody(1000, "")), pong("")}
	want := []rec{textMsg("one"), pingEv("two"), binMsg(string(binaryOf(300, 1))), closeEv(1000, ""), pongEv("")}
	in := cat(frames...)
	pristine := bytes.Clone(in)
	var d Decoder
	defer d.Reset()
	off := 0
	for i, f := range frames {
		ev, n, err := d.Next(in[off:])
		if err != nil || n != len(f) {
			t.Fatalf("frame %d: n %d err %v, want n %d", i, n, err, len(f))
		}
		if got := toRec(ev); got != want[i] {
			t.Fatalf("frame %d: %v, want %v", i, got, want[i])
		}
		off += n
		if !bytes.Equal(in[off:], pristine[off:]) {
			t.Fatalf("frame %d: bytes after the frame were modified", i)
		}
	}
	if ev, n, err := d.Next(in[off:]); ev.Kind != EventNone || n != 0 || err != nil {
		t.Fatalf("at the end: %v %d %v", toRec(ev), n, err)
	}

	// A partial header is left for the next call.
	f := bin(fin, strings.Repeat("x", 200)) // 2+2+4 byte header
	for k := 0; k < 8; k++ {
		if ev, n, err := d.Next(f[:k]); ev.Kind != EventNone || n != 0 || err != nil {
			t.Fatalf("header prefix of %d bytes: %v %d %v", k, toRec(ev), n, err)
		}
	}
	// A whole header without payload is consumed; the payload follows.
	if ev, n, err := d.Next(f[:8]); ev.Kind != EventNone || n != 8 || err != nil {
		t.Fatalf("bare header: %v %d %v", toRec(ev), n, err)
	}
	if d.Buffered() != 0 {
		t.Fatalf("Buffered %d after the header", d.Buffered())
	}
	if ev, n, err := d.Next(f[8:108]); ev.Kind != EventNone || n != 100 || err != nil || d.Buffered() != 100 {
		t.Fatalf("half the payload: %v %d %v, buffered %d", toRec(ev), n, err, d.Buffered())
	}
	rest := cat(f[108:], ping("after"))
	ev, n, err := d.Next(rest)
	if err != nil || n != 100 || toRec(ev) != binMsg(strings.Repeat("x", 200)) {
		t.Fatalf("rest of the payload: %v %d %v", toRec(ev), n, err)
	}
	if d.Buffered() != 0 {
		t.Fatalf("Buffered %d after the message", d.Buffered())
	}
	ev, n, err = d.Next(rest[n:])
	if err != nil || n != len(rest)-100 || toRec(ev) != pingEv("after") {
		t.Fatalf("ping after: %v %d %v", toRec(ev), n, err)
	}

	// A control frame is only consumed once it is whole.
	p := ping("abcdef")
	for k := 0; k < len(p); k++ {
		if ev, n, err := d.Next(bytes.Clone(p[:k])); ev.Kind != EventNone || n != 0 || err != nil {
			t.Fatalf("ping prefix of %d bytes: %v %d %v", k, toRec(ev), n, err)
		}
	}
}

// TestEventPayloadLifetime checks that a payload assembled across calls
// stays intact until the next call, and that the next call may reuse it.
func TestEventPayloadLifetime(t *testing.T) {
	var d Decoder
	defer d.Reset()
	f := text(fin, "assembled from pieces")
	if _, _, err := d.Next(bytes.Clone(f[:10])); err != nil {
		t.Fatal(err)
	}
	ev, _, err := d.Next(bytes.Clone(f[10:]))
	if err != nil || string(ev.Payload) != "assembled from pieces" {
		t.Fatalf("%v %v", toRec(ev), err)
	}
	if !d.is(done) || d.buf == nil || &d.buf.B[0] != &ev.Payload[0] {
		t.Fatalf("payload assembled across calls must come from the decoder's buffer")
	}
	if d.Buffered() != 0 {
		t.Fatalf("no message in progress, but the decoder reports %d buffered bytes", d.Buffered())
	}
	// The next call returns the buffer to the pool.
	if _, _, err := d.Next(nil); err != nil || d.buf != nil || d.is(done) {
		t.Fatalf("Next did not release the previous payload buffer: %v", err)
	}
}

// TestReset drops a partial frame and message and returns the buffers, and
// keeps the configuration.
func TestReset(t *testing.T) {
	d := Decoder{MaxMessageSize: 1000, Compression: true}
	f := cat(text(0, "first fragment"), cont(fin, "second"))
	if _, n, err := d.Next(f[:len(f)-3]); err != nil || n != len(f)-3 {
		t.Fatalf("n %d err %v", n, err)
	}
	if d.Buffered() != len("first fragment")+len("second")-3 || d.buf == nil {
		t.Fatalf("Buffered %d", d.Buffered())
	}
	d.Reset()
	if d.buf != nil || d.is(done) || d.Buffered() != 0 {
		t.Fatalf("Reset kept buffers")
	}
	if d.MaxMessageSize != 1000 || !d.Compression {
		t.Fatalf("Reset lost the configuration: %+v", d)
	}
	if d != (Decoder{MaxMessageSize: 1000, Compression: true}) {
		t.Fatalf("Reset left state behind: %+v", d)
	}
	// The message in progress is gone: a continuation is now unexpected.
	if _, _, err := d.Next(cont(fin, "x")); !errors.Is(err, ErrUnexpectedContinuation) {
		t.Fatalf("continuation after Reset: %v", err)
	}
	d.Reset()
	// A new message decodes normally, compressed or not.
	got, err := feed(t, &d, cat(text(fin, "again"), cf(rsv1|fin|byte(ws.OpText), "\xf2\x48\xcd\xc9\xc9\x07\x00")), oneByte)
	if err != nil || !equalRecs(got, []rec{textMsg("again"), textMsg("Hello")}) {
		t.Fatalf("after Reset: %v %v", got, err)
	}
	// Reset after an event assembled across calls returns that buffer too.
	f = text(fin, "in two calls")
	if _, _, err := d.Next(f[:7]); err != nil {
		t.Fatal(err)
	}
	if ev, _, err := d.Next(f[7:]); err != nil || string(ev.Payload) != "in two calls" || !d.is(done) || d.buf == nil {
		t.Fatalf("%v %v: expected the payload in a pooled buffer", toRec(ev), err)
	}
	d.Reset()
	if d.is(done) || d.buf != nil {
		t.Fatalf("Reset kept the payload buffer")
	}
	// Reset of a zero Decoder is harmless, and twice as well.
	var z Decoder
	z.Reset()
	z.Reset()
}

// An idle server holds one Decoder per connection, inside its session.
func TestDecoderIdleSize(t *testing.T) {
	if n := unsafe.Sizeof(Decoder{}); n > 40 {
		t.Fatalf("Decoder is %d bytes, want at most 40", n)
	}
}

// TestMaskRotation checks the rotated masking key against unmasking the
// whole payload at once, for a frame split at every point.
func TestMaskRotation(t *testing.T) {
	payload := "abcdefghijklmnopqrstuvwxyz0123456789"
	f := text(fin, payload)
	for cut1 := 1; cut1 < len(f); cut1++ {
		for cut2 := cut1; cut2 < len(f); cut2++ {
			var d Decoder
			var got, pending []byte
			for _, part := range [][]byte{f[:cut1], f[cut1:cut2], f[cut2:]} {
				pending = append(pending, part...)
				ev, n, err := d.Next(pending)
				if err != nil {
					t.Fatalf("cuts %d,%d: %v", cut1, cut2, err)
				}
				pending = bytes.Clone(pending[n:])
				if ev.Kind == EventMessage {
					got = append(got, ev.Payload...)
				}
			}
			if string(got) != payload {
				t.Fatalf("cuts %d,%d: got %q", cut1, cut2, got)
			}
			d.Reset()
		}
	}
}
