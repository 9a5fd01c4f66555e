package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"

	"github.com/herald-ws/herald/internal/testutil"
)

// smallRcvBuf dials with a 4 KiB receive buffer set before connect, so the
// window the peer sees stays small.
func smallRcvBuf(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4096)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	return d.DialContext(ctx, network, addr)
}

func heapAfterGC() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestSlowSubscriber: a subscriber that never reads is closed as a slow
// consumer once 64 KiB are pending for it, while three subscribers that
// read get every one of 1,000 16 KiB messages; the process's heap does not
// grow with what the slow one failed to take.
func TestSlowSubscriber(t *testing.T) {
	const (
		fast    = 3
		pubs    = 1000
		size    = 16 << 10
		limit   = 64 << 10
		channel = "firehose"
	)
	n := testutil.StartNode(t, testutil.NodeOptions{
		Options:     testutil.Options{WriteBufferLimit: limit},
		HistorySize: -1, // keep no history: the heap should hold no publication
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	slow, err := testutil.DialWSContext(ctx, testutil.WSURL(n, ""), nil, smallRcvBuf)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Conn.Close()
	if err := slow.SendJSON(`{"op":"subscribe","channel":"firehose","id":1}`); err != nil {
		t.Fatal(err)
	}
	ack, err := slow.Next(10 * time.Second)
	if err != nil || ack.Op != "ack" {
		t.Fatalf("slow subscriber's ack: %s %v", ack.Raw, err)
	}
	top := ack.Offset

	payload := `"` + strings.Repeat("x", size) + `"`
	var readers sync.WaitGroup
	readErrs := make([]error, fast)
	for i := range fast {
		c := testutil.DialWS(t, n, "", nil)
		if off := c.Subscribe(channel, 1); off != top {
			t.Fatalf("fast subscriber %d acked %d, want %d", i, off, top)
		}
		readers.Add(1)
		go func() {
			defer readers.Done()
			for want := top + 1; want <= top+pubs; want++ {
				// Compared as bytes: decoding 16 MiB of JSON under -race
				// would dominate the test.
				p, err := c.NextRaw(30 * time.Second)
				if err != nil {
					readErrs[i] = fmt.Errorf("waiting for offset %d: %w", want, err)
					return
				}
				if string(p) != messageFrame(channel, want, payload) {
					readErrs[i] = fmt.Errorf("want offset %d with the payload, got %.120s", want, p)
					return
				}
			}
		}()
	}

	before := heapAfterGC()
	closedAt := 0
	for i := range pubs {
		if off := testutil.Publish(t, n, channel, payload); off != top+1+uint64(i) {
			t.Fatalf("publication %d got offset %d", i, off)
		}
		if closedAt == 0 && i%10 == 9 && testutil.Stats(t, n, "")["slow_consumer_closes"] > 0 {
			closedAt = i + 1
		}
	}
	readers.Wait()
	for i, err := range readErrs {
		if err != nil {
			t.Fatalf("fast subscriber %d: %v", i, err)
		}
	}
	grew := int64(heapAfterGC()) - int64(before)
	t.Logf("slow consumer closed after ~%d publications of %d KiB; heap grew %d KiB", closedAt, size>>10, grew>>10)
	if closedAt == 0 {
		t.Fatalf("the slow subscriber was not closed after %d publications of %d KiB", pubs, size>>10)
	}
	if grew > 8<<20 {
		t.Fatalf("heap grew by %d MiB for %d MiB published", grew>>20, pubs*size>>20)
	}

	// The counters settle: one slow-consumer close, three subscribers left.
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := testutil.Stats(t, n, "")
		if st["slow_consumer_closes"] == 1 && st["connections"] == fast && st["subscriptions"] == fast {
			if st["deliveries"] < fast*pubs {
				t.Fatalf("stats %v: want at least %d deliveries", st, fast*pubs)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats %v: want 1 slow-consumer close and %d connections and subscriptions", st, fast)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// What the slow subscriber finds when it finally reads: a prefix of
	// the stream, in order, then a 1008 close frame or the connection cut.
	want := top + 1
	for {
		m, err := slow.Next(10 * time.Second)
		if err == nil {
			if m.Op != "message" || m.Offset != want {
				t.Fatalf("slow subscriber: got %.80s, want offset %d", m.Raw, want)
			}
			want++
			continue
		}
		var ce *testutil.CloseError
		switch {
		case errors.As(err, &ce):
			if ce.Code != ws.StatusPolicyViolation {
				t.Fatalf("slow subscriber: close code %d, want 1008", ce.Code)
			}
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		default:
			t.Fatalf("slow subscriber: %v after %d messages, want a 1008 close or the connection cut", err, want-top-1)
		}
		t.Logf("slow subscriber read %d messages, then %v", want-top-1, err)
		break
	}
	if want-top-1 >= pubs {
		t.Fatalf("the slow subscriber got all %d messages", pubs)
	}
}
