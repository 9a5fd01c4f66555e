// Package tlsproxy runs Herald behind a real TLS-terminating proxy, nginx,
// for tests: Herald never terminates TLS itself, so wss:// and https:// are
// only ever real through a proxy. It makes a CA and a server certificate at
// test time (crypto/x509, ECDSA P-256) and starts nginx as a foreground
// process with its own prefix, config, pid file and logs in a temporary
// directory, on a loopback port of its own.
//
// The configuration nginx runs is nginx.conf in this directory, the one
// docs/deployment.md shows (a test checks that the two are the same text),
// changed only in paths, ports, addresses and sizes by Render (and, for
// the test of what they are for, the /ws proxy timeouts). The tests
// here drive real clients through it (gorilla/websocket, Node ws, headless
// Chromium, `herald loadtest`): subscribing, receiving API publications,
// recovering with since across a Herald restart behind the same proxy
// port, and close codes passing through.
//
// It never touches Herald's internals and never listens itself. Without
// nginx the tests skip (install it with scripts/install-nginx.sh), unless
// HERALD_REQUIRE_NGINX=1.
package tlsproxy
