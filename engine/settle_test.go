package engine

import (
	"testing"
	"time"
)

// TestSettlerFreesOnceABurstIsOver: memory is handed back after a burst
// of at least settleAfter opens and closes, once none happened for
// settleCalm, and at most every settleEvery; never during the burst, and
// never for a trickle.
func TestSettlerFreesOnceABurstIsOver(t *testing.T) {
	frees := 0
	st := settler{free: func() { frees++ }}
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	st.tick(at(0), 0)
	st.tick(at(time.Second), 3000) // mid-burst
	st.tick(at(2*time.Second), 6000)
	if frees != 0 {
		t.Fatal("freed during the burst")
	}
	st.tick(at(2*time.Second+settleCalm/2), 6000) // not calm long enough
	if frees != 0 {
		t.Fatal("freed before the burst calmed down")
	}
	st.tick(at(2*time.Second+settleCalm), 6000)
	if frees != 1 {
		t.Fatalf("%d frees after the burst, want 1", frees)
	}
	st.tick(at(3*time.Second), 6000)
	if frees != 1 {
		t.Fatal("freed twice for one burst")
	}
	// A second burst right away waits for settleEvery.
	st.tick(at(4*time.Second), 12000)
	st.tick(at(5*time.Second), 12000)
	if frees != 1 {
		t.Fatal("freed again within settleEvery")
	}
	st.tick(at(2*time.Second+settleCalm+settleEvery), 12000)
	if frees != 2 {
		t.Fatalf("%d frees after the second burst, want 2", frees)
	}
	// A trickle below settleAfter never frees.
	for i := range 100 {
		st.tick(at(time.Minute+time.Duration(i)*time.Second), 12000+int64(i))
	}
	if frees != 2 {
		t.Fatalf("%d frees for a trickle, want 2", frees)
	}
}
