// Package push is the /ws client protocol: JSON text frames carrying
// subscribe (with optional since), unsubscribe, publish and ping, answered
// with ack, error and pong, plus the message frames the hub fans out. It
// authenticates the upgrade (token in ?token= or Authorization), enforces
// channel permissions, -max-channels-per-conn and -publish-rate, and keeps
// each connection's subscriptions.
//
// Every Handler method runs on the connection's event loop. Work that may
// block (a broker publish) goes to the hub's worker pool and its reply comes
// back to the loop through session.Loop.Exec.
package push
