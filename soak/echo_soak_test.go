//go:build soak

package soak

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/herald-ws/herald/internal/testutil"
)

// TestSoakEcho5000 holds 5,000 concurrent echo connections, driven by eight
// goroutines, and checks every reply of ten rounds byte for byte.
func TestSoakEcho5000(t *testing.T) {
	const (
		conns   = 5000
		workers = 8
		rounds  = 10
	)
	srv := testutil.Start(t, testutil.Options{HandshakeTimeout: 30 * time.Second})
	type client struct {
		c  net.Conn
		br *bufio.Reader
	}
	clients := make([]client, conns)
	dialer := ws.Dialer{Timeout: 10 * time.Second}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < conns; i += workers {
				c, br, _, err := dialer.Dial(context.Background(), testutil.URL(srv, "/echo"))
				if err != nil {
					errs <- fmt.Errorf("dial %d: %w", i, err)
					return
				}
				if br == nil {
					br = bufio.NewReaderSize(c, 512)
				}
				mu.Lock()
				clients[i] = client{c, br}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	defer func() {
		for _, cl := range clients {
			_ = cl.c.Close()
		}
	}()
	if got := srv.Conns(); got != conns {
		t.Fatalf("server holds %d connections, want %d", got, conns)
	}

	for round := range rounds {
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < conns; i += workers {
					msg := fmt.Appendf(nil, "round %d conn %d", round, i)
					if err := wsutil.WriteClientText(clients[i].c, msg); err != nil {
						errs <- fmt.Errorf("write %d: %w", i, err)
						return
					}
				}
				for i := w; i < conns; i += workers {
					cl := clients[i]
					_ = cl.c.SetReadDeadline(time.Now().Add(30 * time.Second))
					got, err := wsutil.ReadServerText(struct {
						io.Reader
						io.Writer
					}{cl.br, cl.c})
					if err != nil {
						errs <- fmt.Errorf("read %d: %w", i, err)
						return
					}
					if want := fmt.Sprintf("round %d conn %d", round, i); string(got) != want {
						errs <- fmt.Errorf("conn %d got %q, want %q", i, got, want)
						return
					}
				}
			}()
		}
		wg.Wait()
		select {
		case err := <-errs:
			t.Fatalf("round %d: %v", round, err)
		default:
		}
	}
	st := srv.Stats()
	if got, want := st.MessagesIn.Load(), int64(conns*rounds); got != want {
		t.Fatalf("server counted %d messages in, want %d", got, want)
	}
	if got, want := st.MessagesOut.Load(), int64(conns*rounds); got != want {
		t.Fatalf("server counted %d messages out, want %d", got, want)
	}
}
