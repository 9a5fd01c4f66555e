package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/herald-ws/herald/loadtest"
)

func runLoadtest(args []string) int {
	var (
		cfg       loadtest.Config
		sourceIPs string
		out       string
	)
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.StringVar(&cfg.Scenario, "scenario", "echo", "connect, echo or push")
	fs.StringVar(&cfg.URL, "url", "ws://127.0.0.1:8080/echo", "WebSocket URL to load")
	fs.IntVar(&cfg.Conns, "conns", 100, "connections to open")
	fs.IntVar(&cfg.Rate, "rate", 0, "connections opened per second; 0 means as fast as possible")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long to hold (connect) or drive (echo) once connected")
	fs.IntVar(&cfg.Size, "size", 64, "echo: message size in bytes (>= 8)")
	fs.IntVar(&cfg.InFlight, "inflight", 1, "echo: messages in flight per connection")
	fs.StringVar(&sourceIPs, "source-ips", "", "spread connections over these local addresses, e.g. 127.0.0.2-127.0.0.254")
	fs.IntVar(&cfg.ServerPID, "server-pid", 0, "sample this process's RSS and CPU time from /proc")
	fs.DurationVar(&cfg.Settle, "settle", 2*time.Second, "connect: wait this long after the last connection before sampling server memory")
	fs.StringVar(&out, "out", "", "write every figure as JSON to this file")
	fs.StringVar(&cfg.Push.APIURL, "api-url", "", "push: the server's API base URL (default: the -url host with port+1)")
	fs.StringVar(&cfg.Push.APIKey, "api-key", "", "push: bearer key for /api/publish")
	fs.IntVar(&cfg.Push.Channels, "channels", 1, "push: spread subscribers over this many channels")
	fs.Float64Var(&cfg.Push.Rate, "pub-rate", 5, "push: publications per second through the API")
	fs.StringVar(&cfg.Push.Prefix, "channel-prefix", "load", "push: channel names are <prefix>-<n>")
	fs.IntVar(&cfg.Push.Loops, "client-loops", 2, "push: event loops of the generator's own client")
	fs.StringVar(&cfg.Push.BroadcastURL, "broadcast-url", "", "push against a reference server: POST raw publications here instead of the Herald API, no subscribe")
	if err := parseFlags(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "herald loadtest:", err)
		return 2
	}
	if sourceIPs != "" {
		ips, err := loadtest.ParseIPRange(sourceIPs)
		if err != nil {
			fmt.Fprintln(os.Stderr, "herald loadtest:", err)
			return 2
		}
		cfg.SourceIPs = ips
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	res, err := loadtest.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "herald loadtest:", err)
		return 2
	}
	res.WriteTable(os.Stdout)
	if out != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "herald loadtest:", err)
			return 1
		}
	}
	if res.Failures > 0 || len(res.Errors) > 0 {
		return 1
	}
	return 0
}
