// Package server assembles one Herald node: the broker, the hub, the /ws
// push handler and optional /echo route on the gnet client listener
// (engine), and the HTTP API listener. cmd/herald and the end-to-end tests
// both start nodes through it, so what the tests exercise is what ships.
package server
