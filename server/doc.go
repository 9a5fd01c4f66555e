// Package server assembles one Herald node: the broker, the hub, the /ws
// push handler, its Server-Sent Events and long-polling forms (/sse,
// /poll) and the optional /echo route on the gnet client listener
// (engine), and the HTTP API listener. cmd/herald and the end-to-end tests
// both start nodes through it, so what the tests exercise is what ships.
//
// Every part of the node calls the broker through a counting, timing
// wrapper (brokermetrics.go); the API listener serves the node's metrics
// (metrics.go collects the engine's, the hub's and the broker's) and the
// admin page, whose stats the node assembles per request.
//
// control.go is the node's side of the server API's cluster-wide calls
// (api.Control): each becomes a request every node answers about itself,
// through the broker's Control in a cluster, merged here; presence joins
// and leaves travel the same way (notify).
package server
