// Package tlsproxy runs Herald behind real TLS-terminating proxies, nginx
// and HAProxy, for tests: Herald never terminates TLS itself, so wss:// and https:// are
// only ever real through a proxy. It makes a CA and a server certificate at
// test time (crypto/x509, ECDSA P-256) and starts the proxy as a
// foreground process with its own config (for nginx also prefix, pid file
// and logs) in a temporary directory, on a loopback port of its own.
//
// The configurations are nginx.conf and haproxy.cfg in this directory, the
// ones docs/deployment.md shows (a test checks that they are the same
// text), changed only in paths, ports, addresses and sizes by Render and
// RenderHAProxy (and, for the test of what they are for, the proxy
// timeouts). The tests here drive real clients through them (gorilla/websocket, Node ws, headless
// Chromium, `herald loadtest`): subscribing, receiving API publications,
// recovering with since across a Herald restart behind the same proxy
// port, and close codes passing through.
//
// nginx-noupgrade.conf is of another kind: plain HTTP that does not pass
// WebSocket upgrades, the middlebox the fallback transports are for
// (StartNginxNoUpgrade; browser/fallback_test.go runs it).
//
// It never touches Herald's internals and never listens itself. Without
// nginx (or HAProxy) the tests skip (install them with
// scripts/install-nginx.sh haproxy), unless HERALD_REQUIRE_NGINX=1 (or
// HERALD_REQUIRE_HAPROXY=1).
package tlsproxy
