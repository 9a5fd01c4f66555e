package natsbroker

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/herald-ws/herald/broker"
)

const (
	storedPrefix = "herald.ch."
	livePrefix   = "herald.live."
)

// Defaults of the Config fields that take one.
const (
	DefaultDuplicateWindow  = 2 * time.Minute
	DefaultShardQueue       = 8192
	DefaultGapCheckInterval = time.Second
	DefaultRepairTimeout    = 2 * time.Second
	DefaultTimeout          = time.Second
	DefaultPingInterval     = 5 * time.Second
)

// jsErrDuplicateInProcess: a clustered stream saw the message id but has
// not stored the first message yet; it may still be.
const jsErrDuplicateInProcess jetstream.ErrorCode = 10158

// Config configures the NATS broker. Zero values take defaults.
type Config struct {
	URLs        string        // nats://host:port[,nats://host:port...]
	Stream      string        // JetStream stream name; default HERALD
	HistorySize int           // messages kept per channel (MaxMsgsPerSubject); at least 1
	HistoryTTL  time.Duration // MaxAge; 0 keeps messages until HistorySize pushes them out
	Replicas    int           // stream replicas in a NATS cluster; default 1
	MemoryStore bool          // keep the stream in memory instead of on disk
	Name        string        // client connection name
	Logger      *slog.Logger
	// DuplicateWindow is how long the stream remembers idempotency keys
	// (the stream's Duplicates); default DefaultDuplicateWindow, at most
	// HistoryTTL when that is set.
	DuplicateWindow time.Duration
	// DeliveryShards is the number of delivery goroutines; default
	// GOMAXPROCS.
	DeliveryShards int
	// ShardQueue is each shard's queue of live messages, the pending limit
	// of the NATS subscriptions on it (nats.go's channel subscriptions take
	// no other); nats.go drops past it and reports a slow consumer, which
	// is repaired as a gap. It bounds live messages in flight to
	// DeliveryShards x ShardQueue, each at most the NATS server's
	// max_payload. Default DefaultShardQueue.
	ShardQueue int
	// GapCheckInterval is how often channels with possible drops are
	// compared with the stream; default DefaultGapCheckInterval.
	GapCheckInterval time.Duration
	// RepairTimeout bounds one gap repair or check; default
	// DefaultRepairTimeout.
	RepairTimeout time.Duration
	// Timeout bounds every round trip to NATS made on a caller's behalf
	// (a publish's ack, a subscribe's registration and starting point,
	// creating the stream, each history read); a round trip also ends at
	// once when the connection to NATS is lost. Default DefaultTimeout.
	Timeout time.Duration
	// PingInterval is how often the connection to NATS is pinged; two
	// pings unanswered declare it lost, so a silent partition is noticed
	// within three intervals (nats.go's default is two minutes). Default
	// DefaultPingInterval.
	PingInterval time.Duration
}

// Stats are counters of live delivery since New.
type Stats struct {
	Repaired uint64 // gaps filled from the stream
	Gaps     uint64 // gaps that could not be filled and were delivered as Gap publications
}

// Broker is a broker.Broker on NATS and JetStream.
type Broker struct {
	cfg     Config
	log     *slog.Logger
	nc      *nats.Conn
	js      jetstream.JetStream
	deliver broker.DeliverFunc
	shards  []*shard

	mu      sync.Mutex // guards subs, stream and created
	subs    map[string]*subscription
	stream  jetstream.Stream
	created time.Time // the stream's creation time, which tells a recreated stream

	// epoch counts the stream recreations seen (deleted, or on a NATS
	// server that lost its state): sequences start again from 1, so every
	// channel's position is rebased.
	epoch atomic.Uint64

	repaired atomic.Uint64
	gaps     atomic.Uint64

	dir directory
	key string // this node's key in the node directory

	// conn ends when the connection to NATS is lost and is replaced by a
	// fresh one then: round trips in flight on the lost connection (whose
	// replies cannot arrive) end with it rather than at their timeout.
	connMu     sync.Mutex
	conn       context.Context
	connCancel context.CancelFunc

	stop chan struct{}
	done sync.WaitGroup
}

// subscription is one channel's NATS interest and delivery state.
type subscription struct {
	sub   *nats.Subscription
	shard *shard
	state *chanState
}

// New connects to NATS. The connection retries forever in the background:
// a node starts, and keeps serving its local connections, while NATS is
// down; Ready reports the state.
func New(cfg Config) (*Broker, error) {
	if cfg.Stream == "" {
		cfg.Stream = "HERALD"
	}
	if cfg.HistorySize < 1 {
		cfg.HistorySize = 1
	}
	if cfg.Replicas < 1 {
		cfg.Replicas = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DuplicateWindow <= 0 {
		cfg.DuplicateWindow = DefaultDuplicateWindow
	}
	if cfg.HistoryTTL > 0 && cfg.DuplicateWindow > cfg.HistoryTTL {
		cfg.DuplicateWindow = cfg.HistoryTTL // JetStream refuses a window longer than MaxAge
	}
	if cfg.DeliveryShards < 1 {
		cfg.DeliveryShards = runtime.GOMAXPROCS(0)
	}
	if cfg.ShardQueue < 1 {
		cfg.ShardQueue = DefaultShardQueue
	}
	if cfg.GapCheckInterval <= 0 {
		cfg.GapCheckInterval = DefaultGapCheckInterval
	}
	if cfg.RepairTimeout <= 0 {
		cfg.RepairTimeout = DefaultRepairTimeout
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = DefaultPingInterval
	}
	b := &Broker{
		cfg:  cfg,
		key:  nuid.Next(),
		log:  cfg.Logger,
		subs: map[string]*subscription{},
		stop: make(chan struct{}),
	}
	b.shards = newShards(b, cfg.DeliveryShards, cfg.ShardQueue)
	b.conn, b.connCancel = context.WithCancel(context.Background())
	built := make(chan struct{}) // closed once b.nc and b.js are set (or New failed)
	connected := func(c *nats.Conn) {
		go func() {
			<-built // the first connect's handler may run before Connect returns
			if b.js == nil {
				return
			}
			ctx, cancel := b.roundTrip(context.Background())
			_ = b.ensureStream(ctx)
			cancel()
			// Whatever was published while disconnected never
			// arrived; the next message of a channel reveals it, the
			// check finds it for channels that have none.
			for _, s := range b.shards {
				s.markSuspect("")
			}
		}()
	}
	nc, err := nats.Connect(cfg.URLs,
		nats.Name(cfg.Name),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.ReconnectBufSize(-1), // never buffer publishes while disconnected: fail them
		nats.PingInterval(cfg.PingInterval),
		nats.MaxPingsOutstanding(2),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			b.log.Warn("NATS disconnected", "err", err)
			b.connLost()
		}),
		// A node started while NATS was down connects through the retry
		// loop and is told so here, not by the reconnect handler.
		nats.ConnectHandler(func(c *nats.Conn) {
			b.log.Info("NATS connected", "url", c.ConnectedUrlRedacted())
			connected(c)
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			b.log.Info("NATS reconnected", "url", c.ConnectedUrlRedacted())
			connected(c)
		}),
		nats.ErrorHandler(func(_ *nats.Conn, s *nats.Subscription, err error) {
			subj := ""
			if s != nil {
				subj = s.Subject
			}
			if errors.Is(err, nats.ErrSlowConsumer) && s != nil {
				if channel, ok := subjectChannel(subj); ok {
					b.shardOf(channel).markSuspect(subj)
					b.log.Debug("NATS slow consumer; repairing from the stream", "channel", channel)
					return
				}
			}
			b.log.Warn("NATS async error", "subject", subj, "err", err)
		}),
	)
	if err != nil {
		close(built)
		return nil, fmt.Errorf("natsbroker: connect %s: %w", cfg.URLs, err)
	}
	b.nc = nc
	js, err := jetstream.New(nc)
	if err != nil {
		close(built)
		nc.Close()
		return nil, fmt.Errorf("natsbroker: jetstream: %w", err)
	}
	b.js = js
	close(built)
	return b, nil
}

// connLost ends the round trips in flight on the connection just lost.
// nats.go runs it on its callback goroutine, possibly after a fast
// reconnect: a round trip begun on the new connection in between ends
// too, as an unknown outcome, which a retry with the same key settles.
func (b *Broker) connLost() {
	b.connMu.Lock()
	cancel := b.connCancel
	b.conn, b.connCancel = context.WithCancel(context.Background())
	b.connMu.Unlock()
	cancel()
}

// roundTrip is the context of one request to NATS made for a caller whose
// own context is parent: it ends with parent, after Config.Timeout, or
// when the connection to NATS is lost, whichever comes first.
func (b *Broker) roundTrip(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(parent, b.cfg.Timeout)
	b.connMu.Lock()
	conn := b.conn
	b.connMu.Unlock()
	stop := context.AfterFunc(conn, cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}

// ensureStream creates or updates the stream; it is called at start and
// after every (re)connect (a NATS server that lost its state gets it
// back).
func (b *Broker) ensureStream(ctx context.Context) error {
	storage := jetstream.FileStorage
	if b.cfg.MemoryStore {
		storage = jetstream.MemoryStorage
	}
	s, err := b.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              b.cfg.Stream,
		Subjects:          []string{storedPrefix + ">"},
		Storage:           storage,
		Replicas:          b.cfg.Replicas,
		MaxAge:            b.cfg.HistoryTTL,
		MaxMsgsPerSubject: int64(b.cfg.HistorySize),
		Discard:           jetstream.DiscardOld,
		Duplicates:        b.cfg.DuplicateWindow,
		AllowDirect:       true,
		RePublish:         &jetstream.RePublish{Source: storedPrefix + ">", Destination: livePrefix + ">"},
	})
	if err != nil {
		return fmt.Errorf("natsbroker: stream %s: %w", b.cfg.Stream, err)
	}
	b.mu.Lock()
	b.stream = s
	b.mu.Unlock()
	b.noteCreated(s.CachedInfo().Created)
	return nil
}

// noteCreated records the stream's creation time; a different one than
// before means the stream was recreated and its sequences restarted.
func (b *Broker) noteCreated(created time.Time) {
	b.mu.Lock()
	prev := b.created
	b.created = created
	b.mu.Unlock()
	if prev.IsZero() || prev.Equal(created) {
		return
	}
	b.epoch.Add(1)
	b.log.Warn("NATS stream was recreated; channels restart from its history", "stream", b.cfg.Stream)
}

// watchStream notices a stream recreated by another node or an operator,
// which this node's connection would not see.
func (b *Broker) watchStream() {
	defer b.done.Done()
	tick := time.NewTicker(b.cfg.GapCheckInterval)
	defer tick.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-tick.C:
		}
		b.mu.Lock()
		s := b.stream
		b.mu.Unlock()
		if s == nil || !b.nc.IsConnected() {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), b.cfg.RepairTimeout)
		info, err := s.Info(ctx)
		cancel()
		if err == nil {
			b.noteCreated(info.Created)
		}
	}
}

func (b *Broker) currentStream() (jetstream.Stream, error) {
	b.mu.Lock()
	s := b.stream
	b.mu.Unlock()
	if s != nil {
		return s, nil
	}
	if !b.nc.IsConnected() {
		return nil, fmt.Errorf("not connected to NATS (%s)", b.nc.Status())
	}
	ctx, cancel := b.roundTrip(context.Background())
	defer cancel()
	if err := b.ensureStream(ctx); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stream, nil
}

// Start begins handing live messages to deliver. The stream is created now
// if NATS is reachable, else after the first successful reconnect.
func (b *Broker) Start(deliver broker.DeliverFunc) error {
	b.deliver = deliver
	if b.nc.IsConnected() {
		ctx, cancel := b.roundTrip(context.Background())
		if err := b.ensureStream(ctx); err != nil {
			b.log.Warn("NATS stream not ready yet", "err", err)
		}
		cancel()
	}
	for _, s := range b.shards {
		b.done.Add(1)
		go s.run(b.stop, &b.done)
	}
	b.done.Add(1)
	go b.watchStream()
	return nil
}

// Stats returns the live delivery counters.
func (b *Broker) Stats() Stats {
	return Stats{Repaired: b.repaired.Load(), Gaps: b.gaps.Load()}
}

func subjectToken(channel string) string { return strings.ReplaceAll(channel, ".", "~") }
func channelOf(token string) string      { return strings.ReplaceAll(token, "~", ".") }

// msgID is the Nats-Msg-Id of an idempotent publish: keys are per channel,
// and the hash keeps any key (any bytes, any length) a valid header value.
func msgID(channel, key string) string {
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	h.Write(n[:binary.PutUvarint(n[:], uint64(len(channel)))])
	h.Write([]byte(channel))
	h.Write([]byte(key))
	return hex.EncodeToString(h.Sum(nil))
}

// Publish stores data in the stream; the stream sequence is the offset.
func (b *Broker) Publish(ctx context.Context, channel string, data []byte, opts broker.PublishOptions) (broker.PublishResult, error) {
	if !b.nc.IsConnected() {
		return broker.PublishResult{}, fmt.Errorf("%w: publish %q: not connected to NATS", broker.ErrUnavailable, channel)
	}
	if _, err := b.currentStream(); err != nil {
		return broker.PublishResult{}, fmt.Errorf("%w: %v", broker.ErrUnavailable, err)
	}
	if err := ctx.Err(); err != nil {
		return broker.PublishResult{}, fmt.Errorf("%w: publish %q: %v", broker.ErrUnavailable, channel, err)
	}
	var popts []jetstream.PublishOpt
	if opts.IdempotencyKey != "" {
		popts = append(popts, jetstream.WithMsgID(msgID(channel, opts.IdempotencyKey)))
	}
	rt, cancel := b.roundTrip(ctx)
	ack, err := b.js.Publish(rt, storedPrefix+subjectToken(channel), data, popts...)
	cancel()
	if err != nil {
		if errors.Is(err, jetstream.ErrNoStreamResponse) {
			// The stream is gone (deleted, or a NATS server that lost its
			// state): the next publish or Ready creates it again.
			b.mu.Lock()
			b.stream = nil
			b.mu.Unlock()
		}
		if notSent(err) {
			return broker.PublishResult{}, fmt.Errorf("%w: publish %q: %v", broker.ErrUnavailable, channel, err)
		}
		return broker.PublishResult{}, fmt.Errorf("%w: publish %q: %v", broker.ErrUnknownOutcome, channel, err)
	}
	if ack.Sequence == 0 {
		// A duplicate whose original this server cannot place.
		return broker.PublishResult{}, fmt.Errorf("%w: publish %q: ack without a sequence", broker.ErrUnknownOutcome, channel)
	}
	return broker.PublishResult{Offset: ack.Sequence, Duplicate: ack.Duplicate}, nil
}

// notSent reports whether a failed JetStream publish certainly stored
// nothing: it never left this process, nobody was there to store it, or
// the stream answered with a refusal. Anything else (no ack in time, the
// connection lost while waiting, a garbled ack) may have been stored.
func notSent(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode != jsErrDuplicateInProcess
	}
	return errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, nats.ErrReconnectBufExceeded) ||
		errors.Is(err, nats.ErrMaxPayload) ||
		errors.Is(err, nats.ErrBadSubject) ||
		errors.Is(err, nats.ErrInvalidConnection) ||
		errors.Is(err, jetstream.ErrInvalidOption)
}

// Subscribe starts receiving the channel's live messages on this node. It
// returns once the NATS server has registered the interest (a round trip)
// and the channel's starting point is read, so the hub can read history
// afterwards without a window in which a message is neither in the history
// it read nor delivered live.
func (b *Broker) Subscribe(channel string) error {
	_, _, err := b.SubscribeTop(channel)
	return err
}

// SubscribeTop implements broker.TopSubscriber: the top is the starting
// point Subscribe reads, the channel's last stored message.
func (b *Broker) SubscribeTop(channel string) (top uint64, fresh bool, err error) {
	b.mu.Lock()
	if _, ok := b.subs[channel]; ok {
		b.mu.Unlock()
		return 0, false, nil
	}
	if !b.nc.IsConnected() {
		// nats.go would keep the interest for the reconnect, but the
		// starting point cannot be read without NATS.
		b.mu.Unlock()
		return 0, false, fmt.Errorf("%w: subscribe %q: not connected to NATS (%s)", broker.ErrUnavailable, channel, b.nc.Status())
	}
	s, st := b.addChannel(channel)
	// nats.go pushes into the shard's queue without blocking and drops
	// (reporting a slow consumer) when it is full; that queue is the
	// subscription's pending limit (a channel subscription has no other).
	sub, err := b.nc.ChanSubscribe(st.live, s.in)
	if err != nil {
		s.removeChannel(st)
		b.mu.Unlock()
		return 0, false, fmt.Errorf("%w: subscribe %q: %v", broker.ErrUnavailable, channel, err)
	}
	entry := &subscription{sub: sub, shard: s, state: st}
	b.subs[channel] = entry
	b.mu.Unlock()
	// The round trips run without the lock so that Publish, Ready and
	// other channels' subscribes are not held up by them.
	ctx, cancel := b.roundTrip(context.Background())
	err = b.nc.FlushWithContext(ctx)
	cancel()
	if err == nil {
		ctx, cancel := b.roundTrip(context.Background())
		top, err = b.startAt(ctx, s, st, sub)
		cancel()
	}
	if err != nil {
		b.mu.Lock()
		if b.subs[channel] == entry {
			delete(b.subs, channel)
		}
		b.mu.Unlock()
		s.removeChannel(st)
		_ = sub.Unsubscribe()
		return 0, false, fmt.Errorf("%w: subscribe %q: %v", broker.ErrUnavailable, channel, err)
	}
	return top, true, nil
}

// Unsubscribe stops receiving the channel on this node.
func (b *Broker) Unsubscribe(channel string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	entry, ok := b.subs[channel]
	if !ok {
		return nil
	}
	delete(b.subs, channel)
	entry.shard.removeChannel(entry.state)
	if err := entry.sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		return fmt.Errorf("natsbroker: unsubscribe %q: %w", channel, err)
	}
	return nil
}

// Recover reads the channel's top offset and, with history, its stored
// messages after since. recovered is exact for messages pushed out by
// -history-size and conservative for -history-ttl: once messages newer
// than since have expired from the stream, it reports false even if none of
// them belonged to this channel, since the stream cannot tell.
func (b *Broker) Recover(ctx context.Context, channel string, since uint64, history bool) (broker.Recovery, error) {
	if !b.nc.IsConnected() {
		return broker.Recovery{}, fmt.Errorf("%w: recover %q: not connected to NATS (%s)", broker.ErrUnavailable, channel, b.nc.Status())
	}
	s, err := b.currentStream()
	if err != nil {
		return broker.Recovery{}, fmt.Errorf("%w: %v", broker.ErrUnavailable, err)
	}
	// Each read is one round trip, bounded on its own: a history of many
	// messages takes as many, and a NATS that stops answering fails the
	// next one within Config.Timeout.
	var rtCancel context.CancelFunc = func() {}
	defer func() { rtCancel() }()
	rt := func() context.Context {
		rtCancel()
		var c context.Context
		c, rtCancel = b.roundTrip(ctx)
		return c
	}
	subject := storedPrefix + subjectToken(channel)
	r := broker.Recovery{Recovered: true}
	last, err := s.GetLastMsgForSubject(rt(), subject)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
	case err != nil:
		return r, fmt.Errorf("%w: last message of %q: %v", broker.ErrUnavailable, channel, err)
	default:
		r.Top = last.Sequence
	}
	if !history || since == r.Top {
		return r, nil
	}
	if since > r.Top {
		// The client saw a message the stream no longer holds for this
		// channel (expired, or the stream was reset). Unless nothing after
		// since has been removed from the stream, it may have missed some.
		info, err := s.Info(rt())
		if err != nil {
			return r, fmt.Errorf("%w: stream info: %v", broker.ErrUnavailable, err)
		}
		r.Recovered = since+1 >= info.State.FirstSeq && since <= info.State.LastSeq
		return r, nil
	}
	for seq := since + 1; seq <= r.Top && len(r.Publications) < b.cfg.HistorySize; {
		m, err := s.GetMsg(rt(), seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return r, fmt.Errorf("%w: history of %q: %v", broker.ErrUnavailable, channel, err)
		}
		r.Publications = append(r.Publications, broker.Publication{Channel: channel, Offset: m.Sequence, Data: m.Data, Time: m.Time})
		seq = m.Sequence + 1
	}
	info, err := s.Info(rt())
	if err != nil {
		return r, fmt.Errorf("%w: stream info: %v", broker.ErrUnavailable, err)
	}
	if since+1 < info.State.FirstSeq {
		// Messages after since expired or were pushed out; some may have
		// been this channel's.
		r.Recovered = false
		// Unless this channel still holds a message at or before since:
		// then everything of it after since is still here.
		if first, err := s.GetMsg(rt(), 1, jetstream.WithGetMsgSubject(subject)); err == nil && first.Sequence <= since {
			r.Recovered = true
		}
	} else if len(r.Publications) >= b.cfg.HistorySize {
		// At the per-channel cap: older messages of this channel after
		// since may have been pushed out.
		first, err := s.GetMsg(rt(), 1, jetstream.WithGetMsgSubject(subject))
		r.Recovered = err == nil && first.Sequence <= since
	}
	return r, nil
}

// Reconnects is how many times the NATS connection reconnected since the
// node started (herald_broker_reconnects_total).
func (b *Broker) Reconnects() int64 { return int64(b.nc.Stats().Reconnects) }

// Ready is nil while connected to NATS with the stream in place.
func (b *Broker) Ready() error {
	if !b.nc.IsConnected() {
		return fmt.Errorf("%w: not connected to NATS (%s)", broker.ErrUnavailable, b.nc.Status())
	}
	b.mu.Lock()
	ok := b.stream != nil
	b.mu.Unlock()
	if !ok {
		ctx, cancel := b.roundTrip(context.Background())
		defer cancel()
		if err := b.ensureStream(ctx); err != nil {
			return fmt.Errorf("%w: %v", broker.ErrUnavailable, err)
		}
	}
	return nil
}

// Close drains nothing: it stops delivery and closes the NATS connection.
func (b *Broker) Close() error {
	select {
	case <-b.stop:
		return nil
	default:
	}
	close(b.stop)
	b.nc.Close()
	b.done.Wait()
	return nil
}
