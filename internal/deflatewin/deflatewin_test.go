package deflatewin

import (
	"bytes"
	"compress/flate"
	"math/rand/v2"
	"testing"
)

func compress(t *testing.T, p []byte, level int) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := flate.NewWriter(&b, level)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(p)
	w.Close()
	return b.Bytes()
}

// TestInflateMatchesCompressFlate: every level's output inflates to the
// input, and a payload that repeats a random block at a known period has
// back-references reaching at least one period back.
func TestInflateMatchesCompressFlate(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	block := make([]byte, 1000)
	for i := range block {
		block[i] = byte(r.Uint32())
	}
	periodic := bytes.Repeat(block, 20)
	noise := make([]byte, 5000)
	for i := range noise {
		noise[i] = byte(r.Uint32())
	}
	for _, p := range [][]byte{nil, []byte("a"), []byte("hello hello hello hello"), periodic, noise, bytes.Repeat([]byte("ab"), 40000)} {
		for _, level := range []int{flate.NoCompression, flate.BestSpeed, flate.DefaultCompression, flate.BestCompression, flate.HuffmanOnly} {
			res, err := Inflate(compress(t, p, level))
			if err != nil || !bytes.Equal(res.Out, p) {
				t.Fatalf("level %d, %d bytes: %v, got %d bytes", level, len(p), err, len(res.Out))
			}
			if level != flate.NoCompression && level != flate.HuffmanOnly && bytes.Equal(p, periodic) && res.MaxDistance < len(block) {
				t.Fatalf("level %d: max distance %d, want at least the period %d", level, res.MaxDistance, len(block))
			}
			if level == flate.HuffmanOnly && res.MaxDistance != 0 {
				t.Fatalf("Huffman-only output has back-references up to %d", res.MaxDistance)
			}
		}
	}
}

func TestInflateErrors(t *testing.T) {
	full := compress(t, bytes.Repeat([]byte("herald "), 100), flate.BestSpeed)
	for _, c := range []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"truncated", full[:len(full)/2]},
		{"reserved block type", []byte{0x07}},
		{"stored LEN/NLEN mismatch", []byte{0x01, 0x05, 0x00, 0x00, 0x00}},
		{"no final block", []byte{0x00, 0x00, 0x00, 0xff, 0xff}},
		// Fixed block: literal 'a' then a length 3 match at distance 2
		// with only one byte out.
		{"distance before the start", fixedTooFar()},
	} {
		if _, err := Inflate(c.in); err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
}

// fixedTooFar writes a fixed-Huffman block by hand: 'a', then <length 3,
// distance 2>, then end of block.
func fixedTooFar() []byte {
	var out []byte
	var acc uint
	var n uint
	put := func(v uint, bits uint) { acc |= v << n; n += bits }
	rev := func(v, bits uint) uint { // Huffman codes go MSB first
		var r uint
		for i := uint(0); i < bits; i++ {
			r = r<<1 | (v>>i)&1
		}
		return r
	}
	put(1, 1)                // BFINAL
	put(1, 2)                // fixed
	put(rev(0x30+'a', 8), 8) // literal 'a'
	put(rev(1, 7), 7)        // symbol 257: length 3
	put(rev(1, 5), 5)        // distance symbol 1: distance 2
	put(rev(0, 7), 7)        // end of block
	for n > 0 {
		out = append(out, byte(acc))
		acc >>= 8
		n -= min(n, 8)
	}
	return out
}
