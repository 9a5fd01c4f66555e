// Package broker is the boundary between publishers (the HTTP API and
// clients allowed to publish) and the delivery path (the hub). A Broker
// assigns each publication its per-channel offset, keeps the channel's
// history, and delivers publications of the channels this node is
// interested in to one callback, in offset order per channel.
//
// Memory is the single-node default. A clustered broker (NATS) satisfies the
// same interface: Subscribe and Unsubscribe express this node's interest so
// that a node only receives traffic for channels someone here wants.
//
// Control (control.go) is implemented by clustered brokers: it carries
// the server API's requests to every node and gathers the answers.
//
// Ownership: a Publication's Data is immutable once published and shared by
// the history and every delivery; nobody may modify it.
package broker
