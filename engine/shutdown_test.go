package engine_test

import (
	"context"
	"io"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/herald-ws/herald/engine"
	"github.com/herald-ws/herald/internal/testutil"
)

// TestShutdownSpreadsClosesOverTheGrace: with few clients the 1001s are
// still spread over the grace (client i of n at about i*grace/n), not sent
// within the first steps.
func TestShutdownSpreadsClosesOverTheGrace(t *testing.T) {
	for _, n := range []int{3, 4} {
		srv, err := engine.New(testutil.Options{CloseTimeout: time.Second}.Config())
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		const grace = 2 * time.Second
		var mu sync.Mutex
		var at []time.Duration
		var wg sync.WaitGroup
		start := make(chan time.Time)
		for range n {
			c := dial(t, srv, "/echo")
			wg.Add(1)
			go func() {
				defer wg.Done()
				t0 := <-start
				_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
				for {
					h, err := ws.ReadHeader(c)
					if err != nil {
						t.Errorf("read: %v", err)
						return
					}
					p := make([]byte, h.Length)
					if _, err := io.ReadFull(c, p); err != nil {
						t.Errorf("read: %v", err)
						return
					}
					if h.OpCode == ws.OpClose {
						mu.Lock()
						at = append(at, time.Since(t0))
						mu.Unlock()
						_ = ws.WriteFrame(c, ws.MaskFrame(ws.NewCloseFrame(p)))
						return
					}
				}
			}()
		}
		t0 := time.Now()
		errc := make(chan error, 1)
		go func() { errc <- srv.Shutdown(context.Background(), grace) }()
		for range n {
			start <- t0
		}
		wg.Wait()
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		sort.Slice(at, func(i, j int) bool { return at[i] < at[j] })
		t.Logf("n=%d: closes at %v", n, at)
		if len(at) != n {
			t.Fatalf("%d of %d clients got a close", len(at), n)
		}
		// Client n-1 is due at (n-1)/n of the grace; allow for scheduling.
		if spread, want := at[n-1]-at[0], grace*time.Duration(n-1)/time.Duration(n)*3/4; spread < want {
			t.Fatalf("n=%d: closes spread over %v of a %v grace, want at least %v", n, spread, grace, want)
		}
		if at[n-1] > grace+500*time.Millisecond {
			t.Fatalf("n=%d: last close at %v, past the %v grace", n, at[n-1], grace)
		}
	}
}
