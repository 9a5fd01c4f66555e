package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
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
}

func newServeFlags() (*flag.FlagSet, *serveOptions) {
	o := &serveOptions{
		maxMessageSize:     1 << 20,
		writeBufferLimit:   1 << 20,
		maxInboundBuffer:   256 << 20,
		compressionMinSize: 512,
	}
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
	return fs, o
}

func (o *serveOptions) validate() error {
	switch {
	case o.loops < 0:
		return errors.New("-loops must be >= 0")
	case o.maxConns < 0:
		return errors.New("-max-conns must be >= 0")
	case o.maxMessageSize <= 0:
		return errors.New("-max-message-size must be > 0")
	case o.handshakeTimeout <= 0:
		return errors.New("-handshake-timeout must be > 0")
	case o.idleTimeout < 0 || o.pingInterval < 0 || o.shutdownGrace < 0:
		return errors.New("durations must not be negative")
	case o.idleTimeout > 0 && o.pingInterval >= o.idleTimeout:
		return errors.New("-ping-interval must be shorter than -idle-timeout, or clients that only listen are dropped as idle")
	case o.writeBufferLimit <= 0:
		return errors.New("-write-buffer-limit must be > 0")
	case o.maxInboundBuffer < 0:
		return errors.New("-max-inbound-buffer must be >= 0")
	case o.maxChannelsPerConn < 0 || o.historySize < 0 || o.publishRate < 0 || o.historyTTL < 0:
		return errors.New("-max-channels-per-conn, -history-size, -history-ttl and -publish-rate must not be negative")
	case o.broker != "memory" && !strings.HasPrefix(o.broker, "nats://"):
		return fmt.Errorf("-broker must be memory or nats://host:port[,...], not %q", o.broker)
	}
	return nil
}

func (o *serveOptions) nodeOptions(log *slog.Logger) server.Options {
	return server.Options{
		Engine:             o.engineConfig(log),
		Echo:               o.echo,
		APIAddr:            o.apiAddr,
		APIKey:             o.apiKey,
		TokenSecret:        o.tokenSecret,
		ClientPublish:      o.clientPublish,
		MaxChannelsPerConn: o.maxChannelsPerConn,
		PublishRate:        o.publishRate,
		HistorySize:        o.historySize,
		HistoryTTL:         o.historyTTL,
		HTTPExtra:          webHandlers(),
		Logger:             log,
	}
}

func (o *serveOptions) engineConfig(log *slog.Logger) engine.Config {
	return engine.Config{
		Addr:       o.addr,
		Loops:      o.loops,
		MaxConns:   o.maxConns,
		ReusePort:  o.reusePort,
		TCPNoDelay: o.tcpNoDelay,
		Logger:     log,
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
	if err := parseFlags(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "herald serve:", err)
		return 2
	}
	if err := o.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "herald serve:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: o.logLevel}))
	slog.SetDefault(log)
	raiseOpenFilesLimit(log)

	nopts := o.nodeOptions(log)
	if o.broker != "memory" {
		b, err := newClusterBroker(o, log)
		if err != nil {
			log.Error("broker", "broker", o.broker, "err", err)
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
		log.Error("start", "err", err)
		return 1
	}
	apiAddr := ""
	if a := srv.APIAddr(); a != nil {
		apiAddr = a.String()
	}
	log.Info("herald listening", "addr", srv.Addr().String(), "api", apiAddr, "broker", o.broker,
		"auth", o.tokenSecret != "", "echo", o.echo, "version", versionString())

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
