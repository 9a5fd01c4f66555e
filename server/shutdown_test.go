package server_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/herald-ws/herald/internal/testutil"
)

// TestShutdown: Node.Shutdown turns /readyz to 503, refuses new clients,
// sends close 1001 to every client and returns once they have all answered.
func TestShutdown(t *testing.T) {
	// A long close timeout: the holdout below must not be dropped for
	// answering late while the test checks the draining node.
	n := testutil.StartNode(t, testutil.NodeOptions{Options: testutil.Options{CloseTimeout: 30 * time.Second}})
	clients := make([]*testutil.WSClient, 4)
	for i := range clients {
		clients[i] = testutil.DialWS(t, n, "", nil)
		clients[i].Subscribe("news", 1)
	}
	if status, body, err := testutil.APIRequest(n, http.MethodGet, "/readyz", "", nil); err != nil || status != http.StatusOK {
		t.Fatalf("/readyz before shutdown: %d %s %v", status, body, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- testutil.ShutdownNode(ctx, n, 400*time.Millisecond) }()

	// Every client gets 1001; all but the last answer at once, so the node
	// stays draining until the last one does.
	for i, c := range clients {
		m, err := c.Next(10 * time.Second)
		var ce *testutil.CloseError
		if !errors.As(err, &ce) || ce.Code != ws.StatusGoingAway {
			t.Fatalf("client %d: got %s %v, want close 1001", i, m.Raw, err)
		}
		if i < len(clients)-1 {
			if err := c.SendClose(ws.StatusGoingAway); err != nil {
				t.Fatal(err)
			}
		}
	}
	holdout := clients[len(clients)-1]

	status, body, err := testutil.APIRequest(n, http.MethodGet, "/readyz", "", nil)
	if err != nil || status != http.StatusServiceUnavailable {
		t.Fatalf("/readyz while draining: %d %s %v, want 503", status, body, err)
	}
	if status, _ := testutil.Upgrade(t, n, "/ws", nil); status != http.StatusServiceUnavailable {
		t.Fatalf("upgrade while draining: %d, want 503", status)
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned (%v) before the last client answered", err)
	default:
	}

	if err := holdout.SendClose(ws.StatusGoingAway); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Shutdown did not return")
	}
	t.Logf("shutdown took %v", time.Since(start))
	for i, c := range clients {
		if _, err := c.Next(5 * time.Second); !errors.Is(err, io.EOF) {
			t.Fatalf("client %d after shutdown: %v, want EOF", i, err)
		}
	}
	if _, _, err := testutil.APIRequest(n, http.MethodGet, "/readyz", "", nil); err == nil {
		t.Fatal("the API still answers after Shutdown")
	}
}
