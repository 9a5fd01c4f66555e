//go:build race

package hub

// raceEnabled: the race detector makes sync.Pool drop items at random and
// adds allocations of its own, so allocation counts are not asserted.
const raceEnabled = true
