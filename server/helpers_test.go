package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/herald-ws/herald/internal/testutil"
	"github.com/herald-ws/herald/server"
)

// fence proves that c received nothing since its last read: it publishes a
// marker to channel (which c is subscribed to) and requires c's very next
// frame to be that marker. A publication made before the fence reaches a
// loop before it (the broker delivers synchronously and each loop runs its
// tasks in order), so anything wrongly delivered would show up first.
func fence(t *testing.T, n *server.Node, c *testutil.WSClient, channel string) {
	t.Helper()
	off := testutil.Publish(t, n, channel, `"fence"`)
	m := c.Read()
	if m.Op != "message" || m.Channel != channel || m.Offset != off || string(m.Data) != `"fence"` {
		t.Fatalf("expected only the fence on %s at %d, got %s", channel, off, m.Raw)
	}
}

// wantRaw fails unless m's payload is exactly want.
func wantRaw(t *testing.T, m testutil.Msg, want string) {
	t.Helper()
	if string(m.Raw) != want {
		t.Fatalf("frame\n got  %s\n want %s", m.Raw, want)
	}
}

// messageFrame is the exact frame the server sends for a publication.
func messageFrame(channel string, offset uint64, data string) string {
	return fmt.Sprintf(`{"op":"message","channel":%q,"offset":%d,"data":%s}`, channel, offset, data)
}

// jsonEqual reports whether a and b hold the same JSON value.
func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}
