package tlsproxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// CA is a throw-away certificate authority made at test time, with one
// server certificate it issued. Nothing of it is ever written outside the
// directory given to WriteFiles.
type CA struct {
	// CertPEM is the CA certificate, what clients are told to trust.
	CertPEM []byte
	// ServerCertPEM and ServerKeyPEM are the server's certificate (valid
	// for 127.0.0.1, ::1 and localhost) and its private key.
	ServerCertPEM []byte
	ServerKeyPEM  []byte

	pool       *x509.CertPool
	serverSPKI []byte // the server certificate's SubjectPublicKeyInfo, DER
}

// NewCA makes an ECDSA P-256 CA and a server certificate signed by it for
// 127.0.0.1, ::1 and localhost, both valid from an hour ago for a day.
func NewCA() (*CA, error) {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("tlsproxy: CA key: %w", err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "Herald test CA", Organization: []string{"Herald tests"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("tlsproxy: CA certificate: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("tlsproxy: CA certificate: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("tlsproxy: server key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("tlsproxy: server certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("tlsproxy: server key: %w", err)
	}
	spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("tlsproxy: server key: %w", err)
	}
	ca := &CA{
		CertPEM:       pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		ServerCertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		ServerKeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		pool:          x509.NewCertPool(),
		serverSPKI:    spki,
	}
	ca.pool.AddCert(caCert)
	return ca, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}

// Pool is a certificate pool holding only the CA.
func (ca *CA) Pool() *x509.CertPool { return ca.pool }

// ClientConfig is a TLS client configuration that trusts only the CA.
func (ca *CA) ClientConfig() *tls.Config {
	return &tls.Config{RootCAs: ca.pool, MinVersion: tls.VersionTLS12}
}

// SPKIHash is the base64 SHA-256 of the server certificate's public key,
// the form Chromium's --ignore-certificate-errors-spki-list takes.
func (ca *CA) SPKIHash() string {
	h := sha256.Sum256(ca.serverSPKI)
	return base64.StdEncoding.EncodeToString(h[:])
}

// Files are the paths WriteFiles wrote.
type Files struct {
	CACert     string // ca.pem
	ServerCert string // server.pem
	ServerKey  string // server.key, mode 0600
}

// WriteFiles writes the CA certificate and the server's certificate and
// key into dir.
func (ca *CA) WriteFiles(dir string) (Files, error) {
	f := Files{
		CACert:     filepath.Join(dir, "ca.pem"),
		ServerCert: filepath.Join(dir, "server.pem"),
		ServerKey:  filepath.Join(dir, "server.key"),
	}
	for _, w := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{{f.CACert, ca.CertPEM, 0o644}, {f.ServerCert, ca.ServerCertPEM, 0o644}, {f.ServerKey, ca.ServerKeyPEM, 0o600}} {
		if err := os.WriteFile(w.path, w.data, w.mode); err != nil {
			return Files{}, fmt.Errorf("tlsproxy: write %s: %w", w.path, err)
		}
	}
	return f, nil
}
