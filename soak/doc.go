// Package soak holds tests that drive thousands of connections at a real
// server. They are built only with -tags soak and run without -race in a
// pass of their own (`make soak`, part of `make test`), because the race
// detector allows at most 8,128 live goroutines and slows such tests tenfold.
package soak
