package auth

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestValidChannel(t *testing.T) {
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"", false},
		{"a", true},
		{"news", true},
		{"News.Sports-2024_eu:live", true},
		{"user:42", true},
		{":", true},
		{"_", true},
		{".", true},
		{"-", true},
		{"..", true},
		{"AZaz09", true},
		{strings.Repeat("a", 255), true},
		{strings.Repeat("a", 256), false},
		{strings.Repeat("a", 254) + "é", false}, // 256 bytes, and not ASCII anyway
		{"a b", false},
		{" news", false},
		{"news ", false},
		{"news\t", false},
		{"news\n", false},
		{"news/sports", false},
		{"/", false},
		{"news*", false},
		{"*", false},
		{"news#1", false},
		{"a,b", false},
		{"a;b", false},
		{"a@b", false},
		{"a+b", false},
		{"a=b", false},
		{"a%20b", false},
		{`a"b`, false},
		{`a\b`, false},
		{"a\x00b", false},
		{"a\x7fb", false},
		{"café", false},
		{"новости", false},
		{"频道", false},
		{"\xff", false},
	} {
		if got := ValidChannel(c.name); got != c.ok {
			t.Errorf("ValidChannel(%q) = %v, want %v", c.name, got, c.ok)
		}
	}
	// Every byte: exactly [A-Za-z0-9:_.-] is allowed.
	for b := 0; b < 256; b++ {
		want := b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || strings.IndexByte(":_.-", byte(b)) >= 0
		if got := ValidChannel(string([]byte{byte(b)})); got != want {
			t.Errorf("ValidChannel(%q) = %v, want %v", []byte{byte(b)}, got, want)
		}
	}
}

func TestMatchAny(t *testing.T) {
	for _, c := range []struct {
		patterns []string
		channel  string
		want     bool
	}{
		{nil, "news", false},
		{[]string{}, "news", false},
		{[]string{"news"}, "news", true},
		{[]string{"news"}, "news2", false},
		{[]string{"news"}, "new", false},
		{[]string{"News"}, "news", false},
		{[]string{"sports", "news"}, "news", true},
		{[]string{"news*"}, "news", true},
		{[]string{"news*"}, "news.eu", true},
		{[]string{"news*"}, "newsroom", true},
		{[]string{"news.*"}, "news", false},
		{[]string{"news.*"}, "news.eu", true},
		{[]string{"news.*"}, "sports.eu", false},
		{[]string{"*"}, "anything", true},
		{[]string{"*"}, "user:42", true},
		{[]string{"a", "b*", "c"}, "bx", true},
		{[]string{"a", "b*", "c"}, "x", false},
		{[]string{"*news"}, "news", false}, // '*' is a wildcard only at the end
		{[]string{"*news"}, "*news", true},
		{[]string{"ne*ws"}, "news", false},
		{[]string{""}, "news", false},
	} {
		if got := MatchAny(c.patterns, c.channel); got != c.want {
			t.Errorf("MatchAny(%q, %q) = %v, want %v", c.patterns, c.channel, got, c.want)
		}
	}
}

func TestIdentityPermissions(t *testing.T) {
	var (
		anon       = Identity{Anonymous: true}
		anonPub    = Identity{Anonymous: true, Publish: true}
		u42        = Identity{User: "42"}
		u42Pub     = Identity{User: "42", Publish: true}
		u42News    = Identity{User: "42", Patterns: []string{"news"}, Publish: true}
		u42UserAll = Identity{User: "42", Patterns: []string{"user:*"}, Publish: true}
		u42All     = Identity{User: "42", Patterns: []string{"*"}, Publish: true}
		u42None    = Identity{User: "42", Patterns: []string{}, Publish: true}
		noUser     = Identity{Publish: true}
	)
	for _, c := range []struct {
		name    string
		id      Identity
		channel string
		sub     bool
		pub     bool
	}{
		{"anonymous public", anon, "news", true, false},
		{"anonymous publisher public", anonPub, "news", true, true},
		{"anonymous user channel", anonPub, "user:42", false, false},
		{"anonymous empty-owner user channel", anonPub, "user:", false, false},
		{"user public, no patterns", u42, "news", true, false},
		{"user publisher public", u42Pub, "news", true, true},
		{"owner", u42Pub, "user:42", true, true},
		{"owner without publish", u42, "user:42", true, false},
		{"another user", u42Pub, "user:43", false, false},
		{"owner prefix of another", u42Pub, "user:420", false, false},
		{"empty owner", u42Pub, "user:", false, false},
		{"owner with patterns not covering user channels", u42News, "user:42", true, true},
		{"patterns cover", u42News, "news", true, true},
		{"patterns do not cover", u42News, "sports", false, false},
		{"user:* does not open another user", u42UserAll, "user:43", false, false},
		{"user:* owner", u42UserAll, "user:42", true, true},
		{"user:* public not covered", u42UserAll, "news", false, false},
		{"* does not open another user", u42All, "user:43", false, false},
		{"* public", u42All, "news", true, true},
		{"empty patterns: no public channel", u42None, "news", false, false},
		{"empty patterns: own channel still open", u42None, "user:42", true, true},
		{"no user and not anonymous", noUser, "user:", false, false},
		{"no user public", noUser, "news", true, true},
		{"anonymous flag wins over user", Identity{User: "42", Anonymous: true, Publish: true}, "user:42", false, false},
		{"prefix is case sensitive", u42News, "User:42", false, false},
	} {
		if got := c.id.CanSubscribe(c.channel); got != c.sub {
			t.Errorf("%s: CanSubscribe(%q) = %v, want %v", c.name, c.channel, got, c.sub)
		}
		if got := c.id.CanPublish(c.channel); got != c.pub {
			t.Errorf("%s: CanPublish(%q) = %v, want %v", c.name, c.channel, got, c.pub)
		}
	}
}

const secret = "s3cret"

func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.Claims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatalf("signing: %v", err)
	}
	return tok
}

func TestMintVerifyRoundTrip(t *testing.T) {
	v := NewVerifier(secret)
	for _, c := range []struct {
		user     string
		channels []string
		publish  bool
		want     Identity
	}{
		{"42", nil, false, Identity{User: "42"}},
		{"42", nil, true, Identity{User: "42", Publish: true}},
		{"alice", []string{"news", "sports.*"}, true, Identity{User: "alice", Patterns: []string{"news", "sports.*"}, Publish: true}},
		// An empty, non-nil list limits the token to no public channel;
		// it must not come back as nil, which would allow every one.
		{"bob", []string{}, false, Identity{User: "bob", Patterns: []string{}}},
	} {
		tok, err := Mint(secret, c.user, c.channels, c.publish, time.Minute)
		if err != nil {
			t.Fatalf("Mint: %v", err)
		}
		id, err := v.Verify(tok)
		if err != nil {
			t.Fatalf("Verify(Mint(%q, %q, %v)): %v", c.user, c.channels, c.publish, err)
		}
		if !reflect.DeepEqual(id, c.want) {
			t.Errorf("Verify(Mint(%q, %q, %v)) = %#v, want %#v", c.user, c.channels, c.publish, id, c.want)
		}
	}
}

func TestVerifyRejects(t *testing.T) {
	v := NewVerifier(secret)
	now := time.Now()
	exp := jwt.NewNumericDate(now.Add(time.Minute))
	mint := func(ttl time.Duration) string {
		tok, err := Mint(secret, "42", nil, false, ttl)
		if err != nil {
			t.Fatalf("Mint: %v", err)
		}
		return tok
	}
	good := mint(time.Minute)
	parts := strings.Split(good, ".")
	for _, c := range []struct {
		name  string
		token string
		want  error
	}{
		{"empty", "", ErrNoToken},
		{"expired beyond leeway", mint(-10 * time.Second), ErrInvalidToken},
		{"expired long ago", mint(-time.Hour), ErrInvalidToken},
		{"missing exp", sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"sub": "42"}), ErrInvalidToken},
		{"wrong secret", func() string {
			tok, _ := Mint("other", "42", nil, false, time.Minute)
			return tok
		}(), ErrInvalidToken},
		{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, jwt.MapClaims{"sub": "42", "exp": exp}), ErrInvalidToken},
		{"alg none header on a real payload", noneHeader + "." + parts[1] + ".", ErrInvalidToken},
		{"HS512 with the right secret", sign(t, jwt.SigningMethodHS512, []byte(secret), jwt.MapClaims{"sub": "42", "exp": exp}), ErrInvalidToken},
		{"HS384 with the right secret", sign(t, jwt.SigningMethodHS384, []byte(secret), jwt.MapClaims{"sub": "42", "exp": exp}), ErrInvalidToken},
		{"empty sub", sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"exp": exp}), ErrNoSubject},
		{"empty sub string", func() string {
			tok, _ := Mint(secret, "", nil, false, time.Minute)
			return tok
		}(), ErrNoSubject},
		{"tampered payload", parts[0] + "." + parts[1] + "x." + parts[2], ErrInvalidToken},
		{"tampered signature", parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2])), ErrInvalidToken},
		{"missing signature", parts[0] + "." + parts[1], ErrInvalidToken},
		{"garbage", "not a token", ErrInvalidToken},
		{"garbage dots", "a.b.c", ErrInvalidToken},
		{"just dots", "..", ErrInvalidToken},
		{"channels not a list", sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"sub": "42", "exp": exp, "channels": "news"}), ErrInvalidToken},
		{"not yet valid", sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"sub": "42", "exp": exp, "nbf": jwt.NewNumericDate(now.Add(time.Minute))}), ErrInvalidToken},
	} {
		id, err := v.Verify(c.token)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: Verify = %#v, %v; want error %v", c.name, id, err, c.want)
			continue
		}
		if !reflect.DeepEqual(id, Identity{}) {
			t.Errorf("%s: rejected token still granted %#v", c.name, id)
		}
	}
}

// noneHeader is base64url({"alg":"none","typ":"JWT"}).
const noneHeader = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"

func TestVerifyLeeway(t *testing.T) {
	// Expired by less than the 5 s leeway (exp is whole seconds, so at most
	// 3 s ago): still accepted, for clocks a little apart.
	tok, err := Mint(secret, "42", nil, false, -2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := NewVerifier(secret).Verify(tok); err != nil || id.User != "42" {
		t.Fatalf("Verify of a token 2 s past exp = %#v, %v; want user 42 within the leeway", id, err)
	}
}
