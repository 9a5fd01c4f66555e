package session

import (
	"testing"
	"unsafe"
)

// An idle server holds one Session per connection (inside the engine's
// connection struct): it must stay within the 112-byte size class.
func TestSessionFitsItsSizeClass(t *testing.T) {
	if n := unsafe.Sizeof(Session{}); n > 112 {
		t.Fatalf("Session is %d bytes, want at most 112", n)
	}
}

func TestDeflateWindowBitsRoundTrip(t *testing.T) {
	var s Session
	if got := s.DeflateWindowBits(); got != 15 {
		t.Fatalf("a new session's window is %d, want 15", got)
	}
	s.flags = pingSent | opened | lingering | finSent
	for bits := 8; bits <= 15; bits++ {
		s.setWindow(bits)
		if got := s.DeflateWindowBits(); got != bits {
			t.Fatalf("window %d read back as %d", bits, got)
		}
		if !s.is(pingSent) || !s.is(opened) || !s.is(lingering) || !s.is(finSent) {
			t.Fatal("setting the window changed the other flags")
		}
	}
}
