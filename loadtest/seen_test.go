package loadtest

import (
	"math/rand/v2"
	"testing"
)

// TestSeenSet: the set reports a sequence as a duplicate exactly when it
// was added before, for subscribers that get a few publications (the
// list) and many (past listMax, the bitmap), across the change between
// them; and one that gets few never holds a bitmap over the whole run.
func TestSeenSet(t *testing.T) {
	const n = 100000
	rng := rand.New(rand.NewPCG(3, 4))
	for _, adds := range []int{1, listMax - 1, listMax, listMax + 1, 5 * listMax, 3000} {
		var s seenSet
		ref := map[uint64]bool{}
		for range adds {
			seq := uint64(rng.IntN(n))
			if rng.IntN(4) == 0 && len(ref) > 0 { // a repeat now and then
				for q := range ref {
					seq = q
					break
				}
			}
			if got, want := s.add(seq, n), ref[seq]; got != want {
				t.Fatalf("%d adds: add(%d) said duplicate %v, want %v", adds, seq, got, want)
			}
			ref[seq] = true
		}
		if len(ref) <= listMax && s.bits != nil {
			t.Fatalf("%d distinct sequences: a bitmap of %d words, want the list", len(ref), len(s.bits))
		}
		if len(ref) > listMax && (s.bits == nil || s.list != nil) {
			t.Fatalf("%d distinct sequences: still a list of %d", len(ref), len(s.list))
		}
		for q := range ref {
			if !s.add(q, n) {
				t.Fatalf("%d adds: %d was added but is not seen", adds, q)
			}
		}
	}
}
