// Command peerbench runs Herald and its peers (nbio, gorilla/websocket,
// coder/websocket, gobwas/ws), the floor reference (one raw write(2) per
// message per socket) and Herald at a baseline revision, one server at a
// time, through the same loadtest scenarios (single broadcasts, and a
// sustained fan-out at 5 to 100 publications per second), repeats every measurement, and writes the medians
// and ratios to benchmarks/RESULTS.md, with PNG charts (memory per
// connection, echo and broadcast latency percentiles per server) in
// benchmarks/charts that the report shows. It also measures what a channel
// costs Herald (channels.go: RSS and heap per idle subscription to a
// distinct channel, and per channel holding one message), which the peers,
// having no channels, cannot be compared on. `make bench-peers` runs it;
// -from-json re-renders the report and charts from the raw results of an
// earlier run without running anything.
//
// Each measurement starts a fresh server process, so one scenario's garbage
// never counts against the next, and the repeats are interleaved across
// servers so that a noisy moment on a shared machine hits all of them.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/herald-ws/herald/loadtest"
)

// server is one implementation under test.
type server struct {
	Name string
	Bin  string
	Args func(addr, apiAddr string) []string
	Path string
	// Herald publishes through its API; peers through POST /broadcast.
	Herald bool
	// Cluster runs three Herald nodes on an embedded NATS server.
	Cluster bool
	// OnlyOwn: only the scenarios naming this server in Only run on it
	// (herald-ws: Herald with its default flags on /ws, for the idle
	// memory headline).
	OnlyOwn bool
	// Runs, when set, picks the scenarios (among those open to every
	// server) this one runs: the floor only broadcasts, the baseline
	// build only runs the sustained fan-out.
	Runs func(scenario) bool
}

// scenario is one measurement and how to read its figure of merit.
type scenario struct {
	Name   string
	Config loadtest.Config
	Metric string // key in the metrics map
	Unit   string
	Lower  bool   // lower is better
	Only   string // comma-separated: run against these servers only (Herald-only figures)
	// Sustained: a sustained fan-out, where a server that falls behind
	// is measured (its lost deliveries and publish errors reported), not
	// discarded.
	Sustained bool
	// Channels, when set, makes this a channel-memory measurement
	// (channels.go) instead of a loadtest run; Config is unused.
	Channels *channelLoad
}

type measurement map[string]float64

// runsOn reports whether sc is measured on s: Herald-only scenarios on
// their one server, the others on every single-process server.
func (sc scenario) runsOn(s server) bool {
	if sc.Only != "" || s.OnlyOwn {
		return strings.Contains(","+sc.Only+",", ","+s.Name+",")
	}
	if s.Runs != nil && !s.Runs(sc) {
		return false
	}
	return !s.Cluster
}

// broadcasts is the floor's Runs: push scenarios only (it does not echo).
func broadcasts(sc scenario) bool { return sc.Config.Scenario == "push" }

// sustained is the baseline build's Runs.
func sustained(sc scenario) bool { return sc.Sustained }

func main() {
	var (
		repeats = flag.Int("repeats", 3, "repeats of every measurement; medians are reported")
		outDir  = flag.String("out", "benchmarks/out", "directory for binaries and raw JSON results")
		results = flag.String("results", "benchmarks/RESULTS.md", "markdown report to write")
		only    = flag.String("servers", "herald,herald-ws,floor,herald-base,nbio,gorilla,coder,gobwas,herald-cluster", "servers to run")
		base    = flag.String("baseline", "849177d", "git revision built as herald-base (Herald before coalesced delivery) for the sustained fan-out's CPU-per-delivery target")
		scen    = flag.String("scenarios", "", "comma-separated scenario names to run (default all)")
		srcIPs  = flag.String("source-ips", "127.0.0.2-127.0.0.254", "client source addresses")
		charts  = flag.String("charts", "", "directory for the PNG charts the report shows (default: charts/ beside -results)")
		rerun   = flag.Bool("from-json", false, "run nothing: render the report and charts from the raw JSON results already in -out")
		micro   = flag.Bool("micro", true, "also run the codec and fan-out micro-benchmarks and include them")
	)
	flag.Parse()
	log.SetFlags(log.Ltime)
	if *charts == "" {
		*charts = filepath.Join(filepath.Dir(*results), "charts")
	}
	bin := filepath.Join(*outDir, "bin")

	all := []server{
		{"herald", filepath.Join(bin, "herald"), func(a, api string) []string {
			return []string{"serve", "-echo", "-addr", a, "-api-addr", api, "-log-level", "warn", "-ping-interval", "0", "-idle-timeout", "0", "-max-message-size", "16MiB"}
		}, "/echo", true, false, false, nil},
		// Herald as deployed: default flags (heartbeats and the idle
		// timeout on), the push endpoint.
		{"herald-ws", filepath.Join(bin, "herald"), func(a, api string) []string {
			return []string{"serve", "-addr", a, "-api-addr", api, "-log-level", "warn"}
		}, "/ws", true, false, true, nil},
		{"nbio", filepath.Join(bin, "nbio"), peerArgs, "/ws", false, false, false, nil},
		{"gorilla", filepath.Join(bin, "gorilla"), peerArgs, "/ws", false, false, false, nil},
		{"coder", filepath.Join(bin, "coder"), peerArgs, "/ws", false, false, false, nil},
		{"gobwas", filepath.Join(bin, "gobwas"), peerArgs, "/ws", false, false, false, nil},
		{"herald-cluster", filepath.Join(bin, "herald"), nil, "/ws", true, true, false, nil},
		// The floor: one raw write(2) per message per socket, nothing
		// else (benchmarks/peers/floor).
		{"floor", filepath.Join(bin, "floor"), peerArgs, "/ws", false, false, false, broadcasts},
		// Herald at -baseline, for "CPU per delivery at most half of
		// before": built from that revision, same flags as herald.
		{"herald-base", filepath.Join(bin, "herald-base"), func(a, api string) []string {
			return []string{"serve", "-addr", a, "-api-addr", api, "-log-level", "warn", "-ping-interval", "0", "-idle-timeout", "0"}
		}, "/ws", true, false, false, sustained},
	}
	var servers []server
	for _, s := range all {
		if strings.Contains(","+*only+",", ","+s.Name+",") {
			servers = append(servers, s)
		}
	}
	scenarios := []scenario{
		{Name: "idle-10k", Config: loadtest.Config{Scenario: "connect", Conns: 10000, Duration: 4 * time.Second, Settle: 2 * time.Second}, Metric: "rss_per_conn", Unit: "B", Lower: true},
		{Name: "idle-ws-10k", Only: "herald-ws", Config: loadtest.Config{Scenario: "connect", Conns: 10000, Duration: 4 * time.Second, Settle: 2 * time.Second}, Metric: "rss_per_conn", Unit: "B", Lower: true},
		{Name: "idle-19k", Config: loadtest.Config{Scenario: "connect", Conns: 19000, Duration: 4 * time.Second, Settle: 2 * time.Second}, Metric: "rss_per_conn", Unit: "B", Lower: true},
		{Name: "echo-100x64B", Config: loadtest.Config{Scenario: "echo", Conns: 100, Size: 64, InFlight: 8, Duration: 5 * time.Second}, Metric: "cpu_per_msg", Unit: "µs", Lower: true},
		{Name: "echo-1000x1KiB", Config: loadtest.Config{Scenario: "echo", Conns: 1000, Size: 1024, InFlight: 1, Duration: 5 * time.Second}, Metric: "cpu_per_msg", Unit: "µs", Lower: true},
		{Name: "broadcast-10k", Config: loadtest.Config{Scenario: "push", Conns: 10000, Duration: 8 * time.Second, Push: loadtest.PushConfig{Rate: 5}}, Metric: "last_p99_ms", Unit: "ms", Lower: true},
		// The fallback transports' broadcast, beside broadcast-10k on /ws
		// (target: p99 within 1.2 times WebSocket's).
		{Name: "broadcast-sse-10k", Only: "herald", Config: loadtest.Config{Scenario: "push", Conns: 10000, Duration: 8 * time.Second, Push: loadtest.PushConfig{Rate: 5, Transport: loadtest.TransportSSE}}, Metric: "last_p99_ms", Unit: "ms", Lower: true},
		{Name: "broadcast-poll-10k", Only: "herald", Config: loadtest.Config{Scenario: "push", Conns: 10000, Duration: 8 * time.Second, Push: loadtest.PushConfig{Rate: 5, Transport: loadtest.TransportPoll}}, Metric: "last_p99_ms", Unit: "ms", Lower: true},
		{Name: "connect-rate", Config: loadtest.Config{Scenario: "connect", Conns: 5000, Duration: time.Second, Settle: time.Second}, Metric: "connect_rate", Unit: "conns/s", Lower: false},
		{Name: "broadcast-19k", Config: loadtest.Config{Scenario: "push", Conns: 19000, Duration: 8 * time.Second, Push: loadtest.PushConfig{Rate: 5}}, Metric: "last_p99_ms", Unit: "ms", Lower: true, Only: "herald,floor"},
		// Sustained fan-out: 10,000 subscribers, 5 to 100 publications
		// per second for 10 s. Deliveries per second is the figure of
		// merit; p99 to the last subscriber, lost deliveries and refused
		// publishes show where a server falls over.
		{Name: "sustained-5", Sustained: true, Config: loadtest.Config{Scenario: "push", Conns: 10000, Duration: 10 * time.Second, Push: loadtest.PushConfig{Rate: 5}}, Metric: "deliveries_per_s", Unit: "1/s", Lower: false},
		{Name: "sustained-20", Sustained: true, Config: loadtest.Config{Scenario: "push", Conns: 10000, Duration: 10 * time.Second, Push: loadtest.PushConfig{Rate: 20}}, Metric: "deliveries_per_s", Unit: "1/s", Lower: false},
		{Name: "sustained-50", Sustained: true, Config: loadtest.Config{Scenario: "push", Conns: 10000, Duration: 10 * time.Second, Push: loadtest.PushConfig{Rate: 50}}, Metric: "deliveries_per_s", Unit: "1/s", Lower: false},
		{Name: "sustained-100", Sustained: true, Config: loadtest.Config{Scenario: "push", Conns: 10000, Duration: 10 * time.Second, Push: loadtest.PushConfig{Rate: 100}}, Metric: "deliveries_per_s", Unit: "1/s", Lower: false},
		{Name: "cluster-push-30k", Config: loadtest.Config{Scenario: "push", Conns: 30000, Procs: 2, Duration: 10 * time.Second, Push: loadtest.PushConfig{Rate: 5, Channels: 3}}, Metric: "last_p99_ms", Unit: "ms", Lower: true, Only: "herald-cluster"},
		{Name: "channels-subscribed-10k", Channels: &channelLoad{Channels: 10_000, Conns: 100}, Metric: "rss_per_channel", Unit: "B", Lower: true, Only: "herald"},
		{Name: "channels-subscribed-100k", Channels: &channelLoad{Channels: 100_000, Conns: 1000}, Metric: "rss_per_channel", Unit: "B", Lower: true, Only: "herald"},
		{Name: "channels-one-message-10k", Channels: &channelLoad{Channels: 10_000, Size: 100}, Metric: "rss_per_channel", Unit: "B", Lower: true, Only: "herald"},
		{Name: "channels-one-message-100k", Channels: &channelLoad{Channels: 100_000, Size: 100}, Metric: "rss_per_channel", Unit: "B", Lower: true, Only: "herald"},
	}
	partial := *scen != ""
	if partial {
		var err error
		scenarios, err = selectScenarios(scenarios, *scen)
		must(err)
	}

	var data map[string]map[string][]measurement // scenario -> server -> repeats
	if *rerun {
		var err error
		data, *repeats, err = loadResults(*outDir, servers, scenarios)
		must(err)
	} else {
		data = runAll(servers, scenarios, *outDir, *srcIPs, *repeats, *base)
	}
	must(os.MkdirAll(*charts, 0o755))
	cs, err := chartsFor(*charts, servers, scenarios, data)
	must(err)
	rel, err := filepath.Rel(filepath.Dir(*results), *charts)
	must(err)
	report := render(servers, scenarios, data, *repeats, cs, rel, partial)
	report += targets(scenarios, data)
	if *micro {
		report += microBenchmarks()
	}
	must(os.WriteFile(*results, []byte(report), 0o644))
	log.Printf("wrote %s and %d charts in %s", *results, len(cs), *charts)
}

// runAll builds the servers and runs every scenario against each of them
// repeats times, interleaved.
func runAll(servers []server, scenarios []scenario, outDir, srcIPs string, repeats int, baseline string) map[string]map[string][]measurement {
	bin := filepath.Join(outDir, "bin")
	must(os.MkdirAll(bin, 0o755))
	build(bin)
	for _, s := range servers {
		if s.Name == "herald-base" {
			buildRevision(bin, baseline, "herald-base")
		}
	}
	ips, err := loadtest.ParseIPRange(srcIPs)
	must(err)
	data := map[string]map[string][]measurement{}
	for rep := 1; rep <= repeats; rep++ {
		for _, sc := range scenarios {
			for _, s := range servers {
				if !sc.runsOn(s) {
					continue
				}
				m, err := measure(s, sc, ips, outDir, rep)
				if err != nil {
					log.Printf("%s %s #%d: %v", sc.Name, s.Name, rep, err)
					continue
				}
				log.Printf("%s %s #%d: %s=%.2f", sc.Name, s.Name, rep, sc.Metric, m[sc.Metric])
				if data[sc.Name] == nil {
					data[sc.Name] = map[string][]measurement{}
				}
				data[sc.Name][s.Name] = append(data[sc.Name][s.Name], m)
			}
		}
	}
	return data
}

// loadResults reads the raw JSON results a previous run left in outDir
// (<scenario>-<server>-<repeat>.json) and returns them as measurements and
// the highest repeat number seen.
func loadResults(outDir string, servers []server, scenarios []scenario) (map[string]map[string][]measurement, int, error) {
	data := map[string]map[string][]measurement{}
	repeats := 0
	for _, sc := range scenarios {
		for _, s := range servers {
			files, err := filepath.Glob(filepath.Join(outDir, sc.Name+"-"+s.Name+"-*.json"))
			if err != nil {
				return nil, 0, err
			}
			sort.Strings(files)
			for _, f := range files {
				var rep int
				if _, err := fmt.Sscanf(strings.TrimPrefix(filepath.Base(f), sc.Name+"-"+s.Name+"-"), "%d.json", &rep); err != nil {
					continue // another scenario whose name extends this one
				}
				b, err := os.ReadFile(f)
				if err != nil {
					return nil, 0, err
				}
				m, err := decodeResult(sc, b)
				if err != nil {
					log.Printf("%s: %v", f, err)
					continue
				}
				if data[sc.Name] == nil {
					data[sc.Name] = map[string][]measurement{}
				}
				data[sc.Name][s.Name] = append(data[sc.Name][s.Name], m)
				repeats = max(repeats, rep)
			}
		}
	}
	if len(data) == 0 {
		return nil, 0, fmt.Errorf("no results in %s", outDir)
	}
	return data, repeats, nil
}

// decodeResult reads one raw JSON result of sc: a channelResult for the
// channel-memory scenarios, a loadtest.Result for the others.
func decodeResult(sc scenario, b []byte) (measurement, error) {
	if sc.Channels != nil {
		var res channelResult
		if err := json.Unmarshal(b, &res); err != nil {
			return nil, err
		}
		return res.measurement()
	}
	var res loadtest.Result
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, err
	}
	return measurementOf(&res, sc.Sustained)
}

func peerArgs(addr, _ string) []string { return []string{"-addr", addr} }

func build(bin string) {
	abs, err := filepath.Abs(bin)
	must(err)
	run(".", "go", "build", "-o", filepath.Join(abs, "herald"), "./cmd/herald")
	run(".", "go", "build", "-o", filepath.Join(abs, "natsd"), "./benchmarks/natsd")
	for _, p := range []string{"nbio", "gorilla", "coder", "gobwas", "floor"} {
		run("benchmarks/peers", "go", "build", "-o", filepath.Join(abs, p), "./"+p)
	}
}

// buildRevision builds ./cmd/herald as it was at rev (git archive into a
// temporary directory) into bin/name.
func buildRevision(bin, rev, name string) {
	abs, err := filepath.Abs(bin)
	must(err)
	dir, err := os.MkdirTemp("", "herald-"+rev+"-")
	must(err)
	defer os.RemoveAll(dir)
	archive := exec.Command("sh", "-c", "git archive "+rev+" | tar -x -C "+dir)
	archive.Stderr = os.Stderr
	if err := archive.Run(); err != nil {
		log.Fatalf("git archive %s: %v", rev, err)
	}
	run(dir, "go", "build", "-o", filepath.Join(abs, name), "./cmd/herald")
}

func run(dir, name string, args ...string) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		log.Fatalf("%s %v: %v", name, args, err)
	}
}

// selectScenarios keeps the scenarios named in the comma-separated list,
// in the report's order; a name that matches none is an error, so that a
// typo does not silently measure nothing.
func selectScenarios(all []scenario, list string) ([]scenario, error) {
	want := map[string]bool{}
	for _, n := range strings.Split(list, ",") {
		if n = strings.TrimSpace(n); n != "" {
			want[n] = true
		}
	}
	var keep []scenario
	for _, sc := range all {
		if want[sc.Name] {
			keep = append(keep, sc)
			delete(want, sc.Name)
		}
	}
	if len(want) > 0 {
		var unknown []string
		for n := range want {
			unknown = append(unknown, n)
		}
		sort.Strings(unknown)
		return nil, fmt.Errorf("unknown scenarios: %s", strings.Join(unknown, ", "))
	}
	return keep, nil
}

// measure starts s, runs sc against it and stops it.
func measure(s server, sc scenario, ips []net.IP, outDir string, rep int) (measurement, error) {
	if sc.Channels != nil {
		return measureChannels(s, sc, outDir, rep)
	}
	if s.Cluster {
		return measureCluster(s, sc, ips, outDir, rep)
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	apiAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(s.Bin, s.Args(addr, apiAddr)...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
	}()
	if err := waitListening(addr, 10*time.Second); err != nil {
		return nil, err
	}
	time.Sleep(300 * time.Millisecond) // let the runtime finish starting before the baseline sample
	cfg := sc.Config
	cfg.URL = "ws://" + addr + s.Path
	if cfg.Scenario == "push" {
		if s.Herald {
			cfg.URL = "ws://" + addr + "/ws"
			cfg.Push.APIURL = "http://" + apiAddr
		} else {
			cfg.Push.BroadcastURL = "http://" + addr + "/broadcast"
		}
	}
	cfg.ServerPID = cmd.Process.Pid
	cfg.SourceIPs = ips
	return runAndSave(cfg, sc.Sustained, outDir, fmt.Sprintf("%s-%s-%d.json", sc.Name, s.Name, rep))
}

// measurementOf reads the figures the report uses from a run's result; a
// run with failures, errors or lost deliveries measures nothing, except in
// a sustained fan-out, where falling behind (lost deliveries, refused
// publishes) is what is measured; connection failures and duplicates
// still void it.
func measurementOf(res *loadtest.Result, sustained bool) (measurement, error) {
	if res.Failures > 0 || (len(res.Errors) > 0 && !sustained) {
		return nil, fmt.Errorf("%d failures: %v", res.Failures, res.Errors)
	}
	if sustained && res.Push != nil {
		p := res.Push
		if p.Duplicates > 0 {
			return nil, fmt.Errorf("%d duplicated deliveries", p.Duplicates)
		}
		m := measurement{
			"deliveries_per_s": res.MsgsPerSec,
			"last_p50_ms":      p.LastDelivery.P50 / 1000,
			"last_p90_ms":      p.LastDelivery.P90 / 1000,
			"last_p99_ms":      p.LastDelivery.P99 / 1000,
			"last_max_ms":      p.LastDelivery.Max / 1000,
			"lost":             float64(p.Lost),
			"publish_errors":   float64(p.PublishErrs),
			"publications":     float64(p.Publications),
		}
		if p.Expected > 0 {
			m["lost_pct"] = 100 * float64(p.Lost) / float64(p.Expected)
		}
		if res.Server != nil {
			m["cpu_per_delivery"] = res.Server.CPUPerMessage
			m["rss_mib"] = float64(res.Server.RSSAfter) / (1 << 20)
		}
		return m, nil
	}
	m := measurement{"connect_rate": res.ConnectRate}
	if res.Server != nil {
		m["rss_per_conn"] = res.Server.RSSPerConn
		m["cpu_per_msg"] = res.Server.CPUPerMessage
	}
	if p := res.Push; p != nil {
		if p.Lost > 0 || p.Duplicates > 0 {
			return nil, fmt.Errorf("%d lost, %d duplicated deliveries", p.Lost, p.Duplicates)
		}
		m["last_p50_ms"] = p.LastDelivery.P50 / 1000
		m["last_p90_ms"] = p.LastDelivery.P90 / 1000
		m["last_p99_ms"] = p.LastDelivery.P99 / 1000
		m["last_max_ms"] = p.LastDelivery.Max / 1000
		m["delivery_p99_ms"] = p.Latency.P99 / 1000
		m["cpu_per_delivery"] = m["cpu_per_msg"]
	}
	if res.RTT != nil {
		m["msgs_per_s"] = res.MsgsPerSec
		m["rtt_p50_ms"] = res.RTT.P50 / 1000
		m["rtt_p90_ms"] = res.RTT.P90 / 1000
		m["rtt_p99_ms"] = res.RTT.P99 / 1000
		m["rtt_p999_ms"] = res.RTT.P999 / 1000
	}
	return m, nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func waitListening(addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("server not listening on %s after %v", addr, within)
}

func median(ms []measurement, key string) (float64, bool) {
	var v []float64
	for _, m := range ms {
		if x, ok := m[key]; ok {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return 0, false
	}
	sort.Float64s(v)
	if len(v)%2 == 1 {
		return v[len(v)/2], true
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2, true
}

func render(servers []server, scenarios []scenario, data map[string]map[string][]measurement, repeats int, cs []chart, chartDir string, partial bool) string {
	var b strings.Builder
	if partial {
		var names []string
		for _, sc := range scenarios {
			names = append(names, sc.Name)
		}
		fmt.Fprintf(&b, "# Benchmark results (part)\n\nGenerated by benchmarks/peerbench with `-scenarios %s`, a part of what `make bench-peers` runs; do not edit by hand.\n\n", strings.Join(names, ","))
	} else {
		fmt.Fprintf(&b, "# Benchmark results\n\nGenerated by `make bench-peers` (benchmarks/peerbench); do not edit by hand.\n\n")
	}
	fmt.Fprintf(&b, "- Date: %s\n- Machine: %s\n- Go: %s\n- Repeats: %d per measurement, interleaved across servers; figures are medians, ratios are the peer's median over Herald's from the same run.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), machine(), goVersion(), repeats)
	fmt.Fprintf(&b, "Load generator and servers share the machine; server figures come from /proc/PID (RSS, utime+stime), so loopback kernel work done in the server's context is included.\n\n")
	if len(cs) > 0 {
		b.WriteString("## Charts\n\nMedians of the tables below.\n\n")
		for _, c := range cs {
			fmt.Fprintf(&b, "![%s](%s)\n\n", c.Title, filepath.ToSlash(filepath.Join(chartDir, c.File)))
		}
	}
	for _, sc := range scenarios {
		if sc.Channels != nil {
			continue // one section for all of them, below
		}
		fmt.Fprintf(&b, "## %s\n\n%s\n\n", sc.Name, describe(sc))
		floor, haveFloor := median(data[sc.Name]["floor"], sc.Metric)
		if haveFloor {
			fmt.Fprintf(&b, "| server | %s (%s) | vs Herald | vs floor | other medians |\n|---|---:|---:|---:|---|\n", sc.Metric, sc.Unit)
		} else {
			fmt.Fprintf(&b, "| server | %s (%s) | vs Herald | other medians |\n|---|---:|---:|---|\n", sc.Metric, sc.Unit)
		}
		base, haveBase := median(data[sc.Name]["herald"], sc.Metric)
		for _, s := range servers {
			if !sc.runsOn(s) {
				continue
			}
			ms := data[sc.Name][s.Name]
			v, ok := median(ms, sc.Metric)
			if !ok {
				fmt.Fprintf(&b, "| %s | failed | | |\n", s.Name)
				continue
			}
			ratio := ""
			if haveBase && base > 0 {
				ratio = fmt.Sprintf("%.2fx", v/base)
			}
			if haveFloor {
				if floor > 0 {
					ratio += fmt.Sprintf(" | %.2fx", v/floor)
				} else {
					ratio += " | "
				}
			}
			var extra []string
			for _, k := range []string{"connect_rate", "msgs_per_s", "rtt_p50_ms", "rtt_p99_ms", "last_p50_ms", "last_p99_ms", "last_max_ms", "delivery_p99_ms", "cpu_per_delivery", "lost_pct", "publish_errors", "rss_mib"} {
				if k == sc.Metric {
					continue
				}
				if x, ok := median(ms, k); ok && (x > 0 || (sc.Sustained && (k == "lost_pct" || k == "publish_errors"))) {
					extra = append(extra, fmt.Sprintf("%s %.1f", k, x))
				}
			}
			fmt.Fprintf(&b, "| %s | %.2f | %s | %s |\n", s.Name, v, ratio, strings.Join(extra, ", "))
		}
		b.WriteString("\n")
	}
	b.WriteString(renderChannels(scenarios, data))
	return b.String()
}

func describe(sc scenario) string {
	c := sc.Config
	switch c.Scenario {
	case "connect":
		if sc.Metric == "connect_rate" {
			return fmt.Sprintf("%d connections opened (upgrade included) by 128 concurrent dialers as fast as the server accepts them; higher is better, so a ratio below 1.00x means the peer is slower.", c.Conns)
		}
		return fmt.Sprintf("%d idle connections held; server RSS after %v of settling minus RSS before, divided by connections.", c.Conns, c.Settle)
	case "echo":
		return fmt.Sprintf("%d connections, %d-byte binary messages, %d in flight per connection, %v; server CPU time divided by echoed messages.", c.Conns, c.Size, c.InFlight, c.Duration)
	case "push":
		if sc.Sustained {
			return fmt.Sprintf("Sustained fan-out: %d subscribers of one channel, %.0f publications per second for %v (%.0f deliveries per second offered), Herald through POST /api/publish, peers through POST /broadcast (up to 64 calls in flight). deliveries_per_s counts deliveries that arrived within the run and one second after it; last_p99_ms is the p99 to the last subscriber; lost_pct is the share of acknowledged publications' deliveries that never arrived; publish_errors are refused publishes (Herald: 503 overloaded, nothing stored); cpu_per_delivery is server CPU (µs) per delivery; rss_mib the server's RSS at the end.", c.Conns, c.Push.Rate, c.Duration, c.Push.Rate*float64(c.Conns))
		}
		if sc.Only == "herald-cluster" {
			return fmt.Sprintf("Three Herald nodes on one embedded NATS server (JetStream); %d subscribers spread over the nodes and %d channels, %.0f publications per second for %v, each through a different node's API; the load generator runs as %d processes. last_p99_ms is the p99 over publications of the time from the publish call to delivery at the last subscriber; server CPU is the first node's.", c.Conns, c.Push.Channels, c.Push.Rate, c.Duration, c.Procs)
		}
		return fmt.Sprintf("%d subscribers of one channel, %.0f publications per second for %v (Herald: POST /api/publish; peers: POST /broadcast). last_p99_ms is the p99 over publications of the time from the publish call to delivery at the last subscriber; cpu_per_delivery is server CPU (µs) per delivered message.", c.Conns, c.Push.Rate, c.Duration)
	}
	return ""
}

func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "model name") {
				if _, v, ok := strings.Cut(line, ":"); ok {
					model = strings.TrimSpace(v)
					break
				}
			}
		}
	}
	var u syscall.Utsname
	kernel := ""
	if syscall.Uname(&u) == nil {
		kernel = utsString(u.Release[:])
	}
	return fmt.Sprintf("%d cores (%s), %s RAM, Linux %s", numCPU(), model, memTotal(), kernel)
}

func utsString(a []int8) string {
	var s []byte
	for _, c := range a {
		if c == 0 {
			break
		}
		s = append(s, byte(c))
	}
	return string(s)
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

// measureCluster starts an embedded NATS server and three Herald nodes on
// it, and runs sc across them: connections spread over the nodes, every
// publication through a different node's API, the load generator in two
// processes (one process cannot hold 30,000 sockets here). Server figures
// are the first node's.
func measureCluster(s server, sc scenario, ips []net.IP, outDir string, rep int) (measurement, error) {
	natsAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	_, natsPort, _ := net.SplitHostPort(natsAddr)
	var procs []*exec.Cmd
	defer func() {
		for i := len(procs) - 1; i >= 0; i-- {
			_ = procs[i].Process.Signal(syscall.SIGKILL)
			_ = procs[i].Wait()
		}
	}()
	start := func(bin string, args ...string) (*exec.Cmd, error) {
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		procs = append(procs, cmd)
		return cmd, nil
	}
	if _, err := start(filepath.Join(filepath.Dir(s.Bin), "natsd"), "-port", natsPort); err != nil {
		return nil, err
	}
	if err := waitListening(natsAddr, 10*time.Second); err != nil {
		return nil, err
	}
	var urls, apis []string
	var first *exec.Cmd
	for range 3 {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		api, err := freeAddr()
		if err != nil {
			return nil, err
		}
		cmd, err := start(s.Bin, "serve", "-addr", addr, "-api-addr", api, "-broker", "nats://"+natsAddr,
			"-log-level", "warn", "-ping-interval", "0", "-idle-timeout", "0")
		if err != nil {
			return nil, err
		}
		if first == nil {
			first = cmd
		}
		if err := waitListening(addr, 10*time.Second); err != nil {
			return nil, err
		}
		urls = append(urls, "ws://"+addr+"/ws")
		apis = append(apis, "http://"+api)
	}
	time.Sleep(500 * time.Millisecond)
	cfg := sc.Config
	cfg.URL = strings.Join(urls, ",")
	cfg.Push.APIURL = strings.Join(apis, ",")
	cfg.ServerPID = first.Process.Pid
	cfg.SourceIPs = ips
	cfg.WorkerArgs = []string{s.Bin, "loadtest", loadtest.WorkerFlag}
	return runAndSave(cfg, sc.Sustained, outDir, fmt.Sprintf("%s-%s-%d.json", sc.Name, s.Name, rep))
}

// targets checks the issue tracker's targets against this run's medians;
// targets on scenarios that were not selected are left out, and so is the
// section when none is left.
func targets(scenarios []scenario, data map[string]map[string][]measurement) string {
	type check struct {
		what             string
		scenario, metric string
		peer             string  // "" compares with limit alone
		factor           float64 // Herald must be <= factor * peer (or limit); >= with higher
		limit            float64
		higher           bool   // Herald must be at least the bound
		peerScenario     string // the peer's figure comes from this scenario (default: the same)
	}
	checks := []check{
		{what: "idle memory per /ws connection, default flags (10k): at most 768 B", scenario: "idle-ws-10k", metric: "rss_per_conn", limit: 768},
		{what: "idle memory per connection at 10k: at most 1 KiB", scenario: "idle-10k", metric: "rss_per_conn", limit: 1024},
		{what: "idle memory per connection at 19k: at most 1 KiB", scenario: "idle-19k", metric: "rss_per_conn", limit: 1024},
		{what: "idle memory per connection below nbio's (10k)", scenario: "idle-10k", metric: "rss_per_conn", peer: "nbio", factor: 1},
		{what: "idle memory per connection under a tenth of gorilla's (10k)", scenario: "idle-10k", metric: "rss_per_conn", peer: "gorilla", factor: 0.1},
		{what: "server CPU per echoed message at most half of nbio's (100 x 64 B)", scenario: "echo-100x64B", metric: "cpu_per_msg", peer: "nbio", factor: 0.5},
		{what: "broadcast to 10k: time to last delivery (p99) at most half of nbio's", scenario: "broadcast-10k", metric: "last_p99_ms", peer: "nbio", factor: 0.5},
		{what: "broadcast to 10k: p99 under 40 ms", scenario: "broadcast-10k", metric: "last_p99_ms", limit: 40},
		{what: "broadcast to 10k: p99 to the last subscriber at most 1.1x the floor's", scenario: "broadcast-10k", metric: "last_p99_ms", peer: "floor", factor: 1.1},
		{what: "broadcast to 19k: p99 to the last subscriber at most 1.1x the floor's", scenario: "broadcast-19k", metric: "last_p99_ms", peer: "floor", factor: 1.1},
		{what: "broadcast to 10k SSE subscribers: p99 at most 1.2x Herald's on /ws", scenario: "broadcast-sse-10k", metric: "last_p99_ms", peer: "herald", factor: 1.2, peerScenario: "broadcast-10k"},
		{what: "sustained 100/s: deliveries per second at least 5x the floor's", scenario: "sustained-100", metric: "deliveries_per_s", peer: "floor", factor: 5, higher: true},
		{what: "sustained 100/s: p99 to the last subscriber under 1 s", scenario: "sustained-100", metric: "last_p99_ms", limit: 1000},
		{what: "sustained 50/s: server CPU per delivery at most half of before (herald-base)", scenario: "sustained-50", metric: "cpu_per_delivery", peer: "herald-base", factor: 0.5},
		{what: "sustained 50/s: p99 to the last subscriber at most 3x Herald's at 5/s", scenario: "sustained-50", metric: "last_p99_ms", peer: "herald", factor: 3, peerScenario: "sustained-5"},
		{what: "sustained 5/s: no acknowledged publication lost", scenario: "sustained-5", metric: "lost", limit: 0},
		{what: "sustained 20/s: no acknowledged publication lost", scenario: "sustained-20", metric: "lost", limit: 0},
		{what: "sustained 50/s: no acknowledged publication lost", scenario: "sustained-50", metric: "lost", limit: 0},
		{what: "sustained 100/s: no acknowledged publication lost", scenario: "sustained-100", metric: "lost", limit: 0},
	}
	selected := map[string]bool{}
	for _, sc := range scenarios {
		selected[sc.Name] = true
	}
	var kept []check
	for _, c := range checks {
		if selected[c.scenario] {
			kept = append(kept, c)
		}
	}
	checks = kept
	if len(checks) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("## Targets\n\nEach target from the issue tracker, checked against this run's medians.\n\n| target | Herald | bound | met |\n|---|---:|---:|---|\n")
	for _, c := range checks {
		h, ok := median(data[c.scenario]["herald"], c.metric)
		if !ok { // a Herald-only scenario of the default-flags server
			h, ok = median(data[c.scenario]["herald-ws"], c.metric)
		}
		if !ok {
			fmt.Fprintf(&b, "| %s | not measured | | |\n", c.what)
			continue
		}
		bound := c.limit
		if c.peer != "" {
			ps := c.scenario
			if c.peerScenario != "" {
				ps = c.peerScenario
			}
			p, ok := median(data[ps][c.peer], c.metric)
			if !ok {
				fmt.Fprintf(&b, "| %s | %.2f | %s not measured | |\n", c.what, h, c.peer)
				continue
			}
			bound = c.factor * p
		}
		met := "yes"
		if (!c.higher && h > bound) || (c.higher && h < bound) {
			met = "**no**"
		}
		fmt.Fprintf(&b, "| %s | %.2f | %.2f | %s |\n", c.what, h, bound, met)
	}
	return b.String() + "\n"
}

// microBenchmarks runs the codec and fan-out benchmarks (allocations per
// operation are the point) and returns them as a report section.
func microBenchmarks() string {
	cmd := exec.Command("go", "test", "-run", "^$", "-bench", ".", "-benchmem", "-benchtime", "300ms", "-count", "1", "./codec", "./hub")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	var b strings.Builder
	b.WriteString("## Micro-benchmarks\n\n`go test -bench . -benchmem ./codec ./hub`: the upgrade parser, frame decode and encode (0 allocs/op), permessage-deflate, UTF-8 validation, and the fan-out to N subscribers on one loop (allocs/op per publication, independent of N).\n\n```text\n")
	if err != nil {
		fmt.Fprintf(&b, "benchmarks failed: %v\n", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "Benchmark") || strings.HasPrefix(line, "cpu:") || strings.HasPrefix(line, "pkg:") {
			b.WriteString(line + "\n")
		}
	}
	b.WriteString("```\n")
	return b.String()
}

// runAndSave runs one measurement (bounded by three minutes), keeps its raw
// result as JSON in outDir and returns its figures.
func runAndSave(cfg loadtest.Config, sustained bool, outDir, name string) (measurement, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := loadtest.Run(ctx, cfg)
	if err != nil {
		return nil, err
	}
	raw, _ := json.MarshalIndent(res, "", "  ")
	_ = os.WriteFile(filepath.Join(outDir, name), raw, 0o644)
	return measurementOf(res, sustained)
}
