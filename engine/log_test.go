package engine_test

import (
	"bytes"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/herald-ws/herald/internal/testutil"
	"github.com/herald-ws/herald/session"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestCloseIsLoggedWithReasonAndCode: every close gets a debug line with
// its reason's stable name and the close code sent.
func TestCloseIsLoggedWithReasonAndCode(t *testing.T) {
	var logs syncBuffer
	srv := testutil.Start(t, testutil.Options{
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	// The peer closes with 4001: the server echoes the code.
	c := dial(t, srv, "/echo")
	if err := wsutil.WriteClientMessage(c, ws.OpClose, ws.NewCloseFrameBody(4001, "")); err != nil {
		t.Fatal(err)
	}
	expectEOF(t, c, 3*time.Second)
	// A broken frame: protocol error, 1002.
	p := dial(t, srv, "/echo")
	if _, err := p.Write([]byte{0x83, 0x80, 0, 0, 0, 0}); err != nil { // reserved opcode
		t.Fatal(err)
	}
	expectEOF(t, p, 3*time.Second)
	_ = p.Close()
	// An unknown route: rejected during the upgrade, no close frame.
	r, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = r.Write([]byte("GET /nope HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"))
	expectEOF(t, r, 3*time.Second)
	for _, want := range []string{
		`msg="connection closed" reason=peer code=4001`,
		`msg="connection closed" reason=protocol_error code=1002`,
		`msg="connection closed" reason=handshake_rejected code=0`,
	} {
		waitFor(t, 3*time.Second, func() bool { return strings.Contains(logs.String(), want) })
	}
}

// TestCloseReasonNames: the names are stable (they feed logs and metrics).
func TestCloseReasonNames(t *testing.T) {
	for r, want := range map[session.CloseReason]string{
		session.ClosePeer: "peer", session.CloseProtocolError: "protocol_error",
		session.CloseHandshakeRejected: "handshake_rejected", session.CloseHandshakeTimeout: "handshake_timeout",
		session.CloseIdleTimeout: "idle_timeout", session.CloseSlowConsumer: "slow_consumer",
		session.CloseGoingAway: "going_away", session.ClosePolicy: "policy", session.CloseTimeout: "close_timeout",
		session.CloseInboundBudget: "inbound_budget", 0: "unknown", 200: "unknown",
	} {
		if got := r.String(); got != want {
			t.Errorf("CloseReason(%d).String() = %q, want %q", r, got, want)
		}
	}
}
