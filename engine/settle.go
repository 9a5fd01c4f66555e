package engine

import (
	"runtime/debug"
	"time"
)

// Memory after a burst of connections. Accepting (and closing) thousands
// of connections leaves garbage in the heap (the accept path's addresses
// and errors, upgrade buffers, closed sessions) that the runtime collects
// only when the heap next doubles and returns to the operating system
// slowly; an idle node that has just taken a reconnect storm would hold it
// for minutes. Once such a burst is over, the ticker hands it back at
// once, as the memory broker's sweeper does after forgetting many
// channels.

const (
	// settleAfter is how many connections opened or closed make a burst.
	settleAfter = 5000
	// settleCalm is how long no connection may have opened before the
	// burst counts as over; settleEvery bounds how often memory is freed.
	settleCalm  = 500 * time.Millisecond
	settleEvery = 10 * time.Second
)

// settler runs on gnet's ticker goroutine only (OnTick).
type settler struct {
	seen      int64 // opens+closes counted at the last tick
	since     int64 // opens+closes since memory was last freed
	lastMove  time.Time
	lastFreed time.Time
	free      func() // debug.FreeOSMemory; tests count the calls
}

// tick is given the node's running count of opens and closes; it frees
// memory once a burst has calmed down.
func (st *settler) tick(now time.Time, churn int64) {
	if d := churn - st.seen; d > 0 {
		st.since += d
		st.seen = churn
		st.lastMove = now
		return
	}
	if st.since >= settleAfter && now.Sub(st.lastMove) >= settleCalm && now.Sub(st.lastFreed) >= settleEvery {
		st.since = 0
		st.lastFreed = now
		if st.free == nil {
			st.free = debug.FreeOSMemory
		}
		st.free()
	}
}
