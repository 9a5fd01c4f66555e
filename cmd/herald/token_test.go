package main

import (
	"strings"
	"testing"

	"github.com/herald-ws/herald/auth"
)

func TestCheckPattern(t *testing.T) {
	long := strings.Repeat("a", 255)
	for _, ok := range []string{"news", "sport.*", "*", "user:42", "a-b_c.d:e", long, long[:254] + "*"} {
		if err := checkPattern(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"news feed", "sp*rt", "**", "news/1", "é", long + "a", long + "*", "a*b*", "*x"} {
		if err := checkPattern(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestTokenRefusesChannelsTheServerRefuses: the old code signed a token
// for "news feed" that no subscribe could ever use.
func TestTokenRefusesChannelsTheServerRefuses(t *testing.T) {
	secret := strings.Repeat("k", 32)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"-secret", secret, "-sub", "42", "-channels", "news,news feed"}, `herald token: -channels: "news feed" is not a channel name the server accepts (1-255 bytes of [A-Za-z0-9:_.-])`},
		{[]string{"-secret", secret, "-sub", "42", "-channels", "sp*rt"}, `herald token: -channels: "sp*rt": '*' may only end a pattern`},
		{[]string{"-sub", "42"}, `herald token: -secret is required (the server's -token-secret), or -private-key`},
		{[]string{"-secret", secret, "-sub", "42", "-subs", "news,a b"}, `herald token: -subs: "a b" is not a channel name the server accepts (1-255 bytes of [A-Za-z0-9:_.-])`},
		{[]string{"-secret", secret, "-sub", "42", "-kid", "k1"}, `herald token: -kid needs -private-key`},
		{[]string{"-secret", secret}, `herald token: -sub is required (the user id)`},
		{[]string{"-secret", secret, "-sub", "42", "-ttl", "0s"}, `herald token: -ttl must be more than 0, not 0s`},
		{[]string{"-secret", secret, "-sub", "42", "-ttl", "3600"}, `herald token: -ttl: "3600" needs a unit, e.g. 3600s`},
	}
	for _, c := range cases {
		stdout, stderr, code := runHerald(t, nil, append([]string{"token"}, c.args...)...)
		if code != 2 || stdout != "" || strings.TrimSuffix(stderr, "\n") != c.want {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want 2, nothing, %q", c.args, code, stdout, stderr, c.want)
		}
	}
}

// TestTokenWarnings: a short secret and a user id that makes no valid
// personal channel are warned about on stderr; the token is still printed
// and verifies.
func TestTokenWarnings(t *testing.T) {
	for _, c := range []struct {
		secret, sub, warn string
	}{
		{"s3cret", "42", "herald token: warning: the secret is 6 bytes; use at least 32"},
		{strings.Repeat("k", 32), "ann@example.com", `herald token: warning: the personal channel "user:ann@example.com" is not a valid channel name`},
		{strings.Repeat("k", 32), "42", ""},
	} {
		stdout, stderr, code := runHerald(t, nil, "token", "-secret", c.secret, "-sub", c.sub, "-channels", "news,sport.*", "-ttl", "1m")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		if c.warn == "" && stderr != "" || !strings.HasPrefix(stderr, c.warn) || strings.Count(stderr, "\n") > 1 {
			t.Errorf("secret %q sub %q: stderr %q, want one line starting %q", c.secret, c.sub, stderr, c.warn)
		}
		id, err := auth.NewVerifier(c.secret).Verify(strings.TrimSpace(stdout))
		if err != nil {
			t.Fatalf("token does not verify: %v", err)
		}
		if id.User != c.sub || strings.Join(id.Patterns, ",") != "news,sport.*" {
			t.Errorf("identity %+v", id)
		}
	}
}
