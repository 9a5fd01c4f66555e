// Package auth verifies and mints Herald's client tokens: JWTs whose sub is
// the user id, exp is required, channels (optional) lists the channel
// patterns the user may subscribe to (a trailing '*' matches any suffix),
// publish (optional) allows publishing from the client and subs (optional)
// lists channels the connection is subscribed to on connect. It also owns
// the channel rules that do not depend on a token: name syntax and
// personal user:<id> channels.
//
// Tokens are signed HS256 with a shared secret, or RS256 / ES256 (P-256)
// with a private key whose public half the Verifier reads from a PEM file
// or a JWKS file (see Config). The alg header picks the kind of key and
// each alg meets only its own kind, so a public key is never an HMAC
// secret. A JWKS file is re-read when it changes, checked lazily from
// Verify (a stat at most once per Config.ReloadInterval, and at once for
// an unknown kid); there is no goroutine and no watcher.
//
// Everything here is safe for concurrent use and cheap enough to run on an
// event loop (one HMAC-SHA256, RSA or ECDSA verification per upgrade); the
// exception is a JWKS reload, which reads a small file on the caller's
// goroutine when the file changed.
package auth
