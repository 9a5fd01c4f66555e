package codec

import (
	"encoding/binary"

	"github.com/gobwas/ws"
)

// MaxHeaderSize is the largest server frame header (unmasked, 64-bit length).
const MaxHeaderSize = 10

// AppendFrame appends one unfragmented, unmasked server frame to dst.
func AppendFrame(dst []byte, op ws.OpCode, payload []byte) []byte {
	dst = appendHeader(dst, op, true, false, len(payload))
	return append(dst, payload...)
}

// AppendCloseFrame appends a close frame with code and reason to dst. The
// reason is cut to fit the 125-byte control payload limit (at a UTF-8
// boundary).
func AppendCloseFrame(dst []byte, code ws.StatusCode, reason string) []byte {
	if len(reason) > 123 {
		reason = reason[:123]
		for len(reason) > 0 && !utf8Accept.Feed([]byte(reason)).Complete() {
			reason = reason[:len(reason)-1]
		}
	}
	dst = appendHeader(dst, ws.OpClose, true, false, 2+len(reason))
	dst = binary.BigEndian.AppendUint16(dst, uint16(code))
	return append(dst, reason...)
}

// appendHeader appends a server frame header. Server frames are never
// masked (RFC 6455 section 5.1).
func appendHeader(dst []byte, op ws.OpCode, fin, rsv1 bool, n int) []byte {
	b0 := byte(op)
	if fin {
		b0 |= 0x80
	}
	if rsv1 {
		b0 |= 0x40
	}
	switch {
	case n < 126:
		return append(dst, b0, byte(n))
	case n <= 0xffff:
		return append(dst, b0, 126, byte(n>>8), byte(n))
	default:
		dst = append(dst, b0, 127)
		return binary.BigEndian.AppendUint64(dst, uint64(n))
	}
}
