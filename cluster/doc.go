// Package cluster holds the multi-node tests: several Herald nodes sharing
// traffic through a real NATS server with JetStream, embedded from its Go
// module and started by the tests themselves. Faults are injected for real:
// a loopback TCP proxy between a node and NATS cuts connections or holds
// the server's replies, a broker wrapper stalls the hub's Deliver, and a
// small history pushes out what a stalled node missed. A three-server NATS
// cluster runs as child processes (the test binary re-executed, see
// natsproc_test.go), so a member dies by SIGKILL, without a leadership
// hand-over. It has no non-test code.
package cluster
