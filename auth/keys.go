package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Config says which keys verify client tokens. At least one of them must
// be set. A token's alg header picks the kind of key: HS256 only ever
// meets Secret, RS256 only RSA keys and ES256 only P-256 keys, so a public
// key can never be used as an HMAC secret (the classic alg confusion).
type Config struct {
	Secret string // HS256 shared secret; "" accepts no HS256 token
	// PublicKeyFile is a PEM file holding one or more RSA (2048 bits or
	// more) or EC P-256 public keys ("PUBLIC KEY", "RSA PUBLIC KEY" or
	// "CERTIFICATE" blocks). It is read once, by New.
	PublicKeyFile string
	// JWKSFile is a JSON Web Key Set (RFC 7517) of RSA and EC P-256 keys.
	// It is re-read when it changes: Verify looks at the file's size,
	// modification time and inode at most once per ReloadInterval, and at
	// once when a token names a kid the set does not hold (a key rotated
	// in). A file that no longer parses leaves the previous keys in force.
	JWKSFile string
	// ReloadInterval bounds how often Verify stats JWKSFile; default 1 s.
	ReloadInterval time.Duration
	// OnReload, when set, hears each reload of JWKSFile: the number of
	// keys loaded, or the error that kept the previous set. It runs on the
	// goroutine that called Verify and must not block.
	OnReload func(keys int, err error)
}

// Key errors.
var (
	ErrNoKeys      = errors.New("auth: no token key configured")
	ErrBadKey      = errors.New("auth: unusable key")
	ErrUnknownKey  = errors.New("auth: no key for the token")
	ErrRSAKeyShort = errors.New("auth: RSA key shorter than 2048 bits")
)

// pubKey is one verification key and the kid it goes by ("" for a PEM
// key, which has none).
type pubKey struct {
	kid string
	key any // *rsa.PublicKey or *ecdsa.PublicKey (P-256)
}

// keySet is one load of the JWKS file.
type keySet struct {
	keys []pubKey
	sig  fileSig
}

// fileSig tells one version of a file from another without reading it.
type fileSig struct {
	size  int64
	mtime int64
	ino   uint64
}

func sigOf(fi os.FileInfo) fileSig {
	s := fileSig{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.ino = st.Ino
	}
	return s
}

// New returns a Verifier for cfg, reading its key files.
func New(cfg Config) (*Verifier, error) {
	if cfg.Secret == "" && cfg.PublicKeyFile == "" && cfg.JWKSFile == "" {
		return nil, ErrNoKeys
	}
	if cfg.ReloadInterval <= 0 {
		cfg.ReloadInterval = time.Second
	}
	v := &Verifier{cfg: cfg}
	var methods []string
	if cfg.Secret != "" {
		v.secret = []byte(cfg.Secret)
		methods = append(methods, "HS256")
	}
	if cfg.PublicKeyFile != "" {
		b, err := os.ReadFile(cfg.PublicKeyFile)
		if err != nil {
			return nil, fmt.Errorf("auth: read public key: %w", err)
		}
		keys, err := ParsePublicKeys(b)
		if err != nil {
			return nil, fmt.Errorf("auth: %s: %w", cfg.PublicKeyFile, err)
		}
		v.static = keys
	}
	if cfg.JWKSFile != "" {
		set, err := loadJWKS(cfg.JWKSFile)
		if err != nil {
			return nil, err
		}
		v.jwks.Store(set)
		v.checked.Store(time.Now().UnixNano())
	}
	if cfg.PublicKeyFile != "" || cfg.JWKSFile != "" {
		methods = append(methods, "RS256", "ES256")
	}
	v.parser = newParser(methods)
	return v, nil
}

func newParser(methods []string) *jwt.Parser {
	return jwt.NewParser(jwt.WithValidMethods(methods), jwt.WithExpirationRequired(), jwt.WithLeeway(5*time.Second))
}

// ParsePublicKeys reads every public key of a PEM file: PKIX "PUBLIC
// KEY", PKCS #1 "RSA PUBLIC KEY" and "CERTIFICATE" blocks holding an RSA
// key of at least 2048 bits or an EC P-256 key. Other blocks are an error,
// and so is a file with no key.
func ParsePublicKeys(b []byte) ([]any, error) {
	var keys []any
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		var k any
		var err error
		switch blk.Type {
		case "PUBLIC KEY":
			k, err = x509.ParsePKIXPublicKey(blk.Bytes)
		case "RSA PUBLIC KEY":
			k, err = x509.ParsePKCS1PublicKey(blk.Bytes)
		case "CERTIFICATE":
			var c *x509.Certificate
			if c, err = x509.ParseCertificate(blk.Bytes); err == nil {
				k = c.PublicKey
			}
		default:
			return nil, fmt.Errorf("%w: PEM block %q is not a public key", ErrBadKey, blk.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
		}
		if err := checkKey(k); err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: no PEM public key found", ErrBadKey)
	}
	return keys, nil
}

// checkKey accepts the keys RS256 and ES256 can use.
func checkKey(k any) error {
	switch k := k.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return ErrRSAKeyShort
		}
		return nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return fmt.Errorf("%w: EC key on %s, ES256 needs P-256", ErrBadKey, k.Curve.Params().Name)
		}
		return nil
	}
	return fmt.Errorf("%w: %T is neither RSA nor EC", ErrBadKey, k)
}

// jwk is the part of a JSON Web Key Herald reads.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// parseJWKS reads a JSON Web Key Set. Keys meant for something else (use
// other than "sig", alg other than RS256 or ES256) and key types Herald
// does not verify with (oct, OKP) are skipped; a key Herald should use but
// cannot parse is an error, and so is a set left with no key.
func parseJWKS(b []byte) ([]pubKey, error) {
	var doc struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%w: JWKS: %v", ErrBadKey, err)
	}
	var keys []pubKey
	for i, j := range doc.Keys {
		if j.Use != "" && j.Use != "sig" {
			continue
		}
		var k any
		var err error
		switch j.Kty {
		case "RSA":
			if j.Alg != "" && j.Alg != "RS256" {
				continue
			}
			k, err = rsaFromJWK(j)
		case "EC":
			if j.Alg != "" && j.Alg != "ES256" {
				continue
			}
			k, err = ecFromJWK(j)
		default:
			continue
		}
		if err == nil {
			err = checkKey(k)
		}
		if err != nil {
			return nil, fmt.Errorf("JWKS key %d (kid %q): %w", i, j.Kid, err)
		}
		keys = append(keys, pubKey{kid: j.Kid, key: k})
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: JWKS holds no RS256 or ES256 key", ErrBadKey)
	}
	return keys, nil
}

func b64(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

func rsaFromJWK(j jwk) (*rsa.PublicKey, error) {
	n, err := b64(j.N)
	if err != nil || len(n) == 0 {
		return nil, fmt.Errorf("%w: bad RSA modulus", ErrBadKey)
	}
	e, err := b64(j.E)
	if err != nil || len(e) == 0 || len(e) > 4 {
		return nil, fmt.Errorf("%w: bad RSA exponent", ErrBadKey)
	}
	exp := int(new(big.Int).SetBytes(e).Int64())
	if exp < 3 || exp%2 == 0 {
		return nil, fmt.Errorf("%w: bad RSA exponent %d", ErrBadKey, exp)
	}
	return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: exp}, nil
}

func ecFromJWK(j jwk) (*ecdsa.PublicKey, error) {
	if j.Crv != "P-256" {
		return nil, fmt.Errorf("%w: EC curve %q, ES256 needs P-256", ErrBadKey, j.Crv)
	}
	x, errX := b64(j.X)
	y, errY := b64(j.Y)
	if errX != nil || errY != nil || len(x) != 32 || len(y) != 32 {
		return nil, fmt.Errorf("%w: bad EC coordinates", ErrBadKey)
	}
	pt := append(append([]byte{4}, x...), y...)
	k, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), pt)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	return k, nil
}

func loadJWKS(path string) (*keySet, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("auth: read JWKS: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("auth: read JWKS: %w", err)
	}
	b := make([]byte, fi.Size())
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, fmt.Errorf("auth: read JWKS: %w", err)
	}
	keys, err := parseJWKS(b)
	if err != nil {
		return nil, fmt.Errorf("auth: %s: %w", path, err)
	}
	return &keySet{keys: keys, sig: sigOf(fi)}, nil
}

// maybeReload re-reads the JWKS file when it changed. Unless force, it
// stats the file at most once per ReloadInterval (whichever caller wins
// the compare-and-swap does it; the others go on with the current keys).
func (v *Verifier) maybeReload(force bool) {
	if v.cfg.JWKSFile == "" {
		return
	}
	now := time.Now().UnixNano()
	last := v.checked.Load()
	if !force && (now-last < int64(v.cfg.ReloadInterval) || !v.checked.CompareAndSwap(last, now)) {
		return
	}
	if force {
		v.checked.Store(now)
	}
	fi, err := os.Stat(v.cfg.JWKSFile)
	if err != nil {
		v.reported(0, fmt.Errorf("auth: stat JWKS: %w", err))
		return
	}
	if cur := v.jwks.Load(); cur != nil && cur.sig == sigOf(fi) {
		return
	}
	v.reloadMu.Lock()
	defer v.reloadMu.Unlock()
	if cur := v.jwks.Load(); cur != nil && cur.sig == sigOf(fi) {
		return // another caller reloaded it meanwhile
	}
	set, err := loadJWKS(v.cfg.JWKSFile)
	if err != nil {
		v.reported(0, err)
		return
	}
	v.jwks.Store(set)
	v.reported(len(set.keys), nil)
}

func (v *Verifier) reported(n int, err error) {
	if v.cfg.OnReload != nil {
		v.cfg.OnReload(n, err)
	}
}

// keysFor returns the keys a token with alg and kid may be verified with:
// the PEM keys of alg's type, and the JWKS keys of that type (only the
// one named kid, when the token names one).
func (v *Verifier) keysFor(alg, kid string) []jwt.VerificationKey {
	fits := func(k any) bool {
		switch k.(type) {
		case *rsa.PublicKey:
			return alg == "RS256"
		case *ecdsa.PublicKey:
			return alg == "ES256"
		}
		return false
	}
	var out []jwt.VerificationKey
	for _, k := range v.static {
		if fits(k) {
			out = append(out, k)
		}
	}
	if set := v.jwks.Load(); set != nil {
		for _, k := range set.keys {
			if fits(k.key) && (kid == "" || k.kid == kid) {
				out = append(out, k.key)
			}
		}
	}
	return out
}

// hasKid reports whether the JWKS holds a key named kid.
func (v *Verifier) hasKid(kid string) bool {
	if set := v.jwks.Load(); set != nil {
		for _, k := range set.keys {
			if k.kid == kid {
				return true
			}
		}
	}
	return false
}

// keyFunc picks the key for a parsed token header.
func (v *Verifier) keyFunc(t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	if alg == "HS256" {
		if v.secret == nil {
			return nil, ErrUnknownKey
		}
		return v.secret, nil
	}
	kid, _ := t.Header["kid"].(string)
	v.maybeReload(kid != "" && !v.hasKid(kid))
	keys := v.keysFor(alg, kid)
	if len(keys) == 0 {
		return nil, ErrUnknownKey
	}
	return jwt.VerificationKeySet{Keys: keys}, nil
}

// MintSigned signs c with a private key: RS256 for an RSA key, ES256 for
// an EC P-256 key; kid, when not empty, goes in the header so that a
// Verifier with a JWKS picks the key by it.
func MintSigned(key crypto.Signer, kid string, c Claims) (string, error) {
	var m jwt.SigningMethod
	switch k := key.(type) {
	case *rsa.PrivateKey:
		m = jwt.SigningMethodRS256
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return "", fmt.Errorf("%w: ES256 needs a P-256 key", ErrBadKey)
		}
		m = jwt.SigningMethodES256
	default:
		return "", fmt.Errorf("%w: %T is neither RSA nor EC", ErrBadKey, key)
	}
	t := jwt.NewWithClaims(m, c)
	if kid != "" {
		t.Header["kid"] = kid
	}
	return t.SignedString(key)
}

// JWK returns the public half of key as a JSON Web Key with kid (for
// tests and tools that write a JWKS).
func JWK(key crypto.PublicKey, kid string) (map[string]string, error) {
	enc := base64.RawURLEncoding.EncodeToString
	switch k := key.(type) {
	case *rsa.PublicKey:
		return map[string]string{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
			"n": enc(k.N.Bytes()), "e": enc(big.NewInt(int64(k.E)).Bytes())}, nil
	case *ecdsa.PublicKey:
		b, err := k.Bytes()
		if err != nil || len(b) != 65 {
			return nil, fmt.Errorf("%w: EC key is not P-256", ErrBadKey)
		}
		return map[string]string{"kty": "EC", "kid": kid, "use": "sig", "alg": "ES256", "crv": "P-256",
			"x": enc(b[1:33]), "y": enc(b[33:])}, nil
	}
	return nil, fmt.Errorf("%w: %T is neither RSA nor EC", ErrBadKey, key)
}

// ParsePrivateKey reads the first private key of a PEM file ("PRIVATE
// KEY", "RSA PRIVATE KEY" or "EC PRIVATE KEY"), an RSA key of at least
// 2048 bits or an EC P-256 key, for MintSigned.
func ParsePrivateKey(b []byte) (crypto.Signer, error) {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("%w: no PEM private key found", ErrBadKey)
		}
		var k any
		var err error
		switch blk.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(blk.Bytes)
		default:
			continue // EC PARAMETERS and the like
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%w: %T cannot sign", ErrBadKey, k)
		}
		if err := checkKey(s.Public()); err != nil {
			return nil, err
		}
		return s, nil
	}
}
