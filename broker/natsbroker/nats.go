// Package natsbroker is the clustered broker: Herald nodes share
// publications through NATS, and history lives in one JetStream stream.
//
// Publishing stores the message in the stream (subject herald.ch.<channel>)
// and the stream's sequence number becomes the offset, so a message has the
// same offset on every node. The stream republishes every stored message,
// in stream order, to herald.live.<channel> with its sequence in the
// Nats-Sequence header; a node subscribes to that subject (core NATS) when
// its first local subscriber of the channel arrives and unsubscribes when
// the last one leaves, so it receives traffic only for channels someone
// there wants. Live delivery is at-most-once (core NATS); a client that
// reconnects recovers what it missed from the stream with since.
//
// Channel names may contain '.', which separates NATS subject tokens; it is
// written as '~' (not allowed in channel names) in subjects.
//
// Goroutines: nats.go's, plus one dispatcher that hands live messages to the
// hub in arrival order. Every method is safe for concurrent use.
package natsbroker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-ws/herald/broker"
)

const (
	storedPrefix = "herald.ch."
	livePrefix   = "herald.live."
)

// Config configures the NATS broker.
type Config struct {
	URLs        string        // nats://host:port[,nats://host:port...]
	Stream      string        // JetStream stream name; default HERALD
	HistorySize int           // messages kept per channel (MaxMsgsPerSubject); at least 1
	HistoryTTL  time.Duration // MaxAge; 0 keeps messages until HistorySize pushes them out
	Replicas    int           // stream replicas in a NATS cluster; default 1
	MemoryStore bool          // keep the stream in memory instead of on disk
	Name        string        // client connection name
	Logger      *slog.Logger
}

// Broker is a broker.Broker on NATS and JetStream.
type Broker struct {
	cfg     Config
	log     *slog.Logger
	nc      *nats.Conn
	js      jetstream.JetStream
	deliver broker.DeliverFunc

	mu     sync.Mutex // guards subs and stream
	subs   map[string]*nats.Subscription
	stream jetstream.Stream

	live chan *nats.Msg
	stop chan struct{}
	done chan struct{}
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
	b := &Broker{
		cfg:  cfg,
		log:  cfg.Logger,
		subs: map[string]*nats.Subscription{},
		live: make(chan *nats.Msg, 1<<16),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	nc, err := nats.Connect(cfg.URLs,
		nats.Name(cfg.Name),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.ReconnectBufSize(-1), // never buffer publishes while disconnected: fail them
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			b.log.Warn("NATS disconnected", "err", err)
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			b.log.Info("NATS reconnected", "url", c.ConnectedUrlRedacted())
			go b.ensureStream()
		}),
		nats.ErrorHandler(func(_ *nats.Conn, s *nats.Subscription, err error) {
			subj := ""
			if s != nil {
				subj = s.Subject
			}
			b.log.Warn("NATS async error", "subject", subj, "err", err)
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("natsbroker: connect %s: %w", cfg.URLs, err)
	}
	b.nc = nc
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("natsbroker: jetstream: %w", err)
	}
	b.js = js
	return b, nil
}

// ensureStream creates or updates the stream; it is called at start and
// after every reconnect (a NATS server that lost its state gets it back).
func (b *Broker) ensureStream() error {
	storage := jetstream.FileStorage
	if b.cfg.MemoryStore {
		storage = jetstream.MemoryStorage
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := b.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              b.cfg.Stream,
		Subjects:          []string{storedPrefix + ">"},
		Storage:           storage,
		Replicas:          b.cfg.Replicas,
		MaxAge:            b.cfg.HistoryTTL,
		MaxMsgsPerSubject: int64(b.cfg.HistorySize),
		Discard:           jetstream.DiscardOld,
		AllowDirect:       true,
		RePublish:         &jetstream.RePublish{Source: storedPrefix + ">", Destination: livePrefix + ">"},
	})
	if err != nil {
		return fmt.Errorf("natsbroker: stream %s: %w", b.cfg.Stream, err)
	}
	b.mu.Lock()
	b.stream = s
	b.mu.Unlock()
	return nil
}

func (b *Broker) currentStream() (jetstream.Stream, error) {
	b.mu.Lock()
	s := b.stream
	b.mu.Unlock()
	if s != nil {
		return s, nil
	}
	if err := b.ensureStream(); err != nil {
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
		if err := b.ensureStream(); err != nil {
			b.log.Warn("NATS stream not ready yet", "err", err)
		}
	}
	go b.dispatch()
	return nil
}

func (b *Broker) dispatch() {
	defer close(b.done)
	for {
		select {
		case <-b.stop:
			return
		case m := <-b.live:
			p, ok := publicationOf(m)
			if ok {
				b.deliver(p)
			}
		}
	}
}

func publicationOf(m *nats.Msg) (broker.Publication, bool) {
	name, ok := strings.CutPrefix(m.Subject, livePrefix)
	if !ok {
		return broker.Publication{}, false
	}
	seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil {
		return broker.Publication{}, false
	}
	return broker.Publication{Channel: channelOf(name), Offset: seq, Data: m.Data, Time: time.Now()}, true
}

func subjectToken(channel string) string { return strings.ReplaceAll(channel, ".", "~") }
func channelOf(token string) string      { return strings.ReplaceAll(token, "~", ".") }

// Publish stores data in the stream; the stream sequence is the offset.
func (b *Broker) Publish(ctx context.Context, channel string, data []byte, _ broker.PublishOptions) (broker.PublishResult, error) {
	if !b.nc.IsConnected() {
		return broker.PublishResult{}, broker.ErrUnavailable
	}
	if _, err := b.currentStream(); err != nil {
		return broker.PublishResult{}, fmt.Errorf("%w: %v", broker.ErrUnavailable, err)
	}
	ack, err := b.js.Publish(ctx, storedPrefix+subjectToken(channel), data)
	if err != nil {
		return broker.PublishResult{}, fmt.Errorf("%w: publish %q: %v", broker.ErrUnavailable, channel, err)
	}
	return broker.PublishResult{Offset: ack.Sequence, Duplicate: ack.Duplicate}, nil
}

// Subscribe starts receiving the channel's live messages on this node. It
// returns once the NATS server has registered the interest (a round trip),
// so the hub can read history afterwards without a window in which a
// message is neither in the history it read nor delivered live.
func (b *Broker) Subscribe(channel string) error {
	b.mu.Lock()
	if _, ok := b.subs[channel]; ok {
		b.mu.Unlock()
		return nil
	}
	// Live messages of every channel share one Go channel and one
	// dispatcher, which keeps each channel's order. nats.go drops messages
	// for a channel subscription that falls 64Ki behind; a client that
	// misses one recovers it with since.
	sub, err := b.nc.ChanSubscribe(livePrefix+subjectToken(channel), b.live)
	if err != nil {
		b.mu.Unlock()
		return fmt.Errorf("%w: subscribe %q: %v", broker.ErrUnavailable, channel, err)
	}
	b.subs[channel] = sub
	b.mu.Unlock()
	// The round trip runs without the lock so that Publish, Ready and other
	// channels' subscribes are not held up by it.
	if err := b.nc.FlushTimeout(5 * time.Second); err != nil {
		b.mu.Lock()
		if b.subs[channel] == sub {
			delete(b.subs, channel)
		}
		b.mu.Unlock()
		_ = sub.Unsubscribe()
		return fmt.Errorf("%w: subscribe %q: %v", broker.ErrUnavailable, channel, err)
	}
	return nil
}

// Unsubscribe stops receiving the channel on this node.
func (b *Broker) Unsubscribe(channel string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	sub, ok := b.subs[channel]
	if !ok {
		return nil
	}
	delete(b.subs, channel)
	if err := sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
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
	s, err := b.currentStream()
	if err != nil {
		return broker.Recovery{}, fmt.Errorf("%w: %v", broker.ErrUnavailable, err)
	}
	subject := storedPrefix + subjectToken(channel)
	r := broker.Recovery{Recovered: true}
	last, err := s.GetLastMsgForSubject(ctx, subject)
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
		info, err := s.Info(ctx)
		if err != nil {
			return r, fmt.Errorf("%w: stream info: %v", broker.ErrUnavailable, err)
		}
		r.Recovered = since+1 >= info.State.FirstSeq && since <= info.State.LastSeq
		return r, nil
	}
	for seq := since + 1; seq <= r.Top && len(r.Publications) < b.cfg.HistorySize; {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return r, fmt.Errorf("%w: history of %q: %v", broker.ErrUnavailable, channel, err)
		}
		r.Publications = append(r.Publications, broker.Publication{Channel: channel, Offset: m.Sequence, Data: m.Data, Time: m.Time})
		seq = m.Sequence + 1
	}
	info, err := s.Info(ctx)
	if err != nil {
		return r, fmt.Errorf("%w: stream info: %v", broker.ErrUnavailable, err)
	}
	if since+1 < info.State.FirstSeq {
		// Messages after since expired or were pushed out; some may have
		// been this channel's.
		r.Recovered = false
		// Unless this channel still holds a message at or before since:
		// then everything of it after since is still here.
		if first, err := s.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(subject)); err == nil && first.Sequence <= since {
			r.Recovered = true
		}
	} else if len(r.Publications) >= b.cfg.HistorySize {
		// At the per-channel cap: older messages of this channel after
		// since may have been pushed out.
		first, err := s.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(subject))
		r.Recovered = err == nil && first.Sequence <= since
	}
	return r, nil
}

// Ready is nil while connected to NATS with the stream in place.
func (b *Broker) Ready() error {
	if !b.nc.IsConnected() {
		return fmt.Errorf("%w: not connected to NATS (%s)", broker.ErrUnavailable, b.nc.Status())
	}
	b.mu.Lock()
	ok := b.stream != nil
	b.mu.Unlock()
	if !ok {
		if err := b.ensureStream(); err != nil {
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
	if b.deliver != nil {
		<-b.done
	}
	return nil
}
