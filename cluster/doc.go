// Package cluster holds the multi-node tests: several Herald nodes sharing
// traffic through a real NATS server with JetStream, embedded from its Go
// module and started by the tests themselves. It has no non-test code.
package cluster
