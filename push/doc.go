// Package push is the /ws client protocol: JSON text frames carrying
// subscribe (with optional since), unsubscribe, publish and ping, answered
// with ack, error and pong, plus the message frames the hub fans out. It
// authenticates the upgrade (token in ?token= or Authorization), enforces
// channel permissions, -max-channels-per-conn and -publish-rate, and keeps
// each connection's subscriptions.
//
// A publish may carry an idempotency_key (the broker deduplicates; a
// repeat is acked with "duplicate":true) and is refused unless its data is
// one valid UTF-8 JSON value (internal/pubcheck, the API's rules). A
// publish the broker did not confirm in time is answered unknown_outcome,
// not unavailable: it may have been stored.
//
// Every Handler method runs on the connection's event loop. Work that may
// block (a broker publish) goes to the hub's worker pool and its reply comes
// back to the loop through session.Loop.Exec.
package push
