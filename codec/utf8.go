package codec

import "encoding/binary"

// UTF8State is the state of an incremental UTF-8 validator. The zero value
// is the start state. It is one byte, so a connection can carry it between
// partial frames and fragments at no cost.
type UTF8State uint8

const (
	utf8Accept  UTF8State = iota // between code points
	utf8Cont1                    // one continuation byte (80..BF) to go
	utf8Cont2                    // two continuation bytes to go
	utf8Cont3                    // three continuation bytes to go
	utf8AfterE0                  // E0: next byte A0..BF (no overlong forms)
	utf8AfterED                  // ED: next byte 80..9F (no surrogates)
	utf8AfterF0                  // F0: next byte 90..BF (no overlong forms)
	utf8AfterF4                  // F4: next byte 80..8F (nothing past U+10FFFF)
	utf8Reject                   // invalid; sticky
)

// Valid reports whether the bytes fed so far are a prefix of some valid UTF-8
// text. It turns false at the first byte that no continuation can repair,
// which lets a server fail a text message before the rest of it arrives.
func (s UTF8State) Valid() bool { return s != utf8Reject }

// Complete reports whether the bytes fed so far are valid UTF-8 text that
// does not end inside a code point.
func (s UTF8State) Complete() bool { return s == utf8Accept }

// Feed advances the validator over p and returns the new state.
func (s UTF8State) Feed(p []byte) UTF8State {
	i := 0
	for i < len(p) {
		if s == utf8Accept {
			// ASCII fast path: eight bytes at a time.
			for i+8 <= len(p) && binary.LittleEndian.Uint64(p[i:])&0x8080808080808080 == 0 {
				i += 8
			}
			for i < len(p) && p[i] < 0x80 {
				i++
			}
			if i == len(p) {
				return s
			}
		}
		b := p[i]
		i++
		switch s {
		case utf8Accept:
			switch {
			case b >= 0xC2 && b <= 0xDF:
				s = utf8Cont1
			case b == 0xE0:
				s = utf8AfterE0
			case b == 0xED:
				s = utf8AfterED
			case b >= 0xE1 && b <= 0xEF:
				s = utf8Cont2
			case b == 0xF0:
				s = utf8AfterF0
			case b >= 0xF1 && b <= 0xF3:
				s = utf8Cont3
			case b == 0xF4:
				s = utf8AfterF4
			default:
				return utf8Reject
			}
		case utf8Cont1, utf8Cont2, utf8Cont3:
			if b < 0x80 || b > 0xBF {
				return utf8Reject
			}
			s--
		case utf8AfterE0:
			if b < 0xA0 || b > 0xBF {
				return utf8Reject
			}
			s = utf8Cont1
		case utf8AfterED:
			if b < 0x80 || b > 0x9F {
				return utf8Reject
			}
			s = utf8Cont1
		case utf8AfterF0:
			if b < 0x90 || b > 0xBF {
				return utf8Reject
			}
			s = utf8Cont2
		case utf8AfterF4:
			if b < 0x80 || b > 0x8F {
				return utf8Reject
			}
			s = utf8Cont2
		default:
			return utf8Reject
		}
	}
	return s
}
