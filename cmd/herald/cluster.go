package main

import (
	"log/slog"
	"os"
	"strings"

	"github.com/herald-ws/herald/broker"
	"github.com/herald-ws/herald/broker/natsbroker"
)

// newClusterBroker connects to NATS for -broker nats://host:port[,host:port].
func newClusterBroker(o *serveOptions, log *slog.Logger) (broker.Broker, error) {
	host, _ := os.Hostname()
	return natsbroker.New(natsbroker.Config{
		URLs:            natsURLs(o.broker),
		HistorySize:     o.historySize,
		HistoryTTL:      o.historyTTL,
		DuplicateWindow: o.idempotencyWindow,
		Replicas:        o.natsReplicas,
		Timeout:         o.brokerTimeout,
		Name:            "herald@" + host,
		Logger:          log,
	})
}

// natsURLs turns nats://a:4222,b:4222 into the list nats.go expects, with a
// scheme on every entry.
func natsURLs(flagValue string) string {
	parts := strings.Split(flagValue, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if !strings.Contains(p, "://") {
			p = "nats://" + p
		}
		parts[i] = p
	}
	return strings.Join(parts, ",")
}
