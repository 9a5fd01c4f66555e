package push

import (
	"testing"
	"time"

	"github.com/herald-ws/herald/session"
)

// BenchmarkOnTickNothingDue is what the sweep pays per open connection
// per tick for token lifetimes when no token is due: it must stay a few
// nanoseconds and allocate nothing, since it runs for every connection.
func BenchmarkOnTickNothingDue(b *testing.B) {
	h := New(Config{})
	var s session.Session
	s.Value = &client{exp: time.Now().Add(time.Hour).UnixNano()}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		h.OnTick(&s, now)
	}
}

// TestOnTickAllocatesNothing: the per-connection sweep hook allocates
// nothing when nothing is due, with or without a token.
func TestOnTickAllocatesNothing(t *testing.T) {
	h := New(Config{})
	var withToken, anonymous session.Session
	withToken.Value = &client{exp: time.Now().Add(time.Hour).UnixNano()}
	now := time.Now()
	if n := testing.AllocsPerRun(1000, func() {
		h.OnTick(&withToken, now)
		h.OnTick(&anonymous, now)
	}); n != 0 {
		t.Fatalf("OnTick allocates %v times per call", n)
	}
}
