package server_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/herald-ws/herald/internal/testutil"
)

// TestFanOut: 300 subscribers spread over four loops, 100 publications from
// four goroutines at once. Every subscriber gets every publication exactly
// once, in strictly increasing offset order, with its data.
func TestFanOut(t *testing.T) {
	const (
		subscribers = 300
		publishers  = 4
		perPub      = 25
		total       = publishers * perPub
	)
	n := testutil.StartNode(t, testutil.NodeOptions{Options: testutil.Options{Loops: 4}})
	clients := make([]*testutil.WSClient, subscribers)
	var top uint64
	for i := range clients {
		clients[i] = testutil.DialWS(t, n, "", nil)
		off := clients[i].Subscribe("fan", 1)
		if i == 0 {
			top = off
		} else if off != top {
			t.Fatalf("subscriber %d acked offset %d, the first %d", i, off, top)
		}
	}
	if st := testutil.Stats(t, n, ""); st["subscriptions"] != subscribers || st["connections"] != subscribers {
		t.Fatalf("stats %v: want %d connections and subscriptions", st, subscribers)
	}

	type result struct {
		offsets []uint64
		data    map[uint64]string
		err     error
	}
	results := make([]result, subscribers)
	var readers sync.WaitGroup
	for i, c := range clients {
		readers.Add(1)
		go func() {
			defer readers.Done()
			r := &results[i]
			r.data = make(map[uint64]string, total)
			for len(r.offsets) < total {
				m, err := c.Next(30 * time.Second)
				if err != nil {
					r.err = fmt.Errorf("after %d messages: %w", len(r.offsets), err)
					return
				}
				if m.Op != "message" || m.Channel != "fan" {
					r.err = fmt.Errorf("unexpected frame %s", m.Raw)
					return
				}
				if k := len(r.offsets); k > 0 && m.Offset <= r.offsets[k-1] {
					r.err = fmt.Errorf("offset %d after %d", m.Offset, r.offsets[k-1])
					return
				}
				r.offsets = append(r.offsets, m.Offset)
				r.data[m.Offset] = string(m.Data)
			}
		}()
	}

	var mu sync.Mutex
	published := map[uint64]string{}
	errs := make(chan error, publishers)
	var pubs sync.WaitGroup
	for p := range publishers {
		pubs.Add(1)
		go func() {
			defer pubs.Done()
			for i := range perPub {
				d := fmt.Sprintf(`{"p":%d,"i":%d}`, p, i)
				off, err := testutil.PublishKey(n, "", "fan", d)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				published[off] = d
				mu.Unlock()
			}
		}()
	}
	pubs.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	readers.Wait()

	if len(published) != total {
		t.Fatalf("%d distinct offsets for %d publications", len(published), total)
	}
	for off := top + 1; off <= top+total; off++ {
		if _, ok := published[off]; !ok {
			t.Fatalf("offsets are not %d..%d: %d missing", top+1, top+total, off)
		}
	}
	for i, r := range results {
		if r.err != nil {
			t.Fatalf("subscriber %d: %v", i, r.err)
		}
		for _, off := range r.offsets {
			if r.data[off] != published[off] {
				t.Fatalf("subscriber %d: offset %d carries %s, published %s", i, off, r.data[off], published[off])
			}
		}
	}
	// Nothing more is on the way: a fence reaches everyone next.
	off := testutil.Publish(t, n, "fan", `"fence"`)
	for i, c := range clients {
		if m := c.Read(); m.Offset != off {
			t.Fatalf("subscriber %d: got %s after the %d messages, want the fence", i, m.Raw, total)
		}
	}
	st := testutil.Stats(t, n, "")
	if st["publications"] != total+1 || st["deliveries"] != subscribers*(total+1) {
		t.Fatalf("stats %v: want %d publications and %d deliveries", st, total+1, subscribers*(total+1))
	}
}
