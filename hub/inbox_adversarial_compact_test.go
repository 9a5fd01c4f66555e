package hub

import (
	"fmt"
	"testing"

	"github.com/herald-ws/herald/broker"
)

// TestCompactionIsAmortised: however many gap notes are queued (they are
// not bounded by the inbox limits and compaction keeps them), conflated
// replacements compact the queue at most once per 64 of them, so Deliver
// never walks the whole queue for each publication.
func TestCompactionIsAmortised(t *testing.T) {
	const replacements = 5000
	run := func(gapChannels int) (compactions int) {
		h := New(Config{Broker: broker.NewMemory(broker.MemoryConfig{}), InboxPublications: 64,
			Conflate: func(ch string) bool { return ch == "t" }})
		defer h.Close()
		fl, sessions, _ := recSessions(t, 1, 64<<20)
		h.Subscribe(sessions[0], "t", nil, func(SubscribeResult) {})
		for c := range gapChannels + 64 {
			h.Subscribe(sessions[0], fmt.Sprint("g", c), nil, func(SubscribeResult) {})
		}
		fl.run()
		h.Deliver(broker.Publication{Channel: "t", Offset: 1 << 60, Data: []byte(`1`)})
		for c := range gapChannels + 63 { // 63 fill the inbox, the rest queue gap notes
			h.Deliver(broker.Publication{Channel: fmt.Sprint("g", c), Offset: 1 << 60, Data: []byte(`1`)})
		}
		for i := range replacements {
			h.Deliver(broker.Publication{Channel: "t", Offset: 1<<60 + uint64(i+1), Data: []byte(`1`)})
		}
		in := h.Inboxes()
		if len(in) != 1 {
			t.Fatalf("%d inboxes", len(in))
		}
		inb := (*h.inboxList.Load())[0]
		inb.mu.Lock()
		defer inb.mu.Unlock()
		return inb.compactions
	}
	for _, gaps := range []int{0, 20000} {
		if n := run(gaps); n > replacements/64+1 {
			t.Fatalf("%d compactions for %d replacements with %d gap notes queued, want at most %d", n, replacements, gaps, replacements/64+1)
		}
	}
}
