package codec

import (
	"encoding/binary"
	"math"

	"github.com/gobwas/ws"
	"github.com/valyala/bytebufferpool"
)

// EventKind says what Decoder.Next found.
type EventKind uint8

// Event kinds. EventNone means the input holds no further complete event.
const (
	EventNone EventKind = iota
	EventMessage
	EventPing
	EventPong
	EventClose
)

// Event is one decoded message or control frame.
//
// Payload is unmasked (and inflated, for a compressed message) and aliases
// either the input given to Next or a pooled buffer owned by the Decoder. It
// is valid only until the next call to Next or Reset on the same Decoder, or
// until the caller discards the input, whichever is first.
type Event struct {
	Kind   EventKind
	OpCode ws.OpCode // OpText or OpBinary for EventMessage
	// Payload is the message, ping or pong payload, or the close reason.
	Payload []byte
	// CloseCode is the close frame's status, ws.StatusNoStatusRcvd when the
	// frame had no body.
	CloseCode ws.StatusCode
}

var messagePool bytebufferpool.Pool

// Decoder decodes the frames a client sends, one event per call to Next. It
// keeps the state of a frame whose payload has only partly arrived and of a
// fragmented message, so the caller can hand it whatever bytes the network
// delivered and discard exactly what it consumed.
//
// The zero value is ready to use with no size limit and no compression; set
// MaxMessageSize and Compression before the first call. A Decoder is not
// safe for concurrent use. Its idle size is 40 bytes: a message buffer is
// taken from a pool only while a message spans several calls or fragments.
type Decoder struct {
	// MaxMessageSize bounds a message's payload (after inflation); zero
	// means no limit. A frame that would exceed it is refused with
	// ErrMessageTooBig from its header alone, before its payload is buffered.
	MaxMessageSize int64

	frameLeft int64 // payload bytes still to come of the frame in progress
	msgLen    int64 // wire bytes of the message in progress so far
	// buf assembles a message across calls; once the message is complete
	// (bit done) it backs the last Event's payload instead, until the next
	// call. The two uses never overlap, so one field serves both.
	buf *bytebufferpool.ByteBuffer
	// mask is the frame in progress's masking key, rotated as payload is
	// consumed so that the next byte always takes mask[0].
	mask  [4]byte
	msgOp ws.OpCode
	utf8  UTF8State
	// Compression is true once permessage-deflate was negotiated: RSV1 then
	// marks a compressed message.
	Compression bool
	bits        decoderBits
}

// decoderBits are the Decoder's yes/no facts, packed so that an idle
// Decoder is 40 bytes (one per connection).
type decoderBits uint8

const (
	inFrame       decoderBits = 1 << iota // a frame's header was consumed, its payload is still arriving
	frameFin                              // that frame ends its message
	msgActive                             // a data message is in progress
	msgCompressed                         // that message is compressed (RSV1)
	done                                  // buf backs the last Event's payload
)

func (d *Decoder) is(b decoderBits) bool { return d.bits&b != 0 }

func (d *Decoder) set(b decoderBits, on bool) {
	if on {
		d.bits |= b
	} else {
		d.bits &^= b
	}
}

// Next decodes the next event from in, which must start where the previous
// call's consumed bytes ended. It returns the event, how many bytes of in it
// consumed (the caller discards them), and a *ProtocolError when the peer
// broke the protocol; the connection must then be failed with
// CloseCode(err). An EventNone result with n > 0 means the bytes went into a
// partial frame; call again when more arrive.
//
// Next unmasks payloads in place, so the consumed bytes of in are modified.
func (d *Decoder) Next(in []byte) (ev Event, n int, err error) {
	d.releaseDone()
	for {
		if d.is(inFrame) {
			if d.frameLeft > 0 {
				avail := int64(len(in) - n)
				if avail == 0 {
					return Event{}, n, nil
				}
				take := min(avail, d.frameLeft)
				chunk := in[n : n+int(take)]
				ws.Cipher(chunk, d.mask, 0)
				d.rotateMask(int(take & 3))
				n += int(take)
				d.frameLeft -= take
				if err := d.appendChunk(chunk); err != nil {
					return Event{}, n, err
				}
				if d.frameLeft > 0 {
					return Event{}, n, nil
				}
			}
			d.set(inFrame, false)
			if d.is(frameFin) {
				payload := d.buf.B
				d.set(done, true)
				ev, err := d.completeMessage(payload, true)
				return ev, n, err
			}
			continue
		}

		h, hlen, err := parseHeader(in[n:])
		if err != nil || hlen == 0 {
			return Event{}, n, err
		}
		if err := d.checkHeader(h); err != nil {
			return Event{}, n, err
		}
		if h.OpCode.IsControl() {
			total := hlen + int(h.Length)
			if len(in)-n < total {
				return Event{}, n, nil // control frames are at most 131 bytes; wait for all of it
			}
			payload := in[n+hlen : n+total]
			ws.Cipher(payload, h.Mask, 0)
			n += total
			ev, err := controlEvent(h.OpCode, payload)
			return ev, n, err
		}

		if h.OpCode != ws.OpContinuation {
			d.set(msgActive, true)
			d.msgOp = h.OpCode
			d.set(msgCompressed, h.Rsv1())
			d.utf8 = utf8Accept
			d.msgLen = 0
		}
		// Compare with what is left of the budget instead of adding first:
		// msgLen + a 64-bit length near 2^63 would wrap around to a negative
		// total and let a fragmented message past the limit. msgLen never
		// exceeds the limit, so the subtraction cannot overflow.
		if limit := d.wireLimit(); limit > 0 && h.Length > limit-d.msgLen {
			return Event{}, n, ErrMessageTooBig
		}
		d.msgLen += h.Length

		// Fast path: a whole unfragmented message is in the input. It is
		// unmasked in place and handed out without a copy.
		if h.Fin && h.OpCode != ws.OpContinuation && int64(len(in)-n-hlen) >= h.Length {
			payload := in[n+hlen : n+hlen+int(h.Length)]
			ws.Cipher(payload, h.Mask, 0)
			n += hlen + int(h.Length)
			ev, err := d.completeMessage(payload, false)
			return ev, n, err
		}

		n += hlen
		d.set(inFrame, true)
		d.set(frameFin, h.Fin)
		d.frameLeft = h.Length
		d.mask = h.Mask
		if d.buf == nil {
			d.buf = messagePool.Get()
		}
	}
}

// rotateMask turns the masking key by n bytes (0-3), so that after n
// payload bytes the next one is again unmasked with mask[0].
func (d *Decoder) rotateMask(n int) {
	if n == 0 {
		return
	}
	m := d.mask
	for i := range d.mask {
		d.mask[i] = m[(i+n)&3]
	}
}

// wireLimit is the most payload bytes the message in progress may take on
// the wire, zero for no limit. MaxMessageSize bounds a message after
// inflation, and deflate makes incompressible data slightly larger (stored
// blocks cost 5 bytes per 64 KiB; zlib bounds its output by n + n/4096 +
// n/16384 + 13), so a compressed message may exceed the limit on the wire
// by that much; inflate then enforces the exact limit.
func (d *Decoder) wireLimit() int64 {
	limit := d.MaxMessageSize
	if limit > 0 && d.is(msgCompressed) {
		if slack := limit>>10 + 64; limit <= math.MaxInt64-slack {
			limit += slack
		}
	}
	return limit
}

// Reset drops any partial frame or message and returns pooled buffers. Call
// it when the connection closes.
func (d *Decoder) Reset() {
	if d.buf != nil {
		messagePool.Put(d.buf)
	}
	*d = Decoder{MaxMessageSize: d.MaxMessageSize, Compression: d.Compression}
}

// Buffered reports how many payload bytes of an unfinished message the
// Decoder holds.
func (d *Decoder) Buffered() int {
	if d.buf == nil || d.is(done) {
		return 0
	}
	return len(d.buf.B)
}

func (d *Decoder) releaseDone() {
	if d.is(done) {
		messagePool.Put(d.buf)
		d.buf = nil
		d.set(done, false)
	}
}

func (d *Decoder) checkHeader(h ws.Header) error {
	if !h.Masked {
		return ErrUnmaskedFrame
	}
	if h.Rsv&^0x04 != 0 {
		return ErrReservedBits // RSV2 or RSV3: no extension defines them
	}
	if h.OpCode.IsReserved() {
		return ErrReservedOpcode
	}
	if h.OpCode.IsControl() {
		if h.Rsv != 0 {
			return ErrReservedBits
		}
		if !h.Fin {
			return ErrControlFragmented
		}
		if h.Length > 125 {
			return ErrControlTooLong
		}
		return nil
	}
	if h.OpCode == ws.OpContinuation {
		if !d.is(msgActive) {
			return ErrUnexpectedContinuation
		}
		if h.Rsv != 0 {
			return ErrReservedBits // RSV1 only on a message's first frame
		}
		return nil
	}
	if d.is(msgActive) {
		return ErrExpectedContinuation
	}
	if h.Rsv1() && !d.Compression {
		return ErrReservedBits
	}
	return nil
}

// appendChunk adds part of a data frame's payload to the message being
// assembled, validating text as it goes so a bad byte fails the message
// before the rest of it arrives.
func (d *Decoder) appendChunk(chunk []byte) error {
	if d.msgOp == ws.OpText && !d.is(msgCompressed) {
		d.utf8 = d.utf8.Feed(chunk)
		if !d.utf8.Valid() {
			return ErrInvalidUTF8
		}
	}
	d.buf.B = append(d.buf.B, chunk...)
	return nil
}

// completeMessage finishes the message whose payload is p. fed says whether
// p already went through the UTF-8 validator chunk by chunk.
func (d *Decoder) completeMessage(p []byte, fed bool) (Event, error) {
	d.set(msgActive, false)
	if d.is(msgCompressed) {
		out := messagePool.Get()
		if err := inflate(out, p, d.MaxMessageSize); err != nil {
			messagePool.Put(out)
			return Event{}, err
		}
		d.releaseDone()
		d.buf = out
		d.set(done, true)
		p = out.B
		fed = false
	}
	if d.msgOp == ws.OpText {
		st := d.utf8
		if !fed {
			st = utf8Accept.Feed(p)
		}
		if !st.Complete() {
			return Event{}, ErrInvalidUTF8
		}
	}
	return Event{Kind: EventMessage, OpCode: d.msgOp, Payload: p}, nil
}

func controlEvent(op ws.OpCode, p []byte) (Event, error) {
	switch op {
	case ws.OpPing:
		return Event{Kind: EventPing, Payload: p}, nil
	case ws.OpPong:
		return Event{Kind: EventPong, Payload: p}, nil
	}
	switch len(p) {
	case 0:
		return Event{Kind: EventClose, CloseCode: ws.StatusNoStatusRcvd}, nil
	case 1:
		return Event{}, ErrCloseBody
	}
	code := ws.StatusCode(binary.BigEndian.Uint16(p))
	if !ValidCloseCode(code) {
		return Event{}, ErrCloseCode
	}
	reason := p[2:]
	if !utf8Accept.Feed(reason).Complete() {
		return Event{}, ErrInvalidUTF8
	}
	return Event{Kind: EventClose, CloseCode: code, Payload: reason}, nil
}

// ValidCloseCode reports whether code may appear in a close frame on the
// wire (RFC 6455 section 7.4 and the IANA registry).
func ValidCloseCode(code ws.StatusCode) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// parseHeader parses a frame header at the start of b. It returns hlen == 0
// when b does not hold the whole header yet.
func parseHeader(b []byte) (h ws.Header, hlen int, err error) {
	if len(b) < 2 {
		return h, 0, nil
	}
	h.Fin = b[0]&0x80 != 0
	h.Rsv = (b[0] & 0x70) >> 4
	h.OpCode = ws.OpCode(b[0] & 0x0f)
	h.Masked = b[1]&0x80 != 0
	hlen = 2
	l := b[1] & 0x7f
	switch l {
	case 126:
		hlen += 2
	case 127:
		hlen += 8
	}
	if h.Masked {
		hlen += 4
	}
	if len(b) < hlen {
		return h, 0, nil
	}
	switch l {
	case 126:
		h.Length = int64(binary.BigEndian.Uint16(b[2:]))
		if h.Length < 126 {
			return h, 0, ErrNonMinimalLength
		}
	case 127:
		u := binary.BigEndian.Uint64(b[2:])
		if u>>63 != 0 {
			return h, 0, ErrLengthOverflow
		}
		if u <= 0xffff {
			return h, 0, ErrNonMinimalLength
		}
		h.Length = int64(u)
	default:
		h.Length = int64(l)
	}
	if h.Masked {
		copy(h.Mask[:], b[hlen-4:hlen])
	}
	return h, hlen, nil
}
