package server_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/herald-ws/herald/internal/deflatewin"
	"github.com/herald-ws/herald/internal/testutil"
	"github.com/herald-ws/herald/internal/wstest"
)

// TestWindowBitsFanout subscribes /ws clients with server_max_window_bits
// from 8 to 15 (two sessions sharing some windows) to one channel and
// publishes a 25 KiB message: each must receive a compressed frame that
// inflates to it with no back-reference past its own window. It needs the
// session to negotiate windows (codec.ParseOptions.WindowBits,
// Session.DeflateWindowBits) and the hub to pick the frame for each
// session's window (codec.FrameWindowBits).
func TestWindowBitsFanout(t *testing.T) {
	t.Parallel()
	o := testutil.NodeOptions{}
	o.Compression = true
	o.CompressionMinSize = 16
	n := testutil.StartNode(t, o)
	data := `"` + strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJKLMNOPQRSTUVWXYZ_", 400) + `"`
	type cl struct {
		bits int
		c    *wstest.Conn
	}
	var cs []cl
	for _, bits := range []int{8, 9, 12, 15, 9, 8} {
		c := wstest.Dial(t, n.Addr().String(), "/ws", http.Header{"Sec-Websocket-Extensions": {"permessage-deflate; server_max_window_bits=" + strconv.Itoa(bits)}})
		c.WriteMessage(wstest.OpText, []byte(`{"op":"subscribe","channel":"w","id":1}`))
		cs = append(cs, cl{bits, c})
	}
	read := func(x cl, compressed bool) []byte {
		f := x.c.ReadFrame()
		p := f.Payload
		if (f.Rsv == wstest.RSV1) != compressed {
			t.Fatalf("%d bits: frame %s, compressed %v", x.bits, f, compressed)
		}
		if compressed {
			res, err := deflatewin.Inflate(append(p, 0, 0, 0xff, 0xff, 1, 0, 0, 0xff, 0xff))
			if err != nil {
				t.Fatal(err)
			}
			if res.MaxDistance > 1<<x.bits {
				t.Fatalf("%d bits: distance %d", x.bits, res.MaxDistance)
			}
			return res.Out
		}
		return p
	}
	for _, x := range cs {
		if m := read(x, true); !strings.Contains(string(m), `"ack"`) {
			t.Fatalf("%s", m)
		}
	}
	testutil.Publish(t, n, "w", data)
	for _, x := range cs {
		if m := read(x, true); !strings.Contains(string(m), data) {
			t.Fatalf("%d: %.80s", x.bits, m)
		}
	}
}
