package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Keys are generated at test time, once per test binary (RSA generation
// is slow under -race).
var (
	keysOnce         sync.Once
	rsaKey, rsaOther *rsa.PrivateKey
	ecKey, ecOther   *ecdsa.PrivateKey
)

func testKeys(t testing.TB) {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		for _, k := range []**rsa.PrivateKey{&rsaKey, &rsaOther} {
			if *k, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
				panic(err)
			}
		}
		for _, k := range []**ecdsa.PrivateKey{&ecKey, &ecOther} {
			if *k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
				panic(err)
			}
		}
	})
}

func pemOf(t testing.TB, keys ...crypto.PublicKey) []byte {
	t.Helper()
	var out []byte
	for _, k := range keys {
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})...)
	}
	return out
}

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	// Write then rename, as a key rotation job should: Verify never reads
	// a half-written file.
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	return p
}

type kidKey struct {
	kid string
	key crypto.PublicKey
}

func jwksOf(t *testing.T, keys ...kidKey) []byte {
	t.Helper()
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	for _, k := range keys {
		j, err := JWK(k.key, k.kid)
		if err != nil {
			t.Fatal(err)
		}
		set.Keys = append(set.Keys, j)
	}
	b, _ := json.Marshal(set)
	return b
}

func claimsFor(user string, ttl time.Duration) Claims {
	return Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: user, ExpiresAt: jwt.NewNumericDate(time.Now().Add(ttl))}}
}

func signed(t *testing.T, key crypto.Signer, kid, user string) string {
	t.Helper()
	tok, err := MintSigned(key, kid, claimsFor(user, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func mustNew(t *testing.T, cfg Config) *Verifier {
	t.Helper()
	v, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	return v
}

func wantUser(t *testing.T, v *Verifier, tok, user string) {
	t.Helper()
	id, err := v.Verify(tok)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if id.User != user {
		t.Fatalf("Verify: user %q, want %q", id.User, user)
	}
}

func wantRefused(t *testing.T, v *Verifier, tok, why string) {
	t.Helper()
	if _, err := v.Verify(tok); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("%s: Verify = %v, want ErrInvalidToken", why, err)
	}
}

// TestPublicKeyFile: RS256 and ES256 tokens verify with the PEM file's
// keys, and nothing else does: another key's signature, an alg whose key
// type the file lacks, HS256 signed with the public key's bytes (alg
// confusion), alg none.
func TestPublicKeyFile(t *testing.T) {
	testKeys(t)
	dir := t.TempDir()
	both := writeFile(t, dir, "both.pem", pemOf(t, &rsaKey.PublicKey, &ecKey.PublicKey))
	v := mustNew(t, Config{PublicKeyFile: both})
	wantUser(t, v, signed(t, rsaKey, "", "r"), "r")
	wantUser(t, v, signed(t, ecKey, "", "e"), "e")
	// A kid in the header does not matter to a PEM key.
	wantUser(t, v, signed(t, ecKey, "whatever", "e"), "e")
	wantRefused(t, v, signed(t, rsaOther, "", "x"), "another RSA key")
	wantRefused(t, v, signed(t, ecOther, "", "x"), "another EC key")

	pemBytes, _ := os.ReadFile(both)
	confused, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, claimsFor("x", time.Minute)).SignedString(pemBytes)
	wantRefused(t, v, confused, "HS256 keyed with the public key (alg confusion)")
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claimsFor("x", time.Minute)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	wantRefused(t, v, none, "alg none")
	hs, _ := Mint("s3cret-s3cret-s3cret-s3cret-s3cr", "x", nil, false, time.Minute)
	wantRefused(t, v, hs, "HS256 without a secret configured")
	expired, _ := MintSigned(rsaKey, "", claimsFor("x", -time.Hour))
	wantRefused(t, v, expired, "expired RS256")

	rsaOnly := mustNew(t, Config{PublicKeyFile: writeFile(t, dir, "rsa.pem", pemOf(t, &rsaKey.PublicKey))})
	wantRefused(t, rsaOnly, signed(t, ecKey, "", "x"), "ES256 with only an RSA key")

	// With a secret as well, each alg still meets only its own kind of key.
	mixed := mustNew(t, Config{Secret: "s3cret-s3cret-s3cret-s3cret-s3cr", PublicKeyFile: both})
	wantUser(t, mixed, hs, "x")
	wantUser(t, mixed, signed(t, rsaKey, "", "r"), "r")
	wantRefused(t, mixed, confused, "alg confusion next to a real secret")
}

// TestPublicKeyFileRefused: New refuses key files Herald cannot use.
func TestPublicKeyFileRefused(t *testing.T) {
	testKeys(t)
	dir := t.TempDir()
	short, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	privDER, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	for name, b := range map[string][]byte{
		"empty":       nil,
		"not PEM":     []byte("hello"),
		"short RSA":   pemOf(t, &short.PublicKey),
		"P-384":       pemOf(t, &p384.PublicKey),
		"private key": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}),
	} {
		if _, err := New(Config{PublicKeyFile: writeFile(t, dir, "k.pem", b)}); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
	if _, err := New(Config{PublicKeyFile: filepath.Join(dir, "missing.pem")}); err == nil {
		t.Error("missing file: New accepted it")
	}
	if _, err := New(Config{}); !errors.Is(err, ErrNoKeys) {
		t.Errorf("no keys: New = %v, want ErrNoKeys", err)
	}
}

// TestJWKSRotation: tokens verify with the JWKS key their kid names; a
// rotated file is picked up the moment a token names a kid only the new
// file holds, after which the retired key's tokens are refused; a file
// that stops parsing leaves the last good keys in force.
func TestJWKSRotation(t *testing.T) {
	testKeys(t)
	dir := t.TempDir()
	path := writeFile(t, dir, "jwks.json", jwksOf(t, kidKey{"r1", &rsaKey.PublicKey}, kidKey{"e1", &ecKey.PublicKey}))
	var mu sync.Mutex
	var reloads []error
	v := mustNew(t, Config{JWKSFile: path, ReloadInterval: time.Hour, OnReload: func(_ int, err error) {
		mu.Lock()
		reloads = append(reloads, err)
		mu.Unlock()
	}})
	wantUser(t, v, signed(t, rsaKey, "r1", "a"), "a")
	wantUser(t, v, signed(t, ecKey, "e1", "b"), "b")
	wantUser(t, v, signed(t, ecKey, "", "c"), "c") // no kid: every key of the type is tried
	wantRefused(t, v, signed(t, ecKey, "r1", "x"), "ES256 naming an RSA key's kid")
	wantRefused(t, v, signed(t, rsaOther, "r1", "x"), "right kid, wrong key")
	wantRefused(t, v, signed(t, rsaOther, "r2", "x"), "unknown kid")

	// Rotate: r1 is retired, r2 (rsaOther) comes in.
	writeFile(t, dir, "jwks.json", jwksOf(t, kidKey{"r2", &rsaOther.PublicKey}, kidKey{"e1", &ecKey.PublicKey}))
	wantUser(t, v, signed(t, rsaOther, "r2", "d"), "d")
	wantRefused(t, v, signed(t, rsaKey, "r1", "x"), "retired kid after rotation")
	wantRefused(t, v, signed(t, rsaKey, "", "x"), "retired key without kid after rotation")

	// A broken file keeps the last good set.
	writeFile(t, dir, "jwks.json", []byte(`{"keys":[`))
	wantRefused(t, v, signed(t, rsaKey, "r3", "x"), "unknown kid with a broken file")
	wantUser(t, v, signed(t, rsaOther, "r2", "e"), "e")
	mu.Lock()
	defer mu.Unlock()
	if len(reloads) != 2 || reloads[0] != nil || reloads[1] == nil {
		t.Fatalf("OnReload heard %v, want one success then one error", reloads)
	}
}

// TestJWKSReloadInterval: without any new kid, a changed file is read
// again once ReloadInterval has passed, so a key removed from the set
// stops verifying.
func TestJWKSReloadInterval(t *testing.T) {
	testKeys(t)
	dir := t.TempDir()
	path := writeFile(t, dir, "jwks.json", jwksOf(t, kidKey{"e1", &ecKey.PublicKey}, kidKey{"e2", &ecOther.PublicKey}))
	v := mustNew(t, Config{JWKSFile: path, ReloadInterval: 20 * time.Millisecond})
	tok := signed(t, ecOther, "e2", "a")
	wantUser(t, v, tok, "a")
	writeFile(t, dir, "jwks.json", jwksOf(t, kidKey{"e1", &ecKey.PublicKey}))
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := v.Verify(tok); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a key removed from the JWKS still verifies after 5 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	wantUser(t, v, signed(t, ecKey, "e1", "b"), "b")
}

// TestParseJWKS (parseJWKS): keys for other uses and other algorithms are skipped,
// broken keys are errors, and a set with nothing usable is refused.
func TestParseJWKS(t *testing.T) {
	testKeys(t)
	good, _ := JWK(&ecKey.PublicKey, "e")
	for name, c := range map[string]struct {
		doc  string
		keys int
	}{
		"enc key skipped":   {`{"keys":[{"kty":"EC","use":"enc","crv":"P-256","x":"AA","y":"AA"},` + js(good) + `]}`, 1},
		"oct key skipped":   {`{"keys":[{"kty":"oct","k":"c2VjcmV0"},` + js(good) + `]}`, 1},
		"RS512 skipped":     {`{"keys":[{"kty":"RSA","alg":"RS512","n":"AA","e":"AQAB"},` + js(good) + `]}`, 1},
		"only skipped keys": {`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`, -1},
		"bad EC point":      {`{"keys":[{"kty":"EC","crv":"P-256","x":"` + zero32 + `","y":"` + zero32 + `"}]}`, -1},
		"P-384":             {`{"keys":[{"kty":"EC","crv":"P-384","x":"AA","y":"AA"}]}`, -1},
		"short RSA":         {`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}`, -1},
		"even exponent":     {`{"keys":[{"kty":"RSA","n":"AQAB","e":"Ag"}]}`, -1},
		"not JSON":          {`keys`, -1},
	} {
		keys, err := parseJWKS([]byte(c.doc))
		switch {
		case c.keys < 0 && err == nil:
			t.Errorf("%s: accepted", name)
		case c.keys >= 0 && (err != nil || len(keys) != c.keys):
			t.Errorf("%s: %d keys, %v; want %d", name, len(keys), err, c.keys)
		}
	}
}

const zero32 = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

func js(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestSubsAndExpires: the subs claim and exp reach the Grant.
func TestSubsAndExpires(t *testing.T) {
	testKeys(t)
	v := mustNew(t, Config{PublicKeyFile: writeFile(t, t.TempDir(), "k.pem", pemOf(t, &ecKey.PublicKey))})
	c := claimsFor("42", time.Minute)
	c.Subs = []string{"news", "user:42"}
	tok, err := MintSigned(ecKey, "", c)
	if err != nil {
		t.Fatal(err)
	}
	id, err := v.VerifyGrant(tok)
	if err != nil {
		t.Fatal(err)
	}
	if id.User != "42" || len(id.Subs) != 2 || id.Subs[0] != "news" || id.Subs[1] != "user:42" {
		t.Errorf("Subs = %q", id.Subs)
	}
	if !id.Expires.Equal(c.ExpiresAt.Time) {
		t.Errorf("Expires = %v, want %v", id.Expires, c.ExpiresAt.Time)
	}
}
