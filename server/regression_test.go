package server_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/herald-ws/herald/broker"
	"github.com/herald-ws/herald/internal/testutil"
)

// TestFanOutSurvivesSubscribersVanishing: subscribers that reset their
// connections in the middle of broadcasts make gnet close them inside the
// fan-out's own writes; the fan-out must neither crash nor skip the
// subscribers that remain.
func TestFanOutSurvivesSubscribersVanishing(t *testing.T) {
	n := testutil.StartNode(t, testutil.NodeOptions{Options: testutil.Options{Loops: 2}})
	const subs = 200
	clients := make([]*testutil.WSClient, subs)
	for i := range clients {
		clients[i] = testutil.DialWS(t, n, "", nil)
		clients[i].Subscribe("vanish", 1)
	}
	// Half of them leave abruptly (RST) while publications go out.
	stop := make(chan struct{})
	var pubs sync.WaitGroup
	pubs.Add(1)
	var published []uint64
	go func() {
		defer pubs.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			res, err := n.Broker().Publish(context.Background(), "vanish", []byte(fmt.Sprint(i)), broker.PublishOptions{})
			if err != nil {
				t.Errorf("publish: %v", err)
				return
			}
			published = append(published, res.Offset)
			if i%10 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	for i := 0; i < subs; i += 2 {
		_ = clients[i].Conn.(*net.TCPConn).SetLinger(0)
		_ = clients[i].Conn.Close()
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	pubs.Wait()
	for i := 1; i < subs; i += 2 {
		c := clients[i]
		var last uint64
		for got := 0; got < len(published); got++ {
			m, err := c.Next(10 * time.Second)
			if err != nil {
				t.Fatalf("subscriber %d after %d of %d messages: %v", i, got, len(published), err)
			}
			if m.Offset != published[got] {
				t.Fatalf("subscriber %d message %d has offset %d, want %d (last %d)", i, got, m.Offset, published[got], last)
			}
			last = m.Offset
		}
	}
}

// TestBurstKeepsEveryPublicationInOrder publishes far more than gnet's
// 1,024-task queue, and than the loop's inbox bound, in one burst straight
// to the broker (no admission): no publication may be overtaken by a later
// one and so skipped as already sent, and what a full inbox could not take
// is recovered from history, in order.
func TestBurstKeepsEveryPublicationInOrder(t *testing.T) {
	n := testutil.StartNode(t, testutil.NodeOptions{Options: testutil.Options{Loops: 1}, HistorySize: 30000})
	const subs, burst = 5, 20000
	clients := make([]*testutil.WSClient, subs)
	for i := range clients {
		clients[i] = testutil.DialWS(t, n, "", nil)
		clients[i].Subscribe("burst", 1)
	}
	offsets := make([]uint64, burst)
	for i := range offsets {
		res, err := n.Broker().Publish(context.Background(), "burst", []byte("1"), broker.PublishOptions{})
		if err != nil {
			t.Fatal(err)
		}
		offsets[i] = res.Offset
	}
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k, want := range offsets {
				m, err := c.Next(20 * time.Second)
				if err != nil {
					t.Errorf("subscriber %d after %d of %d: %v", i, k, burst, err)
					return
				}
				if m.Offset != want {
					t.Errorf("subscriber %d message %d has offset %d, want %d", i, k, m.Offset, want)
					return
				}
			}
		}()
	}
	wg.Wait()
}
