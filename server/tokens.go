package server

import (
	"log/slog"
	"time"

	"github.com/herald-ws/herald/auth"
)

// TokenOptions are the client-token settings besides Options.TokenSecret.
type TokenOptions struct {
	// PublicKeyFile (PEM) and JWKSFile verify RS256 and ES256 tokens
	// (auth.Config); either, or a TokenSecret, turns token auth on.
	PublicKeyFile string
	JWKSFile      string
	// RefreshGrace is how long a connection whose token expired has to
	// refresh it before it is closed with 4001; 0: push's default.
	RefreshGrace time.Duration
	// AutoPersonal subscribes every authenticated connection to
	// user:<id> on connect.
	AutoPersonal bool
}

// verifier builds the token verifier o asks for; nil means anonymous mode.
func (o *Options) verifier(log *slog.Logger) (*auth.Verifier, error) {
	t := o.Tokens
	if o.TokenSecret == "" && t.PublicKeyFile == "" && t.JWKSFile == "" {
		return nil, nil
	}
	return auth.New(auth.Config{
		Secret:        o.TokenSecret,
		PublicKeyFile: t.PublicKeyFile,
		JWKSFile:      t.JWKSFile,
		OnReload: func(keys int, err error) {
			if err != nil {
				log.Warn("token JWKS not reloaded; the previous keys stay in force", "file", t.JWKSFile, "err", err)
				return
			}
			log.Info("token JWKS reloaded", "file", t.JWKSFile, "keys", keys)
		},
	})
}
