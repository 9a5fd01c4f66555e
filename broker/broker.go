package broker

import (
	"context"
	"errors"
	"time"
)

// Publication is one message published to a channel.
type Publication struct {
	Channel string
	Offset  uint64
	Data    []byte // raw JSON value; immutable
	Time    time.Time
	// Gap, on a delivery, says the broker lost continuity on Channel: some
	// publications after the last one it delivered for the channel, up to
	// and including Offset, may not have been delivered and could not be
	// repaired. Data is nil. The hub makes every local subscriber of the
	// channel recover from history (as a subscribe with since would), so
	// no client is left with a silent hole.
	Gap bool
}

// Recovery is what a Broker knows of a channel for a subscribe.
type Recovery struct {
	// Top is the channel's latest offset: the offset of its last
	// publication, or the channel's starting point if it has none.
	Top uint64
	// Publications are those with offsets after the requested one, oldest
	// first (only when history was requested).
	Publications []Publication
	// Recovered is false when the history no longer reaches back to the
	// requested offset, so the client has missed messages.
	Recovered bool
}

// PublishOptions are the optional parts of a publish.
type PublishOptions struct {
	// IdempotencyKey, when not empty, makes the publish idempotent: a
	// second publish to the same channel with the same key within the
	// broker's deduplication window stores nothing and returns the first
	// publish's offset with Duplicate set.
	IdempotencyKey string
}

// PublishResult is what a publish came to.
type PublishResult struct {
	Offset    uint64
	Duplicate bool // an earlier publish with the same idempotency key was stored; nothing new was
}

// DeliverFunc receives every publication on channels this node subscribed
// to, in offset order per channel. It must not block.
type DeliverFunc func(Publication)

// Broker moves publications between publishers and the delivery path. All
// methods are safe for concurrent use.
type Broker interface {
	// Start begins delivering to deliver. It is called once, before any
	// other method.
	Start(deliver DeliverFunc) error
	// Publish appends data to channel, delivers it to every interested node
	// and returns its offset. An error means the publication was not
	// stored, except for ErrUnknownOutcome, which means it may have been
	// (a retry with the same idempotency key is then safe).
	Publish(ctx context.Context, channel string, data []byte, opts PublishOptions) (PublishResult, error)
	// Subscribe and Unsubscribe set this node's interest in channel; the
	// hub calls them when its first local subscriber arrives and when its
	// last one leaves.
	Subscribe(channel string) error
	Unsubscribe(channel string) error
	// Recover returns the channel's top offset and, when history is true,
	// the publications after offset since.
	Recover(ctx context.Context, channel string, since uint64, history bool) (Recovery, error)
	// Ready reports whether the broker can accept publications now.
	Ready() error
	// Close stops delivery and releases resources.
	Close() error
}

// TopSubscriber is implemented by brokers whose Subscribe reads the
// channel's top offset anyway, once the interest is registered.
// SubscribeTop is Subscribe that also returns that top, with fresh set;
// when the node was subscribed already it reads nothing and fresh is
// false. A subscribe that created the node's interest then needs no
// second read for its starting point.
type TopSubscriber interface {
	SubscribeTop(channel string) (top uint64, fresh bool, err error)
}

// Nonblocking is implemented by brokers whose Subscribe, Unsubscribe and
// Recover never wait for I/O (they take short locks only), so the hub may
// call them on an event loop instead of the worker pool.
type Nonblocking interface {
	Broker
	Nonblocking()
}

// Errors.
var (
	ErrUnavailable = errors.New("broker: unavailable")
	ErrClosed      = errors.New("broker: closed")
	// ErrTooManyChannels: creating the channel would pass the broker's
	// channel limit (-max-channels).
	ErrTooManyChannels = errors.New("broker: too many channels")
	// ErrUnknownOutcome: the broker was asked to store the publication but
	// did not confirm it in time; it may or may not have been stored.
	ErrUnknownOutcome = errors.New("broker: publish outcome unknown")
)

// Directory is implemented by clustered brokers: every node announces
// itself to the others through the broker, so that any node can list the
// cluster (the admin page's node list).
type Directory interface {
	// Announce sets what this node says about itself (JSON, built on each
	// announcement); it is called once, before or after Start.
	Announce(describe func() []byte)
	// Nodes returns the latest announcement of every node heard from within
	// the directory's TTL, this node's included.
	Nodes() [][]byte
}
