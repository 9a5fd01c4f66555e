package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herald-ws/herald/auth"
)

// TestTokenPrivateKey: herald token -private-key signs ES256 (PKCS #8 EC
// key) and RS256 (PKCS #1 RSA key) tokens that a server with the public
// half in a JWKS verifies by -kid, with the -subs claim.
func TestTokenPrivateKey(t *testing.T) {
	dir := t.TempDir()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rs, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ec)
	files := map[string][]byte{
		"ec.pem":  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER}),
		"rsa.pem": pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rs)}),
	}
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	for kid, pub := range map[string]any{"e1": &ec.PublicKey, "r1": &rs.PublicKey} {
		j, err := auth.JWK(pub, kid)
		if err != nil {
			t.Fatal(err)
		}
		set.Keys = append(set.Keys, j)
	}
	files["jwks.json"], _ = json.Marshal(set)
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	v, err := auth.New(auth.Config{JWKSFile: filepath.Join(dir, "jwks.json")})
	if err != nil {
		t.Fatal(err)
	}
	for file, kid := range map[string]string{"ec.pem": "e1", "rsa.pem": "r1"} {
		stdout, stderr, code := runHerald(t, nil, "token", "-private-key", filepath.Join(dir, file), "-kid", kid, "-sub", "42", "-subs", "news, user:42", "-ttl", "1m")
		if code != 0 || stderr != "" {
			t.Fatalf("%s: exit %d, stderr %q", file, code, stderr)
		}
		id, err := v.VerifyGrant(strings.TrimSpace(stdout))
		if err != nil {
			t.Fatalf("%s: token does not verify: %v", file, err)
		}
		if id.User != "42" || strings.Join(id.Subs, ",") != "news,user:42" {
			t.Errorf("%s: identity %+v", file, id)
		}
	}
	_, stderr, code := runHerald(t, nil, "token", "-private-key", filepath.Join(dir, "jwks.json"), "-sub", "42")
	if code != 2 || !strings.Contains(stderr, "-private-key: auth: unusable key: no PEM private key found") {
		t.Errorf("a file without a key: exit %d, stderr %q", code, stderr)
	}
	_, stderr, code = runHerald(t, nil, "token", "-private-key", filepath.Join(dir, "ec.pem"), "-secret", "x", "-sub", "42")
	if code != 2 || !strings.Contains(stderr, "not both") {
		t.Errorf("-secret with -private-key: exit %d, stderr %q", code, stderr)
	}
}
