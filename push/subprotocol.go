package push

import "github.com/herald-ws/herald/codec"

// Subprotocol is the Sec-WebSocket-Protocol name of Herald's JSON
// protocol (docs/protocol.md). A client that offers subprotocols must
// offer this one; a client that offers none speaks it all the same.
const Subprotocol = "herald.json.v1"

// negotiate answers a subprotocol offer before the upgrade: a client that
// offers Subprotocol gets it echoed in the 101 (browsers fail a handshake
// whose answer names none of their offer), one that offers only others is
// refused with 400 and a body naming the protocol, so that it fails with
// a reason instead of speaking something it did not ask for.
func negotiate(r *codec.Request) (status int, body string) {
	if !r.OffersProtocols() {
		return 0, ""
	}
	if !r.OffersProtocol(Subprotocol) {
		return 400, "unsupported WebSocket subprotocol: /ws speaks " + Subprotocol + " (or offer none)"
	}
	r.Subprotocol = Subprotocol
	return 0, ""
}
