package session

import "sync/atomic"

// Stats are server-wide counters, updated by every loop with atomic adds
// (one add per batch, not per byte) and safe to read from any goroutine.
type Stats struct {
	MessagesIn        atomic.Int64
	MessagesOut       atomic.Int64
	BytesIn           atomic.Int64
	BytesOut          atomic.Int64
	Upgrades          atomic.Int64 // successful handshakes
	HandshakeRejects  atomic.Int64 // upgrade requests answered with an HTTP error
	HandshakeTimeouts atomic.Int64
	IdleTimeouts      atomic.Int64
	ProtocolErrors    atomic.Int64 // connections failed for breaking RFC 6455
	SlowConsumers     atomic.Int64 // connections closed at the write-buffer limit
	// InboundBuffered is a gauge: inbound bytes sessions hold between
	// reads (messages being reassembled, unconsumed partial frames and
	// requests), bounded by Config.MaxInboundBuffer.
	InboundBuffered     atomic.Int64
	InboundBudgetCloses atomic.Int64 // connections closed because a read would pass MaxInboundBuffer
}
