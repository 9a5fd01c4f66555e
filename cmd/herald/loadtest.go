package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/herald-ws/herald/loadtest"
)

// deadlineGrace is how long past a run's hard deadline the process waits
// for the run to give up by itself before it exits anyway.
const deadlineGrace = 15 * time.Second

// Exit codes of herald loadtest.
const (
	exitOK       = 0
	exitFailed   = 1 // failures, errors or a threshold that did not hold
	exitUsage    = 2 // bad flags, or the run could not start
	exitDeadline = 3 // the hard deadline passed
)

func runLoadtest(args []string) int {
	if len(args) == 1 && args[0] == loadtest.WorkerFlag {
		return runLoadtestWorker()
	}
	var (
		cfg       loadtest.Config
		sourceIPs string
		out       string
		assert    string
	)
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.StringVar(&cfg.Scenario, "scenario", "echo", "connect, echo, push or churn")
	fs.StringVar(&cfg.URL, "url", "ws://127.0.0.1:8080/echo", "WebSocket URL to load (ws:// or wss://); a comma-separated list spreads connections over several servers or cluster nodes round-robin")
	fs.IntVar(&cfg.Conns, "conns", 100, "connections to open (churn: to keep open)")
	fs.IntVar(&cfg.Rate, "rate", 0, "connections opened per second; 0 means as fast as possible")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long to hold (connect) or drive (echo, push, churn) once connected; past this plus set-up and drain margins the run gives up and exits 3")
	fs.IntVar(&cfg.Size, "size", 64, "echo: message size in bytes (>= 8)")
	fs.IntVar(&cfg.InFlight, "inflight", 1, "echo: messages in flight per connection")
	fs.StringVar(&sourceIPs, "source-ips", "", "spread connections over these local addresses, e.g. 127.0.0.2-127.0.0.254 (with -procs, each process gets its own part of them)")
	fs.IntVar(&cfg.ServerPID, "server-pid", 0, "sample this process's RSS and CPU time from /proc")
	fs.DurationVar(&cfg.Settle, "settle", 2*time.Second, "connect: wait this long after the last connection before sampling server memory")
	fs.StringVar(&out, "out", "", "write every figure as JSON to this file")
	fs.StringVar(&cfg.Push.APIURL, "api-url", "", "push, churn: the server's API base URL, or a comma-separated list used round-robin per publication (default: every ws:// -url host with port+1, every wss:// -url as https:// on the same port)")
	fs.StringVar(&cfg.Push.APIKey, "api-key", "", "push, churn: bearer key for /api/publish")
	cfg.RegisterTLSFlags(fs)
	fs.IntVar(&cfg.Push.Channels, "channels", 1, "push, churn: spread subscribers over this many channels")
	fs.Float64Var(&cfg.Push.Rate, "pub-rate", 5, "push, churn: publications per second through the API (churn: 0 publishes nothing)")
	fs.StringVar(&cfg.Push.Prefix, "channel-prefix", "load", "push, churn: channel names are <prefix>-<n>")
	fs.IntVar(&cfg.Push.Loops, "client-loops", 2, "push, churn: event loops of the generator's own client")
	fs.StringVar(&cfg.Push.Transport, "transport", "ws", "push: what subscribers use: ws, sse (Server-Sent Events on /sse) or poll (long polling on /poll)")
	fs.IntVar(&cfg.Push.Concurrency, "pub-concurrency", 64, "push, churn: publish calls in flight at once")
	fs.IntVar(&cfg.Push.Batch, "pub-batch", 1, "push, churn: send publications in POST /api/batch calls of this many (consecutive publications, over different channels) instead of one POST /api/publish each")
	fs.DurationVar(&cfg.Push.Drain, "drain", time.Second, "push, churn: keep counting deliveries this long after the last publication; what has not arrived by then counts as lost")
	fs.StringVar(&cfg.Push.BroadcastURL, "broadcast-url", "", "push against a reference server: POST raw publications here instead of the Herald API, no subscribe")
	fs.Float64Var(&cfg.Churn.Rate, "churn-rate", 100, "churn: connections closed and opened per second")
	fs.Float64Var(&cfg.Churn.Stable, "churn-stable", 0.5, "churn: fraction of -conns never churned; their deliveries are measured")
	fs.IntVar(&cfg.Procs, "procs", 1, "run the connections in this many worker processes and merge their figures (each process may hold up to its open-file limit)")
	fs.StringVar(&assert, "assert", "", "comma-separated thresholds, e.g. 'p99<50ms,errors=0,lost=0,rss_per_conn<1KiB'; exit 1 unless all hold. "+
		"Operators < <= > >= = !=; latencies take us, ms or s, sizes B, KiB or MiB, counts plain numbers. "+
		"p50..max are the scenario's main latency (connect time, echo round trip, push delivery). Metrics: "+loadtest.ThresholdMetrics())
	if _, err := parseFlags(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintln(os.Stderr, "herald loadtest:", err)
		return exitUsage
	}
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "herald loadtest:", strings.TrimPrefix(err.Error(), "loadtest: "))
		return exitUsage
	}
	if sourceIPs != "" {
		ips, err := loadtest.ParseIPRange(sourceIPs)
		if err != nil {
			return fail(err)
		}
		cfg.SourceIPs = ips
	}
	thresholds, err := loadtest.ParseThresholds(assert)
	if err != nil {
		return fail(err)
	}
	// -out is opened now, so that a path that cannot be written fails
	// before the run rather than after it; it is emptied only when the
	// result is written.
	var outFile *os.File
	if out != "" {
		_, statErr := os.Stat(out)
		f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE, 0o644)
		if err != nil {
			return fail(fmt.Errorf("-out: %w", err))
		}
		outFile = f
		defer outFile.Close()
		if os.IsNotExist(statErr) {
			created := out
			defer func() {
				if outFile != nil { // never written: do not leave an empty file behind
					_ = os.Remove(created)
				}
			}()
		}
	}
	if term.IsTerminal(int(os.Stderr.Fd())) {
		cfg.Progress = os.Stderr
	}

	hard := cfg.HardDeadline()
	watchdog := time.AfterFunc(hard+deadlineGrace, func() {
		fmt.Fprintf(os.Stderr, "herald loadtest: the run's hard deadline (%v) passed and it did not stop; exiting\n", hard.Round(time.Second))
		os.Exit(exitDeadline)
	})
	defer watchdog.Stop()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	res, err := loadtest.Run(ctx, cfg)
	if errors.Is(err, loadtest.ErrDeadline) {
		fmt.Fprintln(os.Stderr, "herald loadtest:", err)
		return exitDeadline
	}
	if err != nil && res == nil {
		return fail(err)
	}
	res.Version = versionString()
	if res.Params != nil {
		for _, t := range thresholds {
			res.Params.Thresholds = append(res.Params.Thresholds, t.Text)
		}
	}
	reasons := res.Verdict(thresholds)
	res.WriteTable(os.Stdout)
	if outFile != nil {
		b, _ := json.MarshalIndent(res, "", "  ")
		werr := outFile.Truncate(0)
		if werr == nil {
			_, werr = outFile.WriteAt(append(b, '\n'), 0)
		}
		if werr == nil {
			werr = outFile.Close()
		}
		outFile = nil
		if werr != nil {
			fmt.Fprintln(os.Stderr, "herald loadtest: -out:", werr)
			return exitFailed
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "herald loadtest:", err)
		return exitFailed
	}
	for _, r := range reasons {
		fmt.Fprintln(os.Stderr, "herald loadtest: FAIL:", r)
	}
	if len(reasons) > 0 {
		return exitFailed
	}
	return exitOK
}

// runLoadtestWorker is one worker process of `herald loadtest -procs N`:
// its assignment and commands arrive on stdin, its reports leave on
// stdout.
func runLoadtestWorker() int {
	report, err := loadtest.WorkerStdout()
	if err != nil {
		fmt.Fprintln(os.Stderr, "herald loadtest worker:", err)
		return exitUsage
	}
	in := bufio.NewReader(os.Stdin)
	a, err := loadtest.ReadAssignment(in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "herald loadtest worker:", err)
		return exitUsage
	}
	watchdog := time.AfterFunc(time.Until(a.Deadline)+deadlineGrace, func() {
		fmt.Fprintln(os.Stderr, "herald loadtest worker: the run's hard deadline passed; exiting")
		os.Exit(exitDeadline)
	})
	defer watchdog.Stop()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	switch err := a.Serve(ctx, in, report); {
	case err == nil:
	case errors.Is(err, loadtest.ErrParentGone):
		return exitFailed // the parent, if alive, said why
	case errors.Is(err, loadtest.ErrDeadline):
		fmt.Fprintln(os.Stderr, "herald loadtest worker:", err)
		return exitDeadline
	default:
		fmt.Fprintln(os.Stderr, "herald loadtest worker:", err)
		return exitFailed
	}
	return exitOK
}
