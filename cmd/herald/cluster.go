package main

import (
	"errors"
	"log/slog"

	"github.com/herald-ws/herald/broker"
)

// newClusterBroker connects to NATS for -broker nats://...
func newClusterBroker(o *serveOptions, _ *slog.Logger) (broker.Broker, error) {
	return nil, errors.New("the NATS broker is not part of this build yet; use -broker memory")
}
