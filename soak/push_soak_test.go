//go:build soak

package soak

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/herald-ws/herald/internal/testutil"
)

// TestSoakPushFanOut5000 subscribes 5,000 connections, driven by eight
// goroutines, to one channel and publishes 200 messages from four
// goroutines at once: every subscriber must get all 200 exactly once, in
// offset order, with the data published at each offset.
func TestSoakPushFanOut5000(t *testing.T) {
	const (
		conns      = 5000
		workers    = 8
		publishers = 4
		perPub     = 50
		total      = publishers * perPub
		channel    = "soak"
	)
	n := testutil.StartNode(t, testutil.NodeOptions{Options: testutil.Options{HandshakeTimeout: 30 * time.Second}})
	clients := make([]*testutil.WSClient, conns)
	acks := make([]uint64, conns)
	defer func() {
		for _, c := range clients {
			if c != nil {
				_ = c.Conn.Close()
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, workers+publishers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < conns; i += workers {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				c, err := testutil.DialWSContext(ctx, testutil.WSURL(n, ""), nil, nil)
				cancel()
				if err != nil {
					errs <- fmt.Errorf("dial %d: %w", i, err)
					return
				}
				clients[i] = c
				if err := c.SendJSON(fmt.Sprintf(`{"op":"subscribe","channel":%q,"id":%d}`, channel, i)); err != nil {
					errs <- fmt.Errorf("subscribe %d: %w", i, err)
					return
				}
				m, err := c.Next(30 * time.Second)
				if err != nil || m.Op != "ack" || string(m.ID) != fmt.Sprint(i) || m.Offset == 0 {
					errs <- fmt.Errorf("subscribe %d: got %s %v", i, m.Raw, err)
					return
				}
				acks[i] = m.Offset
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	top := acks[0]
	for i, off := range acks {
		if off != top {
			t.Fatalf("subscriber %d acked offset %d, subscriber 0 %d", i, off, top)
		}
	}
	if st := testutil.Stats(t, n, ""); st["connections"] != conns || st["subscriptions"] != conns {
		t.Fatalf("stats %v: want %d connections and subscriptions", st, conns)
	}

	// Readers and publishers run at once. A reader checks order as it
	// reads, and the data once every offset is known.
	var mu sync.Mutex
	published := make(map[uint64]string, total)
	pubDone := make(chan struct{})
	type got struct {
		offset uint64
		data   string
	}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msgs := make([]got, 0, total)
			for i := w; i < conns; i += workers {
				msgs = msgs[:0]
				c := clients[i]
				for len(msgs) < total {
					m, err := c.Next(60 * time.Second)
					if err != nil {
						errs <- fmt.Errorf("subscriber %d after %d messages: %w", i, len(msgs), err)
						return
					}
					if m.Op != "message" || m.Channel != channel {
						errs <- fmt.Errorf("subscriber %d: unexpected %s", i, m.Raw)
						return
					}
					if k := len(msgs); k > 0 && m.Offset <= msgs[k-1].offset {
						errs <- fmt.Errorf("subscriber %d: offset %d after %d", i, m.Offset, msgs[k-1].offset)
						return
					}
					if m.Offset <= top || m.Offset > top+total {
						errs <- fmt.Errorf("subscriber %d: offset %d outside %d..%d", i, m.Offset, top+1, top+total)
						return
					}
					msgs = append(msgs, got{m.Offset, string(m.Data)})
				}
				<-pubDone
				for _, g := range msgs {
					if published[g.offset] != g.data {
						errs <- fmt.Errorf("subscriber %d: offset %d carries %s, published %s", i, g.offset, g.data, published[g.offset])
						return
					}
				}
			}
		}()
	}
	var pubs sync.WaitGroup
	start := time.Now()
	for p := range publishers {
		pubs.Add(1)
		go func() {
			defer pubs.Done()
			for i := range perPub {
				d := fmt.Sprintf(`{"publisher":%d,"seq":%d}`, p, i)
				off, err := testutil.PublishKey(n, "", channel, d)
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
	close(pubDone)
	wg.Wait()
	t.Logf("%d publications to %d subscribers delivered and checked in %v", total, conns, time.Since(start))
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	if len(published) != total {
		t.Fatalf("%d distinct offsets for %d publications", len(published), total)
	}
	st := testutil.Stats(t, n, "")
	if st["publications"] != total || st["deliveries"] != conns*total || st["slow_consumer_closes"] != 0 {
		t.Fatalf("stats %v: want %d publications, %d deliveries and no slow-consumer close", st, total, conns*total)
	}
	if got, want := st["messages_out"], int64(conns*(total+1)); got != want {
		t.Fatalf("server counted %d messages out, want %d (acks and messages)", got, want)
	}
}
