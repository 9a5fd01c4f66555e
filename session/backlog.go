package session

import (
	"encoding/binary"
	"sync"
)

// backlog holds the outbound bytes the kernel has not taken yet. A session
// has one only while such bytes exist; it comes from a pool and goes back
// when the kernel has taken everything.
type backlog struct {
	b   []byte
	off int // b[:off] has been written
	// partial counts the bytes at b[off:] that finish a frame (or an HTTP
	// response) of which the kernel already has the beginning: whatever
	// else is dropped, these must go out, or the stream breaks.
	partial int
	// gathering: the session is corked and none of b has been offered to
	// the kernel yet (see Session.Cork); no OnWritable is awaited.
	gathering bool
	// stream: the bytes are a stream session's (see StreamHandler), not
	// frames; every byte boundary is a unit boundary.
	stream bool
}

// backlogKeep bounds the buffer a pooled backlog keeps, so one burst does
// not pin megabytes in the pool.
const backlogKeep = 1 << 20

var backlogPool = sync.Pool{New: func() any { return new(backlog) }}

// push appends whole frames.
func (bl *backlog) push(p []byte) {
	if bl.off > 0 && bl.off >= len(bl.b)/2 {
		n := copy(bl.b, bl.b[bl.off:])
		bl.b = bl.b[:n]
		bl.off = 0
	}
	bl.b = append(bl.b, p...)
}

// advance records that the kernel took n more bytes and reports whether the
// backlog is now empty.
func (bl *backlog) advance(n int) (empty bool) {
	rest := bl.b[bl.off:]
	if n >= len(rest) {
		return true
	}
	bl.partial = bl.unitEnd(rest, bl.partial, n) - n
	bl.off += n
	return false
}

func (bl *backlog) release() {
	if cap(bl.b) > backlogKeep {
		bl.b = nil
	}
	bl.b, bl.off, bl.partial, bl.gathering, bl.stream = bl.b[:0], 0, 0, false, false
	backlogPool.Put(bl)
}

// unitEnd is the package's unitEnd for frames; in a stream every byte
// ends a unit.
func (bl *backlog) unitEnd(b []byte, prefix, n int) int {
	if bl.stream {
		return n
	}
	return unitEnd(b, prefix, n)
}

// unitEnd returns where the unit holding byte n of b ends (n itself when a
// unit starts there): b starts with a prefix of prefix bytes that count as
// one unit (an HTTP response, or the rest of a frame), followed by whole
// server frames. n must be less than len(b).
func unitEnd(b []byte, prefix, n int) int {
	if n < prefix {
		return prefix
	}
	off := prefix
	for off < n {
		off += frameLen(b[off:])
	}
	return off
}

// frameLen is the length of the server frame (unmasked, header complete) at
// the start of b.
func frameLen(b []byte) int {
	switch l := int(b[1] & 0x7f); l {
	case 126:
		return 4 + int(binary.BigEndian.Uint16(b[2:]))
	case 127:
		return 10 + int(binary.BigEndian.Uint64(b[2:]))
	default:
		return 2 + l
	}
}
