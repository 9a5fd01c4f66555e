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

// TestRefreshLimiter: refreshBurst attempts at once, then one per
// refreshInterval, never more over any window.
func TestRefreshLimiter(t *testing.T) {
	var c client
	now := time.Now().UnixNano()
	for i := range refreshBurst {
		if !c.allowRefresh(now) {
			t.Fatalf("attempt %d of the burst refused", i+1)
		}
	}
	if c.allowRefresh(now) {
		t.Fatal("attempt past the burst allowed")
	}
	if c.allowRefresh(now + int64(refreshInterval) - 1) {
		t.Fatal("allowed before a refresh interval passed")
	}
	if !c.allowRefresh(now + int64(refreshInterval)) {
		t.Fatal("refused after a refresh interval")
	}
	// Over a long run the rate is one per interval, plus the burst.
	allowed := 0
	start := now + 10*int64(refreshInterval)
	for k := int64(0); k < 1000; k++ {
		if c.allowRefresh(start + k*int64(refreshInterval)/10) {
			allowed++
		}
	}
	if allowed > refreshBurst+100 || allowed < 100 {
		t.Fatalf("%d refreshes allowed over 100 intervals", allowed)
	}
}
