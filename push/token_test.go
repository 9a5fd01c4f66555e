package push

import (
	"testing"

	"github.com/herald-ws/herald/codec"
)

// TestTokenOf is the table of where a token comes from: the Bearer header
// (scheme case-insensitive, 1*SP before the token) wins over ?token=, and
// the query is read pair by pair so an unrelated malformed pair cannot hide
// the token.
func TestTokenOf(t *testing.T) {
	for _, c := range []struct {
		name, query, auth, want string
	}{
		{"nothing", "", "", ""},
		{"query", "token=abc", "", "abc"},
		{"query among others", "a=1&token=abc&b=2", "", "abc"},
		{"query escaped", "token=a%2Bb%3Dc+d", "", "a+b=c d"},
		{"malformed escape in another pair", "a=%zz&token=abc", "", "abc"},
		{"malformed escape after the token", "token=abc&a=%zz", "", "abc"},
		{"semicolon pair", ";&token=abc", "", "abc"},
		{"semicolon inside a pair", "a=1;b=2&token=abc", "", "abc"},
		{"empty pairs", "&&token=abc&&", "", "abc"},
		{"pair without '='", "flag&token=abc", "", "abc"},
		{"first token pair decides", "token=one&token=two", "", "one"},
		{"malformed escape in the token", "token=a%zz&x=1", "", ""},
		{"empty token", "token=", "", ""},
		{"key is not unescaped", "%74oken=abc", "", ""},
		{"key is case-sensitive", "Token=abc", "", ""},
		{"key with a prefix", "xtoken=abc", "", ""},
		{"bearer", "", "Bearer abc.def", "abc.def"},
		{"bearer lower-case", "", "bearer abc", "abc"},
		{"bearer upper-case", "", "BEARER abc", "abc"},
		{"bearer mixed case", "", "bEaReR abc", "abc"},
		{"bearer with several spaces", "", "Bearer   abc", "abc"},
		// The separator is SP: "Bearer\tabc" is one unknown scheme.
		{"bearer with a tab", "token=q", "Bearer\tabc", "q"},
		{"bearer without a token", "", "Bearer", ""},
		{"bearer with only spaces", "", "Bearer   ", ""},
		{"bearer token with a space", "", "Bearer abc def", ""},
		{"other scheme ignored", "token=q", "Basic dXNlcjpwYXNz", "q"},
		{"scheme prefix is not Bearer", "token=q", "Bearerx abc", "q"},
		{"header wins over a different query token", "token=fromquery", "Bearer fromheader", "fromheader"},
		{"malformed header still wins", "token=fromquery", "Bearer", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := &codec.Request{RawQuery: []byte(c.query), Authorization: []byte(c.auth)}
			if got := tokenOf(r); got != c.want {
				t.Fatalf("tokenOf(?%s, Authorization: %q) = %q, want %q", c.query, c.auth, got, c.want)
			}
		})
	}
}
