package hub

import (
	"bytes"
	"testing"

	"github.com/herald-ws/herald/broker"
)

// TestConflatedReplaceAccountsBytes: push reads old.f.plain after
// old.f.release(); a frame over 64 KiB has plain set to nil by release, so
// the replaced frame's bytes are never subtracted.
func TestConflatedReplaceAccountsBytes(t *testing.T) {
	h := New(Config{Broker: broker.NewMemory(broker.MemoryConfig{}), InboxPublications: 1,
		Conflate: func(string) bool { return true }})
	defer h.Close()
	fl, sessions, _ := recSessions(t, 1, 64<<20)
	h.Subscribe(sessions[0], "t", nil, func(SubscribeResult) {})
	fl.run()
	data := []byte(`"` + string(bytes.Repeat([]byte("x"), 100<<10)) + `"`)
	for i := 1; i <= 20; i++ {
		h.Deliver(broker.Publication{Channel: "t", Offset: topOf(h, "t") + uint64(i), Data: data})
	}
	in := h.Inboxes()[0]
	t.Logf("live publications %d, bytes %d (one frame is ~%d)", in.Publications, in.Bytes, len(data))
	if in.Bytes > int64(2*len(data)) {
		t.Fatalf("inbox accounts %d bytes for %d live publication", in.Bytes, in.Publications)
	}
}
