// Package testutil starts real Herald servers for tests: on 127.0.0.1 port
// 0, with the echo route, stopped when the test ends.
package testutil

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/herald-ws/herald/engine"
	"github.com/herald-ws/herald/session"
)

// Options are the settings tests usually vary; zero values take test
// defaults (2 loops, 16 MiB messages, 64 MiB write-buffer limit, 5 s
// handshake timeout, no idle timeout or pings).
type Options struct {
	Loops              int
	MaxConns           int
	UpgradeRate        float64
	MaxConnsPerIP      int
	MaxMessageSize     int64
	WriteBufferLimit   int
	MaxInboundBuffer   int64 // 0: no server-wide inbound budget
	Compression        bool
	CompressionMinSize int
	HandshakeTimeout   time.Duration
	IdleTimeout        time.Duration
	PingInterval       time.Duration
	CloseTimeout       time.Duration
	AllowedOrigins     []string
	// Routes replaces the default {"/echo": session.Echo{}}.
	Routes map[string]session.Handler
	// Logger defaults to a logger that discards everything.
	Logger *slog.Logger
}

// Config turns o into an engine.Config listening on 127.0.0.1:0.
func (o Options) Config() engine.Config {
	if o.Loops == 0 {
		o.Loops = 2
	}
	if o.MaxMessageSize == 0 {
		o.MaxMessageSize = 16 << 20
	}
	if o.WriteBufferLimit == 0 {
		o.WriteBufferLimit = 64 << 20
	}
	if o.HandshakeTimeout == 0 {
		o.HandshakeTimeout = 5 * time.Second
	}
	if o.Routes == nil {
		o.Routes = map[string]session.Handler{"/echo": session.Echo{}}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return engine.Config{
		Addr:          "127.0.0.1:0",
		Loops:         o.Loops,
		MaxConns:      o.MaxConns,
		UpgradeRate:   o.UpgradeRate,
		MaxConnsPerIP: o.MaxConnsPerIP,
		TCPNoDelay:    true,
		Logger:        o.Logger,
		Session: session.Config{
			Routes:             o.Routes,
			AllowedOrigins:     o.AllowedOrigins,
			MaxMessageSize:     o.MaxMessageSize,
			WriteBufferLimit:   o.WriteBufferLimit,
			MaxInboundBuffer:   o.MaxInboundBuffer,
			Compression:        o.Compression,
			CompressionMinSize: o.CompressionMinSize,
			HandshakeTimeout:   o.HandshakeTimeout,
			IdleTimeout:        o.IdleTimeout,
			PingInterval:       o.PingInterval,
			CloseTimeout:       o.CloseTimeout,
		},
	}
}

// Start runs a server with o and stops it (without the close handshake)
// when the test ends.
func Start(tb testing.TB, o Options) *engine.Server {
	tb.Helper()
	srv, err := engine.New(o.Config())
	if err != nil {
		tb.Fatalf("engine.New: %v", err)
	}
	if err := srv.Start(); err != nil {
		tb.Fatalf("start: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Stop(ctx)
	})
	return srv
}

// URL returns ws://addr/path for srv.
func URL(srv *engine.Server, path string) string {
	return "ws://" + srv.Addr().String() + path
}
