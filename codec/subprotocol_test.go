package codec

import (
	"strings"
	"testing"
)

// TestSubprotocolOffer: the offered subprotocols are read from every
// Sec-WebSocket-Protocol line, compared exactly (case-sensitive), and an
// answer goes into the 101 only when the application selected one.
func TestSubprotocolOffer(t *testing.T) {
	for _, c := range []struct {
		name    string
		headers []string
		offers  bool
		has     []string
		hasNot  []string
	}{
		{"none", nil, false, nil, []string{"chat"}},
		{"one", []string{"Sec-WebSocket-Protocol: herald.json.v1"}, true, []string{"herald.json.v1"}, []string{"herald", "HERALD.JSON.V1", "herald.json.v"}},
		{"list", []string{"Sec-WebSocket-Protocol: chat,  herald.json.v1 ,x"}, true, []string{"chat", "herald.json.v1", "x"}, []string{"herald.json.v1 "}},
		{"two lines", []string{"Sec-WebSocket-Protocol: chat", "Sec-WebSocket-Protocol: v2.json"}, true, []string{"chat", "v2.json"}, []string{"chat, v2.json"}},
		{"empty list", []string{"Sec-WebSocket-Protocol: , ,"}, false, nil, []string{""}},
	} {
		r, _, err := parse(t, plus(c.headers...), ParseOptions{})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := r.OffersProtocols(); got != c.offers {
			t.Errorf("%s: OffersProtocols = %v, want %v", c.name, got, c.offers)
		}
		for _, p := range c.has {
			if !r.OffersProtocol(p) {
				t.Errorf("%s: OffersProtocol(%q) = false", c.name, p)
			}
		}
		for _, p := range c.hasNot {
			if r.OffersProtocol(p) {
				t.Errorf("%s: OffersProtocol(%q) = true", c.name, p)
			}
		}
		if acc := string(AppendAccept(nil, &r, false)); strings.Contains(acc, "Sec-WebSocket-Protocol") {
			t.Errorf("%s: 101 names a subprotocol nobody selected:\n%s", c.name, acc)
		}
		if c.offers {
			r.Subprotocol = c.has[0]
			acc := string(AppendAccept(nil, &r, false))
			if !strings.Contains(acc, "\r\nSec-WebSocket-Protocol: "+c.has[0]+"\r\n") || !strings.HasSuffix(acc, "\r\n\r\n") {
				t.Errorf("%s: 101 does not answer %q:\n%q", c.name, c.has[0], acc)
			}
		}
	}
	lines := []string{}
	for i := range maxProtocolLines + 1 {
		lines = append(lines, "Sec-WebSocket-Protocol: p"+string(rune('a'+i)))
	}
	if _, _, err := parse(t, plus(lines...), ParseOptions{}); err != ErrMalformedRequest {
		t.Errorf("%d protocol lines: err %v, want ErrMalformedRequest", len(lines), err)
	}
}
