package loadtest

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"net/url"
	"os"
)

// TLSConfig is how a run verifies the servers it reaches over wss:// and
// https://. The zero value verifies against the system's roots.
type TLSConfig struct {
	// CAFile is a PEM file of CA certificates to trust instead of the
	// system's roots (like curl --cacert).
	CAFile string
	// Insecure skips certificate verification: any server certificate is
	// accepted. For test set-ups only; it cannot be combined with CAFile.
	Insecure bool
}

// RegisterTLSFlags adds -ca-file and -insecure to fs, writing into c.TLS.
func (c *Config) RegisterTLSFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.TLS.CAFile, "ca-file", "", "wss://, https://: trust the CA certificates in this PEM file instead of the system roots")
	fs.BoolVar(&c.TLS.Insecure, "insecure", false, "wss://, https://: do not verify server certificates (test set-ups only)")
}

// tlsDefaults builds the TLS client configurations of a run from c.TLS:
// one per wss:// host (its ServerName set, shared by every connection to
// it) and one for the publisher.
func (c *Config) tlsDefaults() error {
	t := c.TLS
	if t.Insecure && t.CAFile != "" {
		return fmt.Errorf("loadtest: -ca-file and -insecure exclude each other")
	}
	base := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case t.Insecure:
		base.InsecureSkipVerify = true
	case t.CAFile != "":
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return fmt.Errorf("loadtest: CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("loadtest: CA file %s holds no PEM certificate", t.CAFile)
		}
		base.RootCAs = pool
	}
	c.tlsBase = base
	c.tlsByHost = map[string]*tls.Config{}
	for _, u := range c.urls {
		if u.Scheme != "wss" || c.tlsByHost[u.Host] != nil {
			continue
		}
		hc := base.Clone()
		hc.ServerName = u.Hostname()
		c.tlsByHost[u.Host] = hc
	}
	return nil
}

// tlsFor is the TLS configuration to dial u with; nil for ws://.
func (c *Config) tlsFor(u *url.URL) *tls.Config {
	if u.Scheme != "wss" {
		return nil
	}
	return c.tlsByHost[u.Host]
}
