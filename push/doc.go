// Package push is the /ws client protocol: JSON text frames carrying
// subscribe (with optional since or last), unsubscribe, publish, ping and
// refresh, answered with ack, error and pong, plus the message frames the
// hub fans out and the presence join/leave and unsubscribed frames. It
// authenticates the upgrade (token in ?token= or Authorization),
// negotiates the herald.json.v1 subprotocol (subprotocol.go), enforces
// channel permissions, -max-channels-per-conn and -publish-rate, and keeps
// each connection's subscriptions, including those its token grants on
// connect (subs.go).
//
// A token's exp is enforced for the connection's whole life (refresh.go):
// the Handler is a session.Ticker, so the engine's per-loop sweep, not a
// timer per connection, sends the refresh request and closes with 4001
// when the grace passes.
//
// A publish may carry an idempotency_key (the broker deduplicates; a
// repeat is acked with "duplicate":true) and is refused unless its data is
// one valid UTF-8 JSON value (internal/pubcheck, the API's rules). A
// publish the broker did not confirm in time is answered unknown_outcome,
// not unavailable: it may have been stored.
//
// Where the token comes from: an Authorization header with the Bearer
// scheme (any case, one or more spaces before the token) wins, even when
// ?token= holds another token or the header's own token is malformed;
// other schemes are ignored. Otherwise it is the first token= pair of the
// query, found pair by pair so that a malformed unrelated pair (a=%zz, a
// lone ';') never hides it; only its value is percent-decoded.
//
// Presence (presence.go), for channels matching Config.PresenceChannels:
// the members are the hub's subscriptions, listed by visiting them on
// their loops; the handler keeps only per-channel counts (connections and
// distinct users) so that stats cost one map lookup. Join and leave
// frames go out through Config.Notify, which reaches every node. The
// server API's disconnect and unsubscribe by user are Disconnect (a
// visitor for engine.Server.VisitOpen) and UnsubscribeUser.
//
// SSE (sse.go) and Poll (poll.go) serve the same channels without
// WebSocket, as session.StreamHandlers on the same loops: /sse a
// Server-Sent Events stream whose event ids carry the client's position
// on every channel (hub.EventStream), /poll long polls that gather
// publications (hub.Collector) and answer with them, held until one
// arrives or the engine's sweep finds the timeout passed. Both read the
// token, permissions and positions alike and subscribe through the hub
// with since, so recovery is the same as /ws's; both are receive-only.
// Every Handler method runs on the connection's event loop, except
// Presence, PresenceStats and UnsubscribeUser (any goroutine but a loop). Work that may
// block (a broker publish) goes to the hub's worker pool and its reply comes
// back to the loop through session.Loop.Exec.
package push
