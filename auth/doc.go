// Package auth verifies and mints Herald's client tokens: HS256 JWTs whose
// sub is the user id, exp is required, channels (optional) lists the
// channel patterns the user may subscribe to (a trailing '*' matches any
// suffix) and publish (optional) allows publishing from the client. It also
// owns the channel rules that do not depend on a token: name syntax and
// personal user:<id> channels.
//
// Everything here is pure computation, safe for concurrent use, and cheap
// enough to run on an event loop (one HMAC-SHA256 per upgrade).
package auth
