package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/herald-ws/herald/engine"
	"github.com/herald-ws/herald/server"
	"github.com/herald-ws/herald/session"
)

// serveOptions are the parsed `herald serve` flags.
type serveOptions struct {
	addr               string
	loops              int
	maxConns           int
	maxMessageSize     byteSize
	handshakeTimeout   time.Duration
	idleTimeout        time.Duration
	pingInterval       time.Duration
	writeBufferLimit   byteSize
	maxInboundBuffer   byteSize
	compression        bool
	compressionMinSize byteSize
	allowedOrigins     listFlag
	echo               bool
	tcpNoDelay         bool
	reusePort          bool
	logLevel           slog.Level
	shutdownGrace      time.Duration
	apiAddr            string
	apiKey             string
	tokenSecret        string
	clientPublish      bool
	maxChannelsPerConn int
	publishRate        float64
	historySize        int
	historyTTL         time.Duration
	broker             string
	natsReplicas       int
	brokerTimeout      time.Duration
	maxChannels        int
	idempotencyWindow  time.Duration
	workers            int
	workQueue          int
	memoryLimit        byteSize
	apiOptions
	overloadOptions
	presenceOptions
	tokenOptions
}

// apiOptions are the API listener's limits (docs/api.md).
type apiOptions struct {
	apiMaxBody         byteSize
	apiReadTimeout     time.Duration
	apiWriteTimeout    time.Duration
	apiIdleTimeout     time.Duration
	apiMaxInflight     int
	maxPublishChannels int
	publishTimeout     time.Duration
}

func newServeFlags() (*flag.FlagSet, *serveOptions) {
	o := &serveOptions{
		maxMessageSize:     1 << 20,
		writeBufferLimit:   1 << 20,
		maxInboundBuffer:   256 << 20,
		compressionMinSize: 512,
	}
	o.apiMaxBody = 1 << 20
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.StringVar(&o.addr, "addr", "127.0.0.1:8080", "client listener address (host:port)")
	fs.IntVar(&o.loops, "loops", 0, "event loops; 0 means GOMAXPROCS")
	fs.IntVar(&o.maxConns, "max-conns", 1_000_000, "open connections past which new ones get HTTP 503; 0 means no limit")
	fs.Var(&o.maxMessageSize, "max-message-size", "largest message a client may send (after decompression); bigger ones are closed with 1009")
	fs.DurationVar(&o.handshakeTimeout, "handshake-timeout", 5*time.Second, "close a connection whose upgrade request is not complete within this time")
	fs.DurationVar(&o.idleTimeout, "idle-timeout", 60*time.Second, "close (1001) a connection that sends nothing, not even a pong, for this long; 0 disables")
	fs.DurationVar(&o.pingInterval, "ping-interval", 25*time.Second, "ping a connection that has been silent this long; 0 disables")
	fs.Var(&o.writeBufferLimit, "write-buffer-limit", "pending outbound bytes per connection past which it is closed with 1008 as a slow consumer")
	fs.Var(&o.maxInboundBuffer, "max-inbound-buffer", "server-wide bound on inbound bytes held for unfinished messages; a connection whose read would pass it is closed with 1008; 0 means no limit")
	fs.BoolVar(&o.compression, "compression", false, "negotiate permessage-deflate (RFC 7692), without context takeover")
	fs.Var(&o.compressionMinSize, "compression-min-size", "messages smaller than this are sent uncompressed")
	fs.Var(&o.allowedOrigins, "allowed-origins", "comma-separated Origin values allowed to connect, '*' suffix wildcards; empty allows any")
	fs.BoolVar(&o.echo, "echo", false, "serve GET /echo, which echoes every message (for conformance suites and benchmarks)")
	fs.BoolVar(&o.tcpNoDelay, "tcp-nodelay", true, "set TCP_NODELAY on client connections")
	fs.BoolVar(&o.reusePort, "reuseport", false, "set SO_REUSEPORT on the client listener")
	fs.TextVar(&o.logLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn or error")
	fs.DurationVar(&o.shutdownGrace, "shutdown-grace", 5*time.Second, "on SIGTERM/SIGINT, spread close 1001 to every client over this time")
	fs.StringVar(&o.apiAddr, "api-addr", "127.0.0.1:8081", "HTTP API listener (publish, stats, metrics, health); empty disables it")
	fs.StringVar(&o.apiKey, "api-key", "", "require Authorization: Bearer <key> on /api/*; required when -api-addr is not loopback")
	fs.StringVar(&o.tokenSecret, "token-secret", "", "HS256 secret for client tokens; empty means anonymous clients (public channels only)")
	fs.BoolVar(&o.clientPublish, "client-publish", false, "let anonymous clients publish (token holders need the publish claim)")
	fs.IntVar(&o.maxChannelsPerConn, "max-channels-per-conn", 128, "channels one connection may subscribe to; 0 means no limit")
	fs.Float64Var(&o.publishRate, "publish-rate", 10, "client publishes per second per connection (burst of the same size); 0 means no limit")
	fs.IntVar(&o.historySize, "history-size", 100, "publications kept per channel for recovery with since; 0 keeps none")
	fs.DurationVar(&o.historyTTL, "history-ttl", 5*time.Minute, "how long a publication stays in history; 0 keeps it until pushed out by -history-size")
	fs.StringVar(&o.broker, "broker", "memory", "memory, or nats://host:port[,host:port...] for a cluster")
	fs.IntVar(&o.natsReplicas, "nats-replicas", 1, "replicas of Herald's JetStream stream (cluster): 1, or 3 on a three-server NATS cluster (5 on five); a publish is acknowledged once a majority stored it")
	fs.DurationVar(&o.brokerTimeout, "broker-timeout", time.Second, "bound on each round trip to NATS (cluster): while NATS is unreachable or silent, subscribes and publishes fail within it")
	fs.IntVar(&o.maxChannels, "max-channels", 1_000_000, "channels this node holds at once (with subscribers here, or with history in the memory broker); subscribes and publishes that would create one more are refused; 0 means no limit")
	fs.DurationVar(&o.idempotencyWindow, "idempotency-window", 2*time.Minute, "how long an Idempotency-Key is remembered: a retry within it returns the first publish's offset")
	fs.IntVar(&o.workers, "workers", 16, "goroutines running broker calls that may block (cluster subscribes, history reads, client publishes)")
	fs.IntVar(&o.workQueue, "work-queue", 65536, "broker calls waiting for a worker past which subscribes and client publishes are refused as unavailable")
	fs.Var(&o.memoryLimit, "memory-limit", "soft memory limit of the Go runtime (GOMEMLIMIT), e.g. 4GiB; 0 leaves the runtime's default")
	o.apiFlags(fs)
	o.overloadFlags(fs)
	o.presenceFlags(fs)
	o.tokenFlags(fs)
	return fs, o
}

func (o *apiOptions) apiFlags(fs *flag.FlagSet) {
	fs.Var(&o.apiMaxBody, "api-max-body", "largest POST /api/publish body; bigger ones get 413")
	fs.DurationVar(&o.apiReadTimeout, "api-read-timeout", 10*time.Second, "time an API client has to send a request's headers and body")
	fs.DurationVar(&o.apiWriteTimeout, "api-write-timeout", 15*time.Second, "time from the end of an API request's headers to the end of its answer")
	fs.DurationVar(&o.apiIdleTimeout, "api-idle-timeout", 60*time.Second, "close an API keep-alive connection idle this long")
	fs.IntVar(&o.apiMaxInflight, "api-max-inflight", 1024, "API requests served at once past which the API answers 503 with Retry-After: 1 (/healthz, /readyz and /metrics have their own budget of 64)")
	fs.IntVar(&o.maxPublishChannels, "max-publish-channels", 1000, `channels one POST /api/publish may name in "channels", and publications in one POST /api/batch (400 past it)`)
	fs.DurationVar(&o.publishTimeout, "publish-timeout", 5*time.Second, "the broker's deadline to confirm a publish, per channel (API) and per client publish; past it the outcome is unknown (504)")
}

// validate checks the parsed values; src names where each came from. It
// returns one error per bad flag, each naming only that flag, joined.
func (o *serveOptions) validate(src sources) error {
	var errs []error
	bad := func(name, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s "+format, append([]any{src.of(name)}, a...)...))
	}
	if err := checkHostPort(src.of("addr"), o.addr); err != nil {
		errs = append(errs, err)
	}
	if o.apiAddr != "" {
		if err := checkHostPort(src.of("api-addr"), o.apiAddr); err != nil {
			errs = append(errs, err)
		} else if o.apiKey == "" && !loopbackAddr(o.apiAddr) {
			bad("api-addr", "%s is not a loopback address: set -api-key as well, or anyone who can reach it may publish", o.apiAddr)
		}
	}
	if o.loops < 0 {
		bad("loops", "must be 0 (GOMAXPROCS) or more, not %d", o.loops)
	}
	if o.maxConns < 0 {
		bad("max-conns", "must be 0 (no limit) or more, not %d", o.maxConns)
	}
	if o.maxMessageSize <= 0 {
		bad("max-message-size", "must be more than 0")
	}
	if o.handshakeTimeout <= 0 {
		bad("handshake-timeout", "must be more than 0, not %v", o.handshakeTimeout)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"idle-timeout", o.idleTimeout}, {"ping-interval", o.pingInterval}, {"shutdown-grace", o.shutdownGrace}, {"history-ttl", o.historyTTL}} {
		if d.v < 0 {
			bad(d.name, "must not be negative, not %v", d.v)
		}
	}
	if o.idleTimeout > 0 && o.pingInterval >= o.idleTimeout {
		bad("ping-interval", "(%v) must be shorter than -idle-timeout (%v), or clients that only listen are dropped as idle", o.pingInterval, o.idleTimeout)
	}
	if o.writeBufferLimit <= 0 {
		bad("write-buffer-limit", "must be more than 0")
	}
	if o.maxInboundBuffer < 0 {
		bad("max-inbound-buffer", "must be 0 (no limit) or more")
	}
	if o.maxChannelsPerConn < 0 {
		bad("max-channels-per-conn", "must be 0 (no limit) or more, not %d", o.maxChannelsPerConn)
	}
	if o.historySize < 0 {
		bad("history-size", "must be 0 (no history) or more, not %d", o.historySize)
	}
	if o.publishRate < 0 {
		bad("publish-rate", "must be 0 (no limit) or more, not %v", o.publishRate)
	}
	if o.broker != "memory" && !strings.HasPrefix(o.broker, "nats://") {
		bad("broker", "must be memory or nats://host:port[,...], not %q", o.broker)
	}
	if o.natsReplicas != 1 && o.natsReplicas != 3 && o.natsReplicas != 5 {
		bad("nats-replicas", "must be 1, 3 or 5 (a majority must store each publish, so an even count adds no availability), not %d", o.natsReplicas)
	}
	if o.brokerTimeout <= 0 {
		bad("broker-timeout", "must be more than 0, not %v", o.brokerTimeout)
	}
	if o.maxChannels < 0 {
		bad("max-channels", "must be 0 (no limit) or more, not %d", o.maxChannels)
	}
	if o.idempotencyWindow < 0 {
		bad("idempotency-window", "must not be negative, not %v", o.idempotencyWindow)
	}
	if o.workers < 1 {
		bad("workers", "must be at least 1, not %d", o.workers)
	}
	if o.workQueue < 1 {
		bad("work-queue", "must be at least 1, not %d", o.workQueue)
	}
	o.validateAPI(bad)
	o.validateOverload(bad, o.apiWriteTimeout)
	if p, isBad := o.badPresencePattern(); isBad {
		bad("presence-channels", "pattern %q is not a channel name, optionally ending in '*'", p)
	}
	o.validateTokens(bad)
	return errors.Join(errs...)
}

// validateAPI checks the API flags, reporting each bad one through bad.
func (o *apiOptions) validateAPI(bad func(name, format string, a ...any)) {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"api-read-timeout", o.apiReadTimeout}, {"api-write-timeout", o.apiWriteTimeout}, {"api-idle-timeout", o.apiIdleTimeout}, {"publish-timeout", o.publishTimeout}} {
		if d.v <= 0 {
			bad(d.name, "must be more than 0, not %v", d.v)
		}
	}
	if o.apiMaxBody <= 0 {
		bad("api-max-body", "must be more than 0")
	}
	if o.apiMaxInflight < 1 {
		bad("api-max-inflight", "must be at least 1, not %d", o.apiMaxInflight)
	}
	if o.maxPublishChannels < 1 {
		bad("max-publish-channels", "must be at least 1, not %d", o.maxPublishChannels)
	}
	if o.publishTimeout > 0 && o.apiWriteTimeout > 0 && o.publishTimeout >= o.apiWriteTimeout {
		bad("publish-timeout", "(%v) must be shorter than -api-write-timeout (%v), or a publish could not be answered", o.publishTimeout, o.apiWriteTimeout)
	}
}

// loopbackAddr reports whether addr (host:port) listens on loopback only.
func loopbackAddr(addr string) bool {
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

// printErrors prints err, one line per joined error, each prefixed.
func printErrors(w io.Writer, prefix string, err error) {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			printErrors(w, prefix, e)
		}
		return
	}
	fmt.Fprintln(w, prefix, err)
}

func (o *serveOptions) nodeOptions(log *slog.Logger) server.Options {
	return server.Options{
		Engine:             o.engineConfig(log),
		Echo:               o.echo,
		APIAddr:            o.apiAddr,
		APIKey:             o.apiKey,
		TokenSecret:        o.tokenSecret,
		Tokens:             o.tokens(),
		ClientPublish:      o.clientPublish,
		MaxChannelsPerConn: o.maxChannelsPerConn,
		PublishRate:        o.publishRate,
		HistorySize:        o.historySize,
		HistoryTTL:         o.historyTTL,
		MaxChannels:        o.maxChannels,
		IdempotencyWindow:  o.idempotencyWindow,
		Workers:            o.workers,
		WorkQueue:          o.workQueue,
		HTTPExtra:          webHandlers(),
		APIMaxBody:         int64(o.apiMaxBody),
		APIReadTimeout:     o.apiReadTimeout,
		APIWriteTimeout:    o.apiWriteTimeout,
		APIIdleTimeout:     o.apiIdleTimeout,
		APIMaxInflight:     o.apiMaxInflight,
		MaxPublishChannels: o.maxPublishChannels,
		PublishTimeout:     o.publishTimeout,
		InboxPublications:  o.inboxPublications,
		InboxBytes:         int(o.inboxBytes),
		OverloadWait:       o.overloadWait,
		ConflateChannels:   o.conflateChannels,
		PresenceChannels:   o.presenceChannels,
		PresenceJoinLeave:  o.presenceJoinLeave,
		Logger:             log,
	}
}

func (o *serveOptions) engineConfig(log *slog.Logger) engine.Config {
	return engine.Config{
		Addr:          o.addr,
		Loops:         o.loops,
		MaxConns:      o.maxConns,
		ReusePort:     o.reusePort,
		TCPNoDelay:    o.tcpNoDelay,
		UpgradeRate:   o.upgradeRate,
		MaxConnsPerIP: o.maxConnsPerIP,
		Logger:        log,
		Session: session.Config{
			AllowedOrigins:     o.allowedOrigins,
			MaxMessageSize:     int64(o.maxMessageSize),
			WriteBufferLimit:   int(o.writeBufferLimit),
			MaxInboundBuffer:   int64(o.maxInboundBuffer),
			Compression:        o.compression,
			CompressionMinSize: int(o.compressionMinSize),
			HandshakeTimeout:   o.handshakeTimeout,
			IdleTimeout:        o.idleTimeout,
			PingInterval:       o.pingInterval,
		},
	}
}

func runServe(args []string) int {
	fs, o := newServeFlags()
	src, err := parseFlags(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "herald serve:", err)
		return 2
	}
	if err := o.validate(src); err != nil {
		printErrors(os.Stderr, "herald serve:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: o.logLevel}))
	slog.SetDefault(log)
	raiseOpenFilesLimit(log)
	if o.memoryLimit > 0 {
		debug.SetMemoryLimit(int64(o.memoryLimit))
		log.Info("memory limit", "bytes", int64(o.memoryLimit))
	}

	nopts := o.nodeOptions(log)
	if o.broker != "memory" {
		b, err := newClusterBroker(o, log)
		if err != nil {
			fmt.Fprintf(os.Stderr, "herald serve: -broker %s: %v\n", o.broker, err)
			return 1
		}
		nopts.Broker = b
	}
	srv, err := server.New(nopts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "herald serve:", err)
		return 2
	}
	if err := srv.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "herald serve:", err)
		return 1
	}
	apiAddr := ""
	if a := srv.APIAddr(); a != nil {
		apiAddr = a.String()
	}
	log.Info("herald listening", "addr", srv.Addr().String(), "api", apiAddr, "broker", o.broker,
		"auth", o.tokenAuth(), "echo", o.echo, "version", versionString())

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	sig := <-sigs
	log.Info("shutting down", "signal", sig.String(), "conns", srv.Engine().Conns(), "grace", o.shutdownGrace)
	sctx, cancel := context.WithTimeout(context.Background(), o.shutdownGrace+5*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(sctx, o.shutdownGrace) }()
	select {
	case err := <-done:
		if err != nil {
			log.Error("shutdown", "err", err)
			return 1
		}
		log.Info("stopped")
		return 0
	case sig := <-sigs:
		// A second signal: the operator wants out now. Clients not yet
		// told get no close frame; exit 1 says the drain was cut short.
		log.Warn("second signal: stopping without finishing the drain", "signal", sig.String(), "conns", srv.Engine().Conns())
		srv.Stop()
		return 1
	}
}

// raiseOpenFilesLimit lifts the soft RLIMIT_NOFILE to the hard limit, since
// every connection is a file descriptor. The hard limit is the operator's
// (systemd LimitNOFILE=, ulimit -Hn).
func raiseOpenFilesLimit(log *slog.Logger) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		log.Warn("getrlimit NOFILE", "err", err)
		return
	}
	soft := lim.Cur
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			log.Warn("raise NOFILE soft limit", "soft", soft, "hard", lim.Max, "err", err)
			return
		}
	}
	log.Info("open files limit", "soft_before", soft, "soft", lim.Cur, "hard", lim.Max)
}
