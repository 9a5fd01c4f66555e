package server_test

import (
	"strings"
	"testing"

	"github.com/herald-ws/herald/internal/testutil"
)

// TestRequestIDLengthIsCapped: an id is echoed only when it is a JSON
// number of at most 20 bytes; a longer one is refused without echoing it,
// so a client cannot make the server keep or repeat big ids.
func TestRequestIDLengthIsCapped(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{ClientPublish: true})
	c := testutil.DialWS(t, n, "", nil)
	long := strings.Repeat("9", 21)
	for _, tc := range []struct {
		req, want string
	}{
		{`{"op":"ping","id":18446744073709551615}`, `{"op":"pong","id":18446744073709551615}`},
		{`{"op":"ping","id":-1234567890123456789}`, `{"op":"pong","id":-1234567890123456789}`},
		{`{"op":"ping","id":1.2345678901234567e3}`, `{"op":"pong","id":1.2345678901234567e3}`},
		{`{"op":"ping","id":` + long + `}`, `{"op":"error","code":"bad_request","message":"id must be a number of at most 20 characters"}`},
		{`{"op":"subscribe","channel":"a","id":1` + strings.Repeat("0", 5000) + `}`, `{"op":"error","code":"bad_request","message":"id must be a number of at most 20 characters"}`},
		{`{"op":"publish","channel":"a","data":1,"id":` + strings.Repeat("1", 100) + `e-99}`, `{"op":"error","code":"bad_request","message":"id must be a number of at most 20 characters"}`},
	} {
		c.Send(tc.req)
		wantRaw(t, c.Read(), tc.want)
	}
	// Still served.
	c.Send(`{"op":"ping","id":7}`)
	wantRaw(t, c.Read(), `{"op":"pong","id":7}`)
}
