package main

import (
	"flag"
	"time"

	"github.com/herald-ws/herald/push"
	"github.com/herald-ws/herald/server"
)

// tokenOptions are the client-token flags besides -token-secret.
type tokenOptions struct {
	tokenPublicKey string
	tokenJWKS      string
	refreshGrace   time.Duration
	autoPersonal   bool
}

func (o *tokenOptions) tokenFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.tokenPublicKey, "token-public-key", "", "PEM file of RSA (2048 bits or more) or EC P-256 public keys verifying RS256 and ES256 client tokens")
	fs.StringVar(&o.tokenJWKS, "token-jwks", "", "JWKS file of RS256 and ES256 token keys, picked by kid and re-read when it changes")
	fs.DurationVar(&o.refreshGrace, "refresh-grace", push.DefaultRefreshGrace, `once a connection's token expires, the time it has to send {"op":"refresh"} with a new token before it is closed with 4001`)
	fs.BoolVar(&o.autoPersonal, "auto-personal", false, "subscribe every connection with a token to its user:<sub> channel on connect")
}

func (o *tokenOptions) validateTokens(bad func(name, format string, a ...any)) {
	if o.refreshGrace <= 0 {
		bad("refresh-grace", "must be more than 0, not %v", o.refreshGrace)
	}
}

func (o *tokenOptions) tokens() server.TokenOptions {
	return server.TokenOptions{
		PublicKeyFile: o.tokenPublicKey,
		JWKSFile:      o.tokenJWKS,
		RefreshGrace:  o.refreshGrace,
		AutoPersonal:  o.autoPersonal,
	}
}

// tokenAuth reports whether clients need a token.
func (o *serveOptions) tokenAuth() bool {
	return o.tokenSecret != "" || o.tokenPublicKey != "" || o.tokenJWKS != ""
}
