package hub

import (
	"fmt"
	"sync"
	"testing"

	"github.com/herald-ws/herald/broker"
)

// TestReplaceDoesNotReadAReleasedFrame: a conflated replacement must not
// read the replaced frame after releasing it to the pool, where another
// Deliver may already be encoding into it (the race detector reports it).
func TestReplaceDoesNotReadAReleasedFrame(t *testing.T) {
	if !raceEnabled {
		t.Skip("the race detector is the assertion: runs in the -race pass")
	}
	h := New(Config{Broker: broker.NewMemory(broker.MemoryConfig{}), InboxPublications: 1,
		Conflate: func(ch string) bool { return ch == "t" }})
	defer h.Close()
	fl, sessions, _ := recSessions(t, 1, 64<<20)
	h.Subscribe(sessions[0], "t", nil, func(SubscribeResult) {})
	fl.run()
	var wg sync.WaitGroup
	for g := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20000 {
				if g == 0 {
					h.Deliver(broker.Publication{Channel: "t", Offset: uint64(1e15) + uint64(i), Data: []byte(`1`)})
				} else {
					f := encode(broker.Publication{Channel: fmt.Sprint("o", i%3), Offset: 1, Data: []byte(`22`)}, false, 0, 1)
					f.release()
				}
			}
		}()
	}
	wg.Wait()
}
