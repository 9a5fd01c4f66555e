package engine

import (
	"math/rand"
	"testing"
)

// TestConnListKeepsSlots: after any mix of pushes and removals, every
// connection sits at its Slot and the list holds exactly the live ones.
func TestConnListKeepsSlots(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	var cl connList
	live := map[*conn]bool{}
	var order []*conn
	for step := 0; step < 20000; step++ {
		if len(order) == 0 || rng.Intn(3) > 0 && step < 12000 || rng.Intn(3) == 0 {
			e := &conn{}
			cl.push(e)
			live[e] = true
			order = append(order, e)
		} else {
			k := rng.Intn(len(order))
			e := order[k]
			order[k] = order[len(order)-1]
			order = order[:len(order)-1]
			cl.remove(e)
			delete(live, e)
		}
		if cl.len() != len(live) {
			t.Fatalf("step %d: len %d, want %d", step, cl.len(), len(live))
		}
	}
	for i := range cl.len() {
		e := cl.at(i)
		if !live[e] || int(e.Slot) != i {
			t.Fatalf("entry %d: live %v slot %d", i, live[e], e.Slot)
		}
	}
	for _, e := range order {
		cl.remove(e)
	}
	if cl.len() != 0 || len(cl.pages) > 1 {
		t.Fatalf("emptied list: len %d, %d pages", cl.len(), len(cl.pages))
	}
}
