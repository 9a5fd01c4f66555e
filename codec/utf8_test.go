package codec

import (
	"math/rand/v2"
	"testing"
	"unicode/utf8"
)

// canComplete is the brute-force reference for UTF8State.Valid: it reports
// whether some continuation makes p valid UTF-8. A continuation only needs
// to finish the last code point, so it is at most three bytes; the first of
// them is the only one with a restricted range (after E0, ED, F0, F4), and
// 0x80 serves for any later one.
func canComplete(p []byte) bool {
	if utf8.Valid(p) {
		return true
	}
	buf := append([]byte(nil), p...)
	for c := 0x80; c <= 0xbf; c++ {
		for k := range 3 {
			q := append(buf[:len(p)], byte(c))
			for range k {
				q = append(q, 0x80)
			}
			if utf8.Valid(q) {
				return true
			}
		}
	}
	return false
}

// firstReject returns the index of the first byte of p after which no
// continuation can make the text valid, or -1. It walks p with the standard
// library's decoder and resolves each undecodable position with canComplete
// on at most four bytes, so it is linear and independent of UTF8State.
func firstReject(p []byte) int {
	for i := 0; i < len(p); {
		r, size := utf8.DecodeRune(p[i:])
		if r != utf8.RuneError || size != 1 {
			i += size
			continue
		}
		for k := 1; k <= min(4, len(p)-i); k++ {
			if !canComplete(p[i : i+k]) {
				return i + k - 1
			}
		}
		return -1 // a valid but unfinished code point at the end
	}
	return -1
}

// checkUTF8 compares UTF8State with the references on p: Complete against
// utf8.Valid, Valid after every byte against firstReject, and the state after
// p split at every position against the state after p whole.
func checkUTF8(t testing.TB, p []byte) {
	t.Helper()
	whole := utf8Accept.Feed(p)
	if whole.Complete() != utf8.Valid(p) {
		t.Fatalf("%q: Complete %v, utf8.Valid %v", p, whole.Complete(), utf8.Valid(p))
	}
	reject := firstReject(p)
	if whole.Valid() != (reject < 0) {
		t.Fatalf("%q: Valid %v, first rejected byte %d", p, whole.Valid(), reject)
	}
	s := utf8Accept
	for i := range p {
		s = s.Feed(p[i : i+1])
		if want := reject < 0 || i < reject; s.Valid() != want {
			t.Fatalf("%q: after byte %d Valid %v, want %v (first rejected byte %d)", p, i, s.Valid(), want, reject)
		}
	}
	if s != whole {
		t.Fatalf("%q: byte by byte state %d, whole %d", p, s, whole)
	}
	for k := 0; k <= len(p); k++ {
		if got := utf8Accept.Feed(p[:k]).Feed(p[k:]); got != whole {
			t.Fatalf("%q split at %d: state %d, whole %d", p, k, got, whole)
		}
	}
}

func TestUTF8Table(t *testing.T) {
	for _, c := range []struct {
		in       string
		complete bool
		valid    bool // a prefix of valid text
	}{
		{"", true, true},
		{"hello, world", true, true},
		{"κόσμε", true, true},
		{"\x00\x7f", true, true},
		{"\u0080\u07ff\u0800\uffff\U00010000\U0010ffff", true, true},
		{"\ud7ff\ue000\ufffd", true, true},
		{"\xc2", false, true},
		{"\xe0\xa0", false, true},
		{"\xf0\x90\x80", false, true},
		{"\xf4\x8f\xbf", false, true},
		{"\xed\x9f", false, true},
		{"\x80", false, false},
		{"\xbf", false, false},
		{"\xc0\x80", false, false}, // overlong NUL
		{"\xc1", false, false},
		{"\xe0\x9f", false, false},      // overlong 3-byte
		{"\xf0\x8f", false, false},      // overlong 4-byte
		{"\xed\xa0", false, false},      // surrogate
		{"\xf4\x90", false, false},      // beyond U+10FFFF
		{"\xf5", false, false},          // beyond U+10FFFF
		{"\xc2a", false, false},         // missing continuation
		{"\xe2\x82a", false, false},     // missing continuation
		{"\xf0\x9d\x84a", false, false}, // missing continuation
		{"a\xff", false, false},
		{"\xfe", false, false},
		{"12345678\x80", false, false}, // after the ASCII fast path
		{"1234567\xe2\x82\xac12345678", true, true},
	} {
		s := utf8Accept.Feed([]byte(c.in))
		if s.Complete() != c.complete || s.Valid() != c.valid {
			t.Errorf("%q: Complete %v Valid %v, want %v %v", c.in, s.Complete(), s.Valid(), c.complete, c.valid)
		}
		checkUTF8(t, []byte(c.in))
	}
	// The rejecting state is sticky.
	if s := utf8Accept.Feed([]byte{0xff}).Feed([]byte("valid text")); s.Valid() || s.Complete() {
		t.Errorf("reject state is not sticky")
	}
}

// TestUTF8ReferenceSelfCheck makes sure firstReject agrees with the plain
// brute force (canComplete on every prefix), so it can stand in for it on
// long inputs.
func TestUTF8ReferenceSelfCheck(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 3000 {
		p := adversarialBytes(r, r.IntN(12))
		want := -1
		for i := range p {
			if !canComplete(p[:i+1]) {
				want = i
				break
			}
		}
		if got := firstReject(p); got != want {
			t.Fatalf("%q: firstReject %d, brute force %d", p, got, want)
		}
	}
}

// interesting are the bytes at the edges of the UTF-8 ranges.
var interesting = []byte{0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf,
	0xe0, 0xe1, 0xec, 0xed, 0xee, 0xef, 0xf0, 0xf1, 0xf3, 0xf4, 0xf5, 0xf7, 0xf8, 0xfe, 0xff}

func adversarialBytes(r *rand.Rand, n int) []byte {
	p := make([]byte, 0, n)
	for len(p) < n {
		switch r.IntN(4) {
		case 0:
			p = append(p, interesting[r.IntN(len(interesting))])
		case 1:
			p = append(p, byte(r.UintN(256)))
		case 2:
			p = utf8.AppendRune(p, rune(r.IntN(0x110000)))
		default:
			// A valid rune with one byte dropped or changed.
			q := utf8.AppendRune(nil, rune(0x80+r.IntN(0x110000-0x80)))
			i := r.IntN(len(q))
			if r.IntN(2) == 0 {
				q = append(q[:i], q[i+1:]...)
			} else {
				q[i] = interesting[r.IntN(len(interesting))]
			}
			p = append(p, q...)
		}
	}
	return p
}

// edges is a smaller set for four-byte inputs: one byte of each class the
// state machine tells apart.
var edges = []byte{0x41, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc1, 0xc2, 0xe0, 0xe1, 0xed, 0xf0, 0xf1, 0xf4, 0xf5}

// TestUTF8Exhaustive checks every one- and two-byte input, every three-byte
// input drawn from the edge bytes and every four-byte input drawn from one
// byte per class.
func TestUTF8Exhaustive(t *testing.T) {
	var p [4]byte
	for a := range 256 {
		p[0] = byte(a)
		checkUTF8(t, p[:1])
		for b := range 256 {
			p[1] = byte(b)
			checkUTF8(t, p[:2])
		}
	}
	for _, a := range interesting {
		for _, b := range interesting {
			for _, c := range interesting {
				p[0], p[1], p[2] = a, b, c
				checkUTF8(t, p[:3])
			}
		}
	}
	for _, a := range edges {
		for _, b := range edges {
			for _, c := range edges {
				for _, d := range edges {
					p[0], p[1], p[2], p[3] = a, b, c, d
					checkUTF8(t, p[:4])
				}
			}
		}
	}
}

// TestUTF8AllRunes feeds every code point, encoded by the standard library,
// and every surrogate as CESU would encode it.
func TestUTF8AllRunes(t *testing.T) {
	var buf []byte
	for r := rune(0); r <= utf8.MaxRune; r++ {
		buf = utf8.AppendRune(buf[:0], r)
		want := r < 0xd800 || r > 0xdfff
		if r >= 0xd800 && r <= 0xdfff {
			buf = append(buf[:0], 0xe0|byte(r>>12), 0x80|byte(r>>6)&0x3f, 0x80|byte(r)&0x3f)
		}
		s := utf8Accept.Feed(buf)
		if s.Complete() != want {
			t.Fatalf("U+%04X % x: Complete %v", r, buf, s.Complete())
		}
		// Split before the last byte: valid code points stay valid prefixes.
		if len(buf) > 1 && want && !utf8Accept.Feed(buf[:len(buf)-1]).Valid() {
			t.Fatalf("U+%04X: prefix rejected", r)
		}
	}
}

// TestUTF8Random compares with the references on random and adversarial
// inputs of up to a few hundred bytes, long enough for the ASCII fast path.
func TestUTF8Random(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 2000 {
		var p []byte
		switch i % 3 {
		case 0:
			p = adversarialBytes(r, r.IntN(64))
		case 1:
			p = make([]byte, r.IntN(64))
			for j := range p {
				p[j] = byte(r.UintN(256))
			}
		default:
			// Mostly ASCII with a rare bad byte, to exercise the fast path.
			p = textOf(8 + r.IntN(300))
			for range r.IntN(2) {
				p[r.IntN(len(p))] = interesting[r.IntN(len(interesting))]
			}
		}
		checkUTF8(t, p)
	}
}
