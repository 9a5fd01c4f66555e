package auth

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkVerify is what one upgrade's token check costs the event loop
// for each algorithm.
func BenchmarkVerify(b *testing.B) {
	testKeys(b)
	dir := b.TempDir()
	pemFile := filepath.Join(dir, "k.pem")
	if err := os.WriteFile(pemFile, pemOf(b, &rsaKey.PublicKey, &ecKey.PublicKey), 0o600); err != nil {
		b.Fatal(err)
	}
	v, err := New(Config{Secret: "s3cret-s3cret-s3cret-s3cret-s3cr", PublicKeyFile: pemFile})
	if err != nil {
		b.Fatal(err)
	}
	hs, _ := Mint("s3cret-s3cret-s3cret-s3cret-s3cr", "42", []string{"news"}, false, time.Hour)
	rs, _ := MintSigned(rsaKey, "", claimsFor("42", time.Hour))
	es, _ := MintSigned(ecKey, "", claimsFor("42", time.Hour))
	for _, c := range []struct{ name, tok string }{{"HS256", hs}, {"RS256", rs}, {"ES256", es}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(c.tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
