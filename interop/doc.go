// Package interop checks that WebSocket clients nobody on the project wrote
// (gorilla/websocket, coder/websocket and Node's ws) interoperate with a real
// Herald server: every message they send to /echo must come back with the
// same bytes and opcode, with and without permessage-deflate, and pings,
// fragmentation and the closing handshake must work as RFC 6455 says.
// Node's ws also checks /ws's Sec-WebSocket-Protocol negotiation
// (herald.json.v1 answered, unknown offers refused with 400).
// Server-Sent Events on /sse are read by npm's eventsource package (which
// must reconnect with Last-Event-ID through a cut relay and miss nothing)
// and by curl -N.
//
// The package holds only tests; it never touches Herald's internals beyond
// starting a server with internal/testutil. The Node test needs `node` and
// `npm ci --prefix interop/node`; it and the curl test skip without them
// unless HERALD_REQUIRE_NODE=1.
package interop
