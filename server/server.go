package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/herald-ws/herald/api"
	"github.com/herald-ws/herald/auth"
	"github.com/herald-ws/herald/broker"
	"github.com/herald-ws/herald/engine"
	"github.com/herald-ws/herald/hub"
	"github.com/herald-ws/herald/internal/workpool"
	"github.com/herald-ws/herald/push"
	"github.com/herald-ws/herald/session"
)

// Options configure a node. Engine holds the client listener's settings;
// its Session.Routes is filled in by New.
type Options struct {
	Engine             engine.Config
	Echo               bool   // serve /echo
	APIAddr            string // "" disables the API listener
	APIKey             string
	TokenSecret        string // "" means anonymous mode
	ClientPublish      bool   // anonymous clients may publish
	MaxChannelsPerConn int
	PublishRate        float64
	HistorySize        int
	HistoryTTL         time.Duration
	// MaxChannels bounds the channels this node holds (with local
	// subscribers, and in the memory broker with history); 0: no limit.
	MaxChannels int
	// IdempotencyWindow is how long the memory broker remembers
	// idempotency keys (0: broker.DefaultIdempotencyWindow).
	IdempotencyWindow time.Duration
	// Workers and WorkQueue size the pool that runs broker calls off the
	// event loops (0: workpool defaults).
	Workers   int
	WorkQueue int
	// Broker is the broker to use; nil means a new in-memory broker with
	// HistorySize and HistoryTTL.
	Broker broker.Broker
	// HTTPExtra mounts more handlers on the API listener.
	HTTPExtra map[string]http.Handler
	// API limits; zero values take package api's defaults.
	APIMaxBody         int64
	APIReadTimeout     time.Duration
	APIWriteTimeout    time.Duration
	APIIdleTimeout     time.Duration
	APIMaxInflight     int
	MaxPublishChannels int
	// PublishTimeout is the broker's deadline for one channel of an API
	// publish and for one client publish; 0 means 5 s.
	PublishTimeout time.Duration
	// Overload policy (README, "Overload"): each event loop's inbox bound
	// in publications and bytes, how long an API publish waits for a loop
	// behind its high-water mark before 503 (0s: hub defaults), and the
	// channel patterns whose subscribers that are behind get only the
	// newest publication.
	InboxPublications int
	InboxBytes        int
	OverloadWait      time.Duration
	ConflateChannels  []string
	// PresenceChannels are the patterns of the channels that keep
	// presence; PresenceJoinLeave sends their joins and leaves to their
	// subscribers (docs/protocol.md).
	PresenceChannels  []string
	PresenceJoinLeave bool
	// Tokens are the client-token settings besides TokenSecret: RS256 and
	// ES256 key files, the refresh grace, -auto-personal.
	Tokens TokenOptions
	Logger *slog.Logger
}

// Node is one running Herald node.
type Node struct {
	opts     Options
	log      *slog.Logger
	broker   broker.Broker
	metered  *meteredBroker // broker, counted and timed; what the node's parts call
	hub      *hub.Hub
	pool     *workpool.Pool
	engine   *engine.Server
	push     *push.Handler
	api      *http.Server
	apiLn    net.Listener
	started  time.Time
	draining atomic.Bool
}

// ErrAPIKeyRequired refuses an API listener on a non-loopback address
// without an API key.
var ErrAPIKeyRequired = errors.New("server: the API listens on a non-loopback address; set -api-key")

// New validates o and builds a node; nothing listens until Start.
func New(o Options) (*Node, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.APIAddr != "" && o.APIKey == "" && !loopback(o.APIAddr) {
		return nil, ErrAPIKeyRequired
	}
	n := &Node{opts: o, log: o.Logger}
	n.broker = o.Broker
	if n.broker == nil {
		n.broker = broker.NewMemory(broker.MemoryConfig{
			HistorySize:       o.HistorySize,
			HistoryTTL:        o.HistoryTTL,
			MaxChannels:       o.MaxChannels,
			IdempotencyWindow: o.IdempotencyWindow,
		})
	}
	n.pool = workpool.New(workpool.Config{Workers: o.Workers, Queue: o.WorkQueue, Logger: o.Logger})
	n.metered = newMeteredBroker(n.broker)
	sc := &o.Engine.Session
	n.hub = hub.New(hub.Config{
		Broker:             n.metered.forHub(),
		Pool:               n.pool,
		MaxChannels:        o.MaxChannels,
		Compression:        sc.Compression,
		CompressionMinSize: sc.CompressionMinSize,
		InboxPublications:  o.InboxPublications,
		InboxBytes:         o.InboxBytes,
		AdmitWait:          o.OverloadWait,
		Conflate:           conflater(o.ConflateChannels),
		Logger:             o.Logger,
	})
	verifier, err := o.verifier(o.Logger)
	if err != nil {
		return nil, fmt.Errorf("server: client tokens: %w", err)
	}
	pc := push.Config{
		Hub:                n.hub,
		Broker:             n.metered,
		Verifier:           verifier,
		ClientPublish:      o.ClientPublish,
		MaxChannelsPerConn: o.MaxChannelsPerConn,
		PublishRate:        o.PublishRate,
		PublishTimeout:     o.PublishTimeout,
		RefreshGrace:       o.Tokens.RefreshGrace,
		AutoPersonal:       o.Tokens.AutoPersonal,
		PresenceChannels:   o.PresenceChannels,
		PresenceJoinLeave:  o.PresenceJoinLeave,
		Notify:             n.notify,
	}
	n.push = push.New(pc)
	routes := map[string]session.Handler{
		"/ws":   n.push,
		"/sse":  push.NewSSE(pc), // Server-Sent Events and long polling, for clients that cannot upgrade
		"/poll": push.NewPoll(pc),
	}
	if o.Echo {
		routes["/echo"] = session.Echo{}
	}
	ec := o.Engine
	ec.Session.Routes = routes
	ec.Logger = o.Logger
	eng, err := engine.New(ec)
	if err != nil {
		return nil, err
	}
	n.engine = eng
	return n, nil
}

// conflater matches channel names against -conflate-channels; nil when
// there are no patterns.
func conflater(patterns []string) func(string) bool {
	if len(patterns) == 0 {
		return nil
	}
	return func(ch string) bool { return auth.MatchAny(patterns, ch) }
}

// loopback reports whether addr's host is a loopback address or name.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Start starts the broker delivery, the client listener and the API.
func (n *Node) Start() error {
	n.started = time.Now()
	if err := n.hub.Start(); err != nil {
		return fmt.Errorf("server: start broker: %w", err)
	}
	if err := n.startControl(); err != nil {
		n.hub.Close()
		n.pool.Close(time.Second)
		_ = n.broker.Close()
		return fmt.Errorf("server: %w", err)
	}
	if err := n.engine.Start(); err != nil {
		n.hub.Close()
		n.pool.Close(time.Second)
		_ = n.broker.Close()
		return fmt.Errorf("server: client listener %s: %w", n.opts.Engine.Addr, err)
	}
	if n.opts.APIAddr != "" {
		ln, err := net.Listen("tcp", n.opts.APIAddr)
		if err != nil {
			_ = n.engine.Stop(context.Background())
			n.hub.Close()
			n.pool.Close(time.Second)
			_ = n.broker.Close()
			return fmt.Errorf("server: API listener: %w", err)
		}
		n.apiLn = ln
		n.api = api.NewServer(api.Config{
			Broker:             n.metered,
			Stats:              n.Stats,
			Ready:              n.Ready,
			APIKey:             n.opts.APIKey,
			Logger:             n.log,
			Extra:              n.httpExtra(),
			Collectors:         n.collectors(),
			MaxBody:            n.opts.APIMaxBody,
			MaxPublishChannels: n.opts.MaxPublishChannels,
			PublishTimeout:     n.opts.PublishTimeout,
			MaxInflight:        n.opts.APIMaxInflight,
			ReadTimeout:        n.opts.APIReadTimeout,
			WriteTimeout:       n.opts.APIWriteTimeout,
			IdleTimeout:        n.opts.APIIdleTimeout,
			Admit:              n.hub.Admit,
			Control:            control{n},
		})
		go func() {
			if err := n.api.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				n.log.Error("API listener", "err", err)
			}
		}()
	}
	n.announceSelf() // after the listeners: the description reads their addresses
	return nil
}

// Addr is the client listener's address; APIAddr the API's (nil without).
func (n *Node) Addr() net.Addr { return n.engine.Addr() }

// APIAddr is the API listener's bound address, or nil.
func (n *Node) APIAddr() net.Addr {
	if n.apiLn == nil {
		return nil
	}
	return n.apiLn.Addr()
}

// Broker returns the node's broker.
func (n *Node) Broker() broker.Broker { return n.broker }

// Hub returns the node's hub.
func (n *Node) Hub() *hub.Hub { return n.hub }

// Engine returns the client listener.
func (n *Node) Engine() *engine.Server { return n.engine }

// Ready is nil while the node accepts traffic: not draining and the broker
// reachable.
func (n *Node) Ready() error {
	if n.draining.Load() {
		return errors.New("shutting down")
	}
	return n.broker.Ready()
}

// Stats gathers the counters /api/stats and /metrics report.
func (n *Node) Stats() api.Stats {
	es := n.engine.Stats()
	hs := n.hub.Stats()
	return api.Stats{
		Connections:        n.engine.Conns(),
		Channels:           hs.Channels,
		Subscriptions:      hs.Subscriptions,
		MessagesIn:         es.MessagesIn.Load(),
		MessagesOut:        es.MessagesOut.Load(),
		BytesIn:            es.BytesIn.Load(),
		BytesOut:           es.BytesOut.Load(),
		SlowConsumerCloses: es.SlowConsumers.Load(),
		Publications:       hs.Publications,
		Deliveries:         hs.Delivered,
		Upgrades:           es.Upgrades.Load(),
		HandshakeRejects:   es.HandshakeRejects.Load(),
		HandshakeTimeouts:  es.HandshakeTimeouts.Load(),
		IdleTimeouts:       es.IdleTimeouts.Load(),
		ProtocolErrors:     es.ProtocolErrors.Load(),
	}
}

// Shutdown turns /readyz to 503, sends close 1001 to every client spread
// over grace, waits for them (bounded by ctx), then stops the API, the hub
// and the broker.
func (n *Node) Shutdown(ctx context.Context, grace time.Duration) error {
	n.draining.Store(true)
	err := n.engine.Shutdown(ctx, grace)
	if n.api != nil {
		actx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = n.api.Shutdown(actx)
		cancel()
	}
	n.hub.Close()
	n.pool.Close(2 * time.Second)
	if cerr := n.broker.Close(); err == nil {
		err = cerr
	}
	return err
}

// Stop closes everything at once, without the close handshake (tests).
func (n *Node) Stop() {
	n.draining.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = n.engine.Stop(ctx)
	if n.api != nil {
		_ = n.api.Close()
	}
	n.hub.Close()
	n.pool.Close(2 * time.Second)
	_ = n.broker.Close()
}
