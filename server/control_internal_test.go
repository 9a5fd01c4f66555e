package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/herald-ws/herald/engine"
	"github.com/herald-ws/herald/session"
)

// TestPresenceAnswerIsBoundedForNATS: a node's presence answer to the
// cluster stops at the size bound and says it was truncated; without a
// bound (a node answering itself) it lists every member.
func TestPresenceAnswerIsBoundedForNATS(t *testing.T) {
	n, err := New(Options{
		Engine: engine.Config{Addr: "127.0.0.1:0", Loops: 2, Session: session.Config{
			MaxMessageSize: 1 << 20, WriteBufferLimit: 1 << 20, HandshakeTimeout: 5 * time.Second}},
		PresenceChannels: []string{"room:*"},
		Logger:           slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	const members = 20
	for i := range members {
		c, _, _, err := ws.Dial(context.Background(), "ws://"+n.Addr().String()+"/ws")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := wsutil.WriteClientText(c, []byte(`{"op":"subscribe","channel":"room:1","id":1}`)); err != nil {
			t.Fatal(err)
		}
		if ack, err := wsutil.ReadServerText(c); err != nil || !strings.Contains(string(ack), `"ack"`) {
			t.Fatalf("subscribe %d: %s %v", i, ack, err)
		}
	}
	ctx := context.Background()
	all := n.answer(ctx, controlRequest{Op: "presence", Channel: "room:1"}, 0)
	if len(all.Members) != members || all.Truncated {
		t.Fatalf("unbounded answer: %d members, truncated %v", len(all.Members), all.Truncated)
	}
	per := len(all.Members[0].Conn) + 32
	bounded := n.answer(ctx, controlRequest{Op: "presence", Channel: "room:1"}, 5*per)
	if len(bounded.Members) != 5 || !bounded.Truncated {
		t.Fatalf("bounded answer: %d members, truncated %v; want 5 and true", len(bounded.Members), bounded.Truncated)
	}
	res, err := control{n}.Presence(ctx, "room:1")
	if err != nil || len(res.Members) != members || res.Truncated {
		t.Fatal(fmt.Sprint(res, err))
	}
}
