package wstest

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
)

// OpCode is a frame's 4-bit opcode. Any value 0x0-0xF can be sent,
// including the reserved ones.
type OpCode byte

// Opcodes of RFC 6455 section 5.2.
const (
	OpContinuation OpCode = 0x0
	OpText         OpCode = 0x1
	OpBinary       OpCode = 0x2
	OpClose        OpCode = 0x8
	OpPing         OpCode = 0x9
	OpPong         OpCode = 0xA
)

// IsControl reports whether op is a control opcode (0x8-0xF).
func (op OpCode) IsControl() bool { return op&0x8 != 0 }

func (op OpCode) String() string {
	switch op {
	case OpContinuation:
		return "continuation"
	case OpText:
		return "text"
	case OpBinary:
		return "binary"
	case OpClose:
		return "close"
	case OpPing:
		return "ping"
	case OpPong:
		return "pong"
	}
	return fmt.Sprintf("opcode(%#x)", byte(op))
}

// Reserved bits, as the Rsv argument of EncodeFrame takes them: the three
// bits after FIN, RSV1 the most significant.
const (
	RSV1 byte = 4
	RSV2 byte = 2
	RSV3 byte = 1
)

// Frame is one decoded server frame.
type Frame struct {
	Fin     bool
	Rsv     byte // RSV1<<2 | RSV2<<1 | RSV3
	OpCode  OpCode
	Payload []byte
}

func (f Frame) String() string {
	p := f.Payload
	suffix := ""
	if len(p) > 32 {
		p, suffix = p[:32], fmt.Sprintf("...(%d bytes)", len(f.Payload))
	}
	return fmt.Sprintf("{%s fin=%v rsv=%d payload=%q%s}", f.OpCode, f.Fin, f.Rsv, p, suffix)
}

// FrameOption changes how EncodeFrame writes a frame.
type FrameOption func(*frameOptions)

type frameOptions struct {
	unmasked bool
	mask     *[4]byte
	lenBytes int     // 0: minimal; 2 or 8 forces the 16- or 64-bit form
	declared *uint64 // length field value instead of len(payload)
}

// Unmasked sends the frame without a mask, which a server must refuse.
func Unmasked() FrameOption { return func(o *frameOptions) { o.unmasked = true } }

// WithMask masks with key instead of a random one.
func WithMask(key [4]byte) FrameOption { return func(o *frameOptions) { o.mask = &key } }

// Len16 encodes the length in the 16-bit extended form (7-bit field 126)
// even when it is shorter, to send non-minimal lengths.
func Len16() FrameOption { return func(o *frameOptions) { o.lenBytes = 2 } }

// Len64 encodes the length in the 64-bit extended form (7-bit field 127)
// even when it is shorter.
func Len64() FrameOption { return func(o *frameOptions) { o.lenBytes = 8 } }

// DeclaredLen writes n in the length field whatever the payload's real
// length, for frames whose header announces more than the test sends (or
// an impossible length with the top bit set). Without Len16 or Len64 the
// minimal form for n is used.
func DeclaredLen(n uint64) FrameOption { return func(o *frameOptions) { o.declared = &n } }

// EncodeFrame returns the exact bytes of one client frame. rsv holds the
// three reserved bits (RSV1, RSV2, RSV3 or'ed together) and op any 4-bit
// value; nothing is validated, so tests can build any malformed frame. The
// frame is masked with a random key unless an option says otherwise.
func EncodeFrame(fin bool, rsv byte, op OpCode, payload []byte, opts ...FrameOption) []byte {
	var o frameOptions
	for _, opt := range opts {
		opt(&o)
	}
	n := uint64(len(payload))
	if o.declared != nil {
		n = *o.declared
	}
	b0 := (rsv&7)<<4 | byte(op)&0x0f
	if fin {
		b0 |= 0x80
	}
	var maskBit byte
	if !o.unmasked {
		maskBit = 0x80
	}
	out := make([]byte, 0, 14+len(payload))
	out = append(out, b0)
	lenBytes := o.lenBytes
	if lenBytes == 0 {
		switch {
		case n > 0xffff:
			lenBytes = 8
		case n > 125:
			lenBytes = 2
		}
	}
	switch lenBytes {
	case 2:
		out = append(out, maskBit|126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	case 8:
		out = append(out, maskBit|127)
		out = binary.BigEndian.AppendUint64(out, n)
	default:
		out = append(out, maskBit|byte(n))
	}
	if o.unmasked {
		return append(out, payload...)
	}
	key := o.mask
	if key == nil {
		var k [4]byte
		binary.LittleEndian.PutUint32(k[:], rand.Uint32())
		key = &k
	}
	out = append(out, key[:]...)
	start := len(out)
	out = append(out, payload...)
	maskBytes(out[start:], *key)
	return out
}

// maskBytes XORs p with key (RFC 6455 section 5.3), eight bytes at a time
// so that multi-megabyte test payloads stay cheap under the race detector.
func maskBytes(p []byte, key [4]byte) {
	k32 := binary.LittleEndian.Uint32(key[:])
	k64 := uint64(k32) | uint64(k32)<<32
	i := 0
	for ; i+8 <= len(p); i += 8 {
		binary.LittleEndian.PutUint64(p[i:], binary.LittleEndian.Uint64(p[i:])^k64)
	}
	for ; i < len(p); i++ {
		p[i] ^= key[i&3]
	}
}

// ClosePayload returns a close frame body: the big-endian code followed by
// reason. reason is raw bytes so that tests can send invalid UTF-8.
func ClosePayload(code uint16, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, code), reason...)
}

// Fragments splits payload into frames of at most size bytes carrying one
// message of opcode op: the first frame has op, the rest are continuations,
// the last has FIN. rsv goes on the first frame only. An empty payload gives
// one empty final frame.
func Fragments(op OpCode, rsv byte, payload []byte, size int) []byte {
	if size <= 0 {
		size = len(payload)
	}
	var out []byte
	first := true
	for {
		n := min(size, len(payload))
		last := n == len(payload)
		frameOp, frameRsv := OpContinuation, byte(0)
		if first {
			frameOp, frameRsv = op, rsv
		}
		out = append(out, EncodeFrame(last, frameRsv, frameOp, payload[:n])...)
		payload = payload[n:]
		first = false
		if last {
			return out
		}
	}
}
