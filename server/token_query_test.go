package server_test

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/herald-ws/herald/internal/testutil"
)

// TestTokenQueryAndHeader runs the token rules end to end through a real
// node: a malformed unrelated query pair does not hide ?token=, the Bearer
// scheme is case-insensitive with one or more spaces, and when both the
// header and the query carry a token the header decides.
func TestTokenQueryAndHeader(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{TokenSecret: secret})
	good := url.QueryEscape(mint(t, secret, "42", nil, false, time.Hour))
	bad := url.QueryEscape(mint(t, "other-secret", "42", nil, false, time.Hour))
	bearer := func(v string) http.Header { return http.Header{"Authorization": {v}} }
	raw := mint(t, secret, "42", nil, false, time.Hour)
	for _, tc := range []struct {
		name   string
		target string
		header http.Header
		status int
	}{
		{"malformed escape before the token", "/ws?a=%zz&token=" + good, nil, 101},
		{"malformed escape after the token", "/ws?token=" + good + "&a=%zz", nil, 101},
		{"semicolon pair before the token", "/ws?;&token=" + good, nil, 101},
		{"semicolons inside a pair", "/ws?a=1;b=2&token=" + good, nil, 101},
		{"malformed escape in the token", "/ws?token=%zz" + good, nil, 401},
		{"BEARER with two spaces", "/ws", bearer("BEARER  " + raw), 101},
		{"bearer header over a bad query token", "/ws?token=" + bad, bearer("bearer " + raw), 101},
		{"bad bearer header over a good query token", "/ws?token=" + good, bearer("Bearer " + mint(t, "other-secret", "42", nil, false, time.Hour)), 401},
		{"empty bearer header over a good query token", "/ws?token=" + good, bearer("Bearer"), 401},
		{"Basic header ignored, query token used", "/ws?token=" + good, bearer("Basic dXNlcjpwYXNz"), 101},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if status, body := testutil.Upgrade(t, n, tc.target, tc.header); status != tc.status {
				t.Fatalf("status %d (%q), want %d", status, body, tc.status)
			}
		})
	}
	// The upgraded connection speaks the protocol as its token allows.
	c := testutil.DialWS(t, n, "a=%zz&;&token="+good, nil)
	c.Subscribe("user:42", 1)
}
