// Package deflatewin is a test aid: a small RFC 1951 inflater that reports
// how far back the back-references of a DEFLATE stream reach, so that tests
// can prove a permessage-deflate sender honours server_max_window_bits
// (RFC 7692 section 7.1.2.1). compress/flate cannot say this: it inflates
// with a 32 KiB window whatever the sender promised.
//
// It follows the structure of zlib's puff.c (canonical Huffman decoding one
// bit at a time): slow, short and easy to check against the RFC. It is not
// for production use.
package deflatewin

import (
	"errors"
	"fmt"
)

// Result is what Inflate found.
type Result struct {
	Out         []byte // the inflated bytes
	MaxDistance int    // the longest back-reference distance, 0 if none
	Blocks      int    // DEFLATE blocks read, the final one included
}

// ErrTruncated is a stream that ends before its final block does.
var ErrTruncated = errors.New("deflatewin: stream ends inside a block")

// Inflate decodes a raw DEFLATE stream up to and including its final block.
// A permessage-deflate payload has no final block: append 00 00 ff ff and
// then 01 00 00 ff ff (an empty final stored block) before calling.
func Inflate(in []byte) (Result, error) {
	s := &state{in: in}
	for {
		last, err := s.bits(1)
		if err != nil {
			return s.res, err
		}
		typ, err := s.bits(2)
		if err != nil {
			return s.res, err
		}
		switch typ {
		case 0:
			err = s.stored()
		case 1:
			err = s.codes(&fixedLit, &fixedDist)
		case 2:
			err = s.dynamic()
		default:
			err = errors.New("deflatewin: reserved block type 3")
		}
		if err != nil {
			return s.res, err
		}
		s.res.Blocks++
		if last == 1 {
			return s.res, nil
		}
	}
}

type state struct {
	in     []byte
	pos    int  // next byte of in
	bitBuf uint // bits not yet used, LSB first
	bitCnt uint
	res    Result
}

func (s *state) bits(n uint) (int, error) {
	for s.bitCnt < n {
		if s.pos == len(s.in) {
			return 0, ErrTruncated
		}
		s.bitBuf |= uint(s.in[s.pos]) << s.bitCnt
		s.pos++
		s.bitCnt += 8
	}
	v := int(s.bitBuf & (1<<n - 1))
	s.bitBuf >>= n
	s.bitCnt -= n
	return v, nil
}

func (s *state) stored() error {
	s.bitBuf, s.bitCnt = 0, 0 // skip to the byte boundary
	if s.pos+4 > len(s.in) {
		return ErrTruncated
	}
	n := int(s.in[s.pos]) | int(s.in[s.pos+1])<<8
	nn := int(s.in[s.pos+2]) | int(s.in[s.pos+3])<<8
	if n != ^nn&0xffff {
		return errors.New("deflatewin: stored block LEN and NLEN disagree")
	}
	s.pos += 4
	if s.pos+n > len(s.in) {
		return ErrTruncated
	}
	s.res.Out = append(s.res.Out, s.in[s.pos:s.pos+n]...)
	s.pos += n
	return nil
}

// huffman is a canonical code: count[l] codes of length l, and the symbols
// in code order.
type huffman struct {
	count  [16]int
	symbol []int
}

func newHuffman(lengths []int) (huffman, error) {
	var h huffman
	for _, l := range lengths {
		h.count[l]++
	}
	left := 1
	for l := 1; l < 16; l++ {
		left <<= 1
		left -= h.count[l]
		if left < 0 {
			return h, errors.New("deflatewin: over-subscribed code")
		}
	}
	var offs [16]int
	for l := 1; l < 15; l++ {
		offs[l+1] = offs[l] + h.count[l]
	}
	h.symbol = make([]int, len(lengths))
	for sym, l := range lengths {
		if l != 0 {
			h.symbol[offs[l]] = sym
			offs[l]++
		}
	}
	return h, nil
}

func (s *state) decode(h *huffman) (int, error) {
	code, first, index := 0, 0, 0
	for l := 1; l < 16; l++ {
		b, err := s.bits(1)
		if err != nil {
			return 0, err
		}
		code |= b
		count := h.count[l]
		if code-count < first {
			return h.symbol[index+code-first], nil
		}
		index += count
		first += count
		first <<= 1
		code <<= 1
	}
	return 0, errors.New("deflatewin: code not in the table")
}

var (
	lenBase  = [29]int{3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258}
	lenExtra = [29]uint{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	dstBase  = [30]int{1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577}
	dstExtra = [30]uint{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}

	fixedLit, fixedDist huffman
)

func init() {
	var l [288]int
	for i := range l {
		switch {
		case i < 144:
			l[i] = 8
		case i < 256:
			l[i] = 9
		case i < 280:
			l[i] = 7
		default:
			l[i] = 8
		}
	}
	fixedLit, _ = newHuffman(l[:])
	var d [30]int
	for i := range d {
		d[i] = 5
	}
	fixedDist, _ = newHuffman(d[:])
}

func (s *state) codes(lit, dist *huffman) error {
	for {
		sym, err := s.decode(lit)
		if err != nil {
			return err
		}
		switch {
		case sym < 256:
			s.res.Out = append(s.res.Out, byte(sym))
			continue
		case sym == 256:
			return nil
		case sym > 285:
			return fmt.Errorf("deflatewin: length symbol %d", sym)
		}
		sym -= 257
		extra, err := s.bits(lenExtra[sym])
		if err != nil {
			return err
		}
		n := lenBase[sym] + extra
		dsym, err := s.decode(dist)
		if err != nil {
			return err
		}
		if dsym > 29 {
			return fmt.Errorf("deflatewin: distance symbol %d", dsym)
		}
		if extra, err = s.bits(dstExtra[dsym]); err != nil {
			return err
		}
		d := dstBase[dsym] + extra
		if d > len(s.res.Out) {
			return fmt.Errorf("deflatewin: distance %d reaches before the start of the stream (%d bytes out)", d, len(s.res.Out))
		}
		s.res.MaxDistance = max(s.res.MaxDistance, d)
		for i := 0; i < n; i++ {
			s.res.Out = append(s.res.Out, s.res.Out[len(s.res.Out)-d])
		}
	}
}

var clOrder = [19]int{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}

func (s *state) dynamic() error {
	nlen, err := s.bits(5)
	if err != nil {
		return err
	}
	ndist, err := s.bits(5)
	if err != nil {
		return err
	}
	ncode, err := s.bits(4)
	if err != nil {
		return err
	}
	nlen, ndist, ncode = nlen+257, ndist+1, ncode+4
	if nlen > 286 || ndist > 30 {
		return errors.New("deflatewin: bad dynamic block counts")
	}
	var cl [19]int
	for i := 0; i < ncode; i++ {
		if cl[clOrder[i]], err = s.bits(3); err != nil {
			return err
		}
	}
	clh, err := newHuffman(cl[:])
	if err != nil {
		return err
	}
	lengths := make([]int, nlen+ndist)
	for i := 0; i < len(lengths); {
		sym, err := s.decode(&clh)
		if err != nil {
			return err
		}
		if sym < 16 {
			lengths[i] = sym
			i++
			continue
		}
		prev, rep := 0, 0
		switch sym {
		case 16:
			if i == 0 {
				return errors.New("deflatewin: repeat with no previous length")
			}
			prev = lengths[i-1]
			rep, err = s.bits(2)
			rep += 3
		case 17:
			rep, err = s.bits(3)
			rep += 3
		default:
			rep, err = s.bits(7)
			rep += 11
		}
		if err != nil {
			return err
		}
		if i+rep > len(lengths) {
			return errors.New("deflatewin: code lengths overflow")
		}
		for ; rep > 0; rep-- {
			lengths[i] = prev
			i++
		}
	}
	if lengths[256] == 0 {
		return errors.New("deflatewin: no end-of-block code")
	}
	lit, err := newHuffman(lengths[:nlen])
	if err != nil {
		return err
	}
	dist, err := newHuffman(lengths[nlen:])
	if err != nil {
		return err
	}
	return s.codes(&lit, &dist)
}
