package push

import (
	"testing"
	"time"
	"unsafe"

	"github.com/herald-ws/herald/session"
)

// BenchmarkOnTickNothingDue is what the sweep pays per open connection
// per tick for token lifetimes when no token is due: it must stay a few
// nanoseconds and allocate nothing, since it runs for every connection.
func BenchmarkOnTickNothingDue(b *testing.B) {
	h := New(Config{})
	var s session.Session
	s.Value = &client{deadline: time.Now().Add(time.Hour).UnixNano()}
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
	withToken.Value = &client{deadline: time.Now().Add(time.Hour).UnixNano()}
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
	now := time.Now().Unix() * int64(time.Second) // the limiter counts whole seconds
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

// TestClientSize: every connection with a token holds a client; it must
// stay in the 128-byte size class (the token's exp, the refresh state and
// both rate limiters fit without growing it).
func TestClientSize(t *testing.T) {
	if n := unsafe.Sizeof(client{}); n > 128 {
		t.Fatalf("client is %d bytes, want at most 128", n)
	}
}

// TestStreamStateSizes: a server holds one sseClient per SSE stream and
// one pollClient per pending poll; they stay in their size classes.
func TestStreamStateSizes(t *testing.T) {
	if n := unsafe.Sizeof(sseClient{}); n > 64 {
		t.Errorf("sseClient is %d bytes, want at most 64", n)
	}
	if n := unsafe.Sizeof(pollClient{}); n > 80 {
		t.Errorf("pollClient is %d bytes, want at most 80", n)
	}
}

// TestPublishLimiter: the GCRA publish limiter is the token bucket it
// replaced: a burst of max(rate, 1), then rate per second.
func TestPublishLimiter(t *testing.T) {
	for _, c := range []struct {
		rate  float64
		burst int
	}{{10, 10}, {2.5, 2}, {1, 1}, {0.5, 1}} {
		var cl client
		n := 0
		for cl.allowPublish(c.rate) {
			n++
			if n > 100 {
				break
			}
		}
		if n != c.burst {
			t.Errorf("rate %v: burst of %d, want %d", c.rate, n, c.burst)
		}
		// After 1/rate seconds exactly one more is allowed.
		cl.pubTAT -= int64(1e9 / c.rate)
		if !cl.allowPublish(c.rate) || cl.allowPublish(c.rate) {
			t.Errorf("rate %v: not exactly one publish per interval after the burst", c.rate)
		}
	}
	var cl client
	for range 1000 {
		if !cl.allowPublish(0) {
			t.Fatal("rate 0 (no limit) refused a publish")
		}
	}
}

// TestPollDeadlineAcrossTheClockWrap: the 32-bit poll clock wraps every
// 49 days; a deadline is still passed or not by the difference.
func TestPollDeadlineAcrossTheClockWrap(t *testing.T) {
	at := func(ms int64) time.Time { return pollEpoch.Add(time.Duration(ms) * time.Millisecond) }
	const wrap = int64(1) << 32
	for _, c := range []struct {
		deadline, now int64 // milliseconds since pollEpoch
		expired       bool
	}{
		{1000, 999, false},
		{1000, 1000, true},
		{wrap - 100, wrap + 100, true},              // set before the wrap, passed after it
		{wrap + 300, wrap + 100, false},             // set across the wrap, not yet
		{wrap - 100, wrap - 5*60*1000, false},       // five minutes ahead, before the wrap
		{wrap + 5*60*1000, wrap - 1000, false},      // five minutes ahead, across the wrap
		{3*wrap + 10, 3*wrap + 10 + 86400000, true}, // a day late, third wrap
	} {
		p := &pollClient{deadline: pollClock(at(c.deadline))}
		if got := p.expired(at(c.now)); got != c.expired {
			t.Errorf("deadline %d, now %d: expired %v, want %v", c.deadline, c.now, got, c.expired)
		}
	}
}
