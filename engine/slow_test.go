package engine_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/gobwas/ws"
	gorilla "github.com/gorilla/websocket"

	"github.com/herald-ws/herald/codec"
	"github.com/herald-ws/herald/internal/testutil"
	"github.com/herald-ws/herald/session"
)

// flood answers "flood" with a burst of messages, each flushed on its own
// the way a fan-out writes publications, so a client that does not keep up
// passes the write-buffer limit.
type flood struct{}

func (flood) Authorize(*session.Session, *codec.Request) (int, string) { return 0, "" }
func (flood) OnOpen(*session.Session)                                  {}
func (flood) OnClose(*session.Session, session.CloseReason)            {}
func (flood) OnMessage(s *session.Session, _ ws.OpCode, p []byte) {
	if string(p) != "flood" {
		return
	}
	msg := []byte(strings.Repeat("m", 8<<10))
	for i := 0; i < 8000 && s.State() == session.StateOpen; i++ {
		s.Send(ws.OpText, msg)
		if !s.Flush() {
			return
		}
	}
}

func slowServer(t *testing.T) string {
	srv := testutil.Start(t, testutil.Options{
		WriteBufferLimit: 8 << 20, // more than the kernel holds for a connection (tcp_wmem max is 4 MiB)
		CloseTimeout:     5 * time.Second,
		Routes:           map[string]session.Handler{"/flood": flood{}},
	})
	return testutil.URL(srv, "/flood")
}

// smallWindow dials with a small receive buffer, so the server's backlog
// builds up after a few hundred kilobytes instead of several megabytes.
func smallWindow(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{Control: nil}
	c, err := d.DialContext(ctx, network, addr)
	if err == nil {
		_ = c.(*net.TCPConn).SetReadBuffer(32 << 10)
	}
	return c, err
}

// TestSlowConsumerCloseReachesGorilla: a gorilla client that reads slowly
// reads some messages, then close 1008 "slow consumer" (not 1006).
func TestSlowConsumerCloseReachesGorilla(t *testing.T) {
	url := slowServer(t)
	d := gorilla.Dialer{NetDialContext: smallWindow, ReadBufferSize: 4096}
	c, _, err := d.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.WriteMessage(gorilla.TextMessage, []byte("flood")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	read := 0
	for {
		_, _, err := c.ReadMessage()
		if err != nil {
			var ce *gorilla.CloseError
			if !errors.As(err, &ce) || ce.Code != 1008 || ce.Text != "slow consumer" {
				t.Fatalf("after %d messages: %v, want close 1008 \"slow consumer\"", read, err)
			}
			break
		}
		read++
		if read < 20 {
			time.Sleep(20 * time.Millisecond) // slow at first: the backlog piles up
		}
	}
	if read == 0 || read >= 8000 {
		t.Fatalf("read %d messages before the close", read)
	}
	t.Logf("gorilla read %d messages, then 1008", read)
}

// TestSlowConsumerCloseReachesCoder: the same with coder/websocket.
func TestSlowConsumerCloseReachesCoder(t *testing.T) {
	url := slowServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	hc := &http.Client{Transport: &http.Transport{DialContext: smallWindow}}
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	if err := c.Write(ctx, websocket.MessageText, []byte("flood")); err != nil {
		t.Fatal(err)
	}
	read := 0
	for {
		_, _, err := c.Read(ctx)
		if err != nil {
			var ce websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != websocket.StatusPolicyViolation || ce.Reason != "slow consumer" {
				t.Fatalf("after %d messages: %v, want close 1008 \"slow consumer\"", read, err)
			}
			break
		}
		read++
		if read < 20 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if read == 0 || read >= 8000 {
		t.Fatalf("read %d messages before the close", read)
	}
	t.Logf("coder read %d messages, then 1008", read)
}
