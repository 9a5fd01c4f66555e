package hub

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/herald-ws/herald/broker"
)

// TestConflatedReplaceKeepsTheByteBound: an inbox full by count takes
// a conflated channel's replacement of any size, so InboxBytes does not
// bound what it holds.
func TestConflatedReplaceKeepsTheByteBound(t *testing.T) {
	const n, maxBytes = 8, 16 << 10
	h := New(Config{Broker: broker.NewMemory(broker.MemoryConfig{}), InboxPublications: n, InboxBytes: maxBytes,
		Conflate: func(string) bool { return true }})
	defer h.Close()
	fl, sessions, _ := recSessions(t, 1, 64<<20)
	for c := range n {
		h.Subscribe(sessions[0], fmt.Sprint("t", c), nil, func(SubscribeResult) {})
	}
	fl.run()
	big := []byte(`"` + string(bytes.Repeat([]byte("x"), 60<<10)) + `"`)
	for c := range n { // fills the inbox by count with small publications
		name := fmt.Sprint("t", c)
		h.Deliver(broker.Publication{Channel: name, Offset: topOf(h, name) + 1, Data: []byte(`1`)})
	}
	for c := range n { // each replaced by a 60 KiB one
		name := fmt.Sprint("t", c)
		h.Deliver(broker.Publication{Channel: name, Offset: topOf(h, name) + 2, Data: big})
	}
	in := h.Inboxes()[0]
	t.Logf("inbox: %d publications, %d bytes; bound %d bytes", in.Publications, in.Bytes, maxBytes)
	if in.Bytes > maxBytes+int64(len(big))+200 {
		t.Fatalf("inbox holds %d bytes, bound %d", in.Bytes, maxBytes)
	}
}
