package loadtest

// seenSet records which publication sequence numbers one subscriber has
// received, to count duplicates. With a channel per subscriber each gets
// a few publications of hundreds of thousands, and a bitmap over all of
// them would be tens of KiB per subscriber, touched a page at a time (the
// generator's page faults then cost as much CPU as a server node): the
// set starts as a short list and becomes a bitmap over every sequence
// only once it holds more than listMax.
type seenSet struct {
	list []uint64
	bits []uint64
}

// listMax is the list's bound: past it a linear search costs more than a
// bitmap lookup, and a subscriber that gets this many publications is one
// of few channels, for which the bitmap is what it always was.
const listMax = 32

// add records seq (below n, the run's publications) and reports whether
// it was already there.
func (s *seenSet) add(seq uint64, n int) (dup bool) {
	if s.bits != nil {
		w, b := seq/64, uint64(1)<<(seq%64)
		dup = s.bits[w]&b != 0
		s.bits[w] |= b
		return dup
	}
	for _, q := range s.list {
		if q == seq {
			return true
		}
	}
	if len(s.list) < listMax {
		s.list = append(s.list, seq)
		return false
	}
	s.bits = make([]uint64, (n+63)/64)
	for _, q := range s.list {
		s.bits[q/64] |= 1 << (q % 64)
	}
	s.list = nil
	s.bits[seq/64] |= 1 << (seq % 64)
	return false
}
