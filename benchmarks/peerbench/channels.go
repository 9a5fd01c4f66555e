package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// channelLoad is a channel-memory scenario (Herald only: the peers have no
// channels). Channels distinct channels are created on a fresh server,
// either by Conns connections subscribing to Channels/Conns channels each
// with nothing published (Conns > 0), or by publishing one Size-byte JSON
// message to each through the HTTP API with nobody subscribed (Conns == 0).
type channelLoad struct {
	Channels int
	Conns    int
	Size     int
	// Flags are more `herald serve` flags, after the benchmark's own (the
	// later of two equal flags wins).
	Flags []string
}

// Tuning of the channel-memory measurements.
const (
	// memSettle is how long the server is left alone before sampling.
	memSettle = 2 * time.Second
	// memAfterGC is how many samples are taken once the runtime has
	// completed a GC cycle since sampling began.
	memAfterGC = 8
	// memWarmRounds is how many sampling phases run, and are discarded,
	// before the baseline: the scrapes that drive the runtime through a
	// GC also grow its heap to the GC's goal, and RSS with it, which takes
	// a round or two to level off. With it, a run that creates a single
	// channel moves RSS by 0.1-0.5 MiB and heap in use by +-0.3 MiB, the
	// noise floor of these figures (+-50 B per channel at 10,000 channels,
	// +-5 B at 100,000).
	memWarmRounds = 2
	// memSampleLimit bounds one sampling phase.
	memSampleLimit = 20 * time.Second
	// channelLimit bounds one whole measurement, server start included.
	channelLimit = 60 * time.Second
	// subscribeWindow is how many subscribes a connection has in flight.
	subscribeWindow = 100
	// publishBatch is how many channels one POST /api/publish names.
	publishBatch = 1000
	// dialers is how many connections are opened at once.
	dialers = 64
)

// channelResult is one channel-memory measurement; it is kept in -out as
// raw JSON like loadtest's results.
type channelResult struct {
	Scenario     string    `json:"scenario"`
	Channels     int       `json:"channels"`
	Conns        int       `json:"conns"`
	Size         int       `json:"size,omitempty"`
	Before       memSample `json:"before"`
	After        memSample `json:"after"`
	SetupSeconds float64   `json:"setup_seconds"` // subscribing or publishing, verification excluded
}

// memSample is the server's memory in one state.
type memSample struct {
	RSS       int64 `json:"rss_bytes"`        // min VmRSS over the samples
	HeapInuse int64 `json:"heap_inuse_bytes"` // min go_memstats_heap_inuse_bytes after a GC; 0 if none completed
	GCs       int   `json:"gcs"`              // GC cycles completed while sampling
	Samples   int   `json:"samples"`
}

// chanName is the i-th measured channel: 10 bytes, the same in every
// scenario so that names cost the same.
func chanName(i int) string { return fmt.Sprintf("ch-%07d", i) }

// warmName is the i-th warm-up channel, created before the baseline.
func warmName(i int) string { return fmt.Sprintf("wu-%07d", i) }

// measureChannels starts a fresh Herald, measures its memory, creates the
// scenario's channels, measures again and stops it.
func measureChannels(s server, sc scenario, outDir string, rep int) (measurement, error) {
	ctx, cancel := context.WithTimeout(context.Background(), channelLimit)
	defer cancel()
	res, err := runChannels(ctx, s.Bin, sc.Name, *sc.Channels)
	if err != nil {
		return nil, err
	}
	raw, _ := json.MarshalIndent(res, "", "  ")
	_ = os.WriteFile(filepath.Join(outDir, fmt.Sprintf("%s-%s-%d.json", sc.Name, s.Name, rep)), raw, 0o644)
	return res.measurement()
}

// channelArgs are the flags of the server under test: the defaults, except
// that nothing times out or pings while connections sit idle, and the
// channel limits are above what the scenario creates.
func channelArgs(addr, apiAddr string, l channelLoad) []string {
	perConn := 1
	if l.Conns > 0 {
		perConn = (l.Channels+l.Conns-1)/l.Conns + 1 // and a warm-up channel
	}
	args := []string{"serve", "-addr", addr, "-api-addr", apiAddr, "-log-level", "warn",
		"-ping-interval", "0", "-idle-timeout", "0",
		"-max-channels-per-conn", strconv.Itoa(perConn), "-max-channels", strconv.Itoa(2*l.Channels + publishBatch)}
	return append(args, l.Flags...)
}

func runChannels(ctx context.Context, bin, name string, l channelLoad) (*channelResult, error) {
	if l.Channels <= 0 || l.Conns < 0 || (l.Conns == 0 && l.Size < 8) {
		return nil, fmt.Errorf("bad channel load %+v", l)
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	apiAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, channelArgs(addr, apiAddr, l)...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
	}()
	for _, a := range []string{addr, apiAddr} {
		if err := waitListening(a, 10*time.Second); err != nil {
			return nil, err
		}
	}
	api := &apiClient{base: "http://" + apiAddr, hc: &http.Client{Timeout: 10 * time.Second}}
	pid := cmd.Process.Pid
	res := &channelResult{Scenario: name, Channels: l.Channels, Conns: l.Conns, Size: l.Size}

	var conns []*subscriber
	defer func() {
		for _, c := range conns {
			c.close()
		}
	}()
	// Warm-up: what the first use of a path costs (a connection's buffers
	// grown by a burst of requests, the registries' first entries, the
	// API's first large request) belongs in the baseline, not to the
	// channels measured after it.
	warm := 0
	if l.Conns > 0 {
		if conns, err = dialSubscribers(ctx, "ws://"+addr+"/ws", l.Conns); err != nil {
			return nil, err
		}
		warm = len(conns)
	} else {
		warm = publishBatch
		if err := publishOne(ctx, api, warm, l.Size, warmName); err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
	}
	for range memWarmRounds {
		if _, err := sampleMemory(ctx, api, pid); err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
	}
	if res.Before, err = sampleMemory(ctx, api, pid); err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	start := time.Now()
	if l.Conns > 0 {
		err = subscribeAll(ctx, conns, l.Channels)
	} else {
		err = publishOne(ctx, api, l.Channels, l.Size, chanName)
	}
	if err != nil {
		return nil, err
	}
	res.SetupSeconds = time.Since(start).Seconds()
	if err := verifyChannels(ctx, api, l, warm); err != nil {
		return nil, err
	}
	if res.After, err = sampleMemory(ctx, api, pid); err != nil {
		return nil, fmt.Errorf("after: %w", err)
	}
	return res, nil
}

// measurement turns a result into the report's figures; the heap figure
// is left out when a sampling phase saw no GC (its minimum would count
// garbage).
func (r *channelResult) measurement() (measurement, error) {
	if r.Channels <= 0 || r.Before.RSS <= 0 || r.After.RSS <= 0 {
		return nil, fmt.Errorf("incomplete channel result %+v", *r)
	}
	const mib = 1 << 20
	n := float64(r.Channels)
	m := measurement{
		"rss_per_channel": float64(r.After.RSS-r.Before.RSS) / n,
		"rss_before_mib":  float64(r.Before.RSS) / mib,
		"rss_after_mib":   float64(r.After.RSS) / mib,
	}
	if r.SetupSeconds > 0 {
		m["setup_per_s"] = n / r.SetupSeconds
	}
	if r.Before.HeapInuse > 0 && r.After.HeapInuse > 0 {
		m["heap_per_channel"] = float64(r.After.HeapInuse-r.Before.HeapInuse) / n
		m["heap_before_mib"] = float64(r.Before.HeapInuse) / mib
		m["heap_after_mib"] = float64(r.After.HeapInuse) / mib
	}
	return m, nil
}

// apiClient talks to the server's HTTP API (no key: it is on loopback).
type apiClient struct {
	base string
	hc   *http.Client
}

func (a *apiClient) do(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	return b, nil
}

// runtimeMemory is what one /metrics scrape says about the Go runtime.
type runtimeMemory struct {
	HeapInuse int64
	GCs       int
}

// parseRuntimeMemory reads go_memstats_heap_inuse_bytes and the number of
// completed GC cycles (go_gc_duration_seconds_count) from a Prometheus text
// exposition.
func parseRuntimeMemory(b []byte) (runtimeMemory, error) {
	v, err := parseMetrics(b, "go_memstats_heap_inuse_bytes", "go_gc_duration_seconds_count")
	if err != nil {
		return runtimeMemory{}, err
	}
	return runtimeMemory{HeapInuse: int64(v[0]), GCs: int(v[1])}, nil
}

// parseMetrics returns the values of the named series (name and labels
// exactly as exposed, e.g. `x_total{result="ok"}`) from a Prometheus text
// exposition; a series that is missing is an error.
func parseMetrics(b []byte, series ...string) ([]float64, error) {
	out := make([]float64, len(series))
	found := make([]bool, len(series))
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		// Label values here never hold spaces, so the value follows the
		// last one.
		k := strings.LastIndexByte(line, ' ')
		if k < 0 {
			continue
		}
		name := line[:k]
		for i, want := range series {
			if name != want {
				continue
			}
			v, err := strconv.ParseFloat(line[k+1:], 64)
			if err != nil {
				return nil, fmt.Errorf("metric %s: %w", name, err)
			}
			out[i], found[i] = v, true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for i, ok := range found {
		if !ok {
			return nil, fmt.Errorf("metrics lack %s", series[i])
		}
	}
	return out, nil
}

// sampleMemory leaves the server alone for memSettle, then samples its
// RSS and heap until the runtime has completed a GC cycle and memAfterGC
// samples were taken after it. The server cannot be asked to collect, but
// every /metrics scrape allocates (about 100 KB), so scraping in a loop
// drives the runtime to its next cycle; the minimum heap in use after it
// is the live heap plus at most one scrape's garbage.
func sampleMemory(ctx context.Context, api *apiClient, pid int) (memSample, error) {
	var s memSample
	select {
	case <-ctx.Done():
		return s, ctx.Err()
	case <-time.After(memSettle):
	}
	deadline := time.Now().Add(memSampleLimit)
	first := -1
	afterGC := 0
	for afterGC < memAfterGC && time.Now().Before(deadline) {
		b, err := api.do(ctx, http.MethodGet, "/metrics", nil)
		if err != nil {
			return s, err
		}
		rm, err := parseRuntimeMemory(b)
		if err != nil {
			return s, err
		}
		rss, err := vmRSS(pid)
		if err != nil {
			return s, err
		}
		s.Samples++
		if s.RSS == 0 || rss < s.RSS {
			s.RSS = rss
		}
		if first < 0 {
			first = rm.GCs
		}
		s.GCs = rm.GCs - first
		if s.GCs > 0 {
			afterGC++
			if s.HeapInuse == 0 || rm.HeapInuse < s.HeapInuse {
				s.HeapInuse = rm.HeapInuse
			}
		}
	}
	return s, nil
}

// verifyChannels checks that the server holds what the run meant to
// create (warm-up included), so that a refused subscribe or publish cannot
// pass for a cheap channel: with subscribers, /api/stats must count one
// channel and one subscription each; without, the broker must have
// accepted one new publication each (herald_broker_publishes_total).
func verifyChannels(ctx context.Context, api *apiClient, l channelLoad, warm int) error {
	want := int64(l.Channels + warm)
	if l.Conns == 0 {
		b, err := api.do(ctx, http.MethodGet, "/metrics", nil)
		if err != nil {
			return err
		}
		const accepted = `herald_broker_publishes_total{result="accepted"}`
		v, err := parseMetrics(b, accepted)
		if err != nil {
			return err
		}
		if int64(v[0]) != want {
			return fmt.Errorf("%s is %.0f, want %d", accepted, v[0], want)
		}
		return nil
	}
	b, err := api.do(ctx, http.MethodGet, "/api/stats", nil)
	if err != nil {
		return err
	}
	var st struct {
		Channels      int64 `json:"channels"`
		Subscriptions int64 `json:"subscriptions"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("stats: %w", err)
	}
	if st.Channels != want || st.Subscriptions != want {
		return fmt.Errorf("server holds %d channels and %d subscriptions, want %d of each", st.Channels, st.Subscriptions, want)
	}
	return nil
}

// publishOne publishes one size-byte JSON value to each of n distinct
// channels named by name, publishBatch channels per request.
func publishOne(ctx context.Context, api *apiClient, n, size int, name func(int) string) error {
	data := json.RawMessage(`{"p":"` + strings.Repeat("x", size-8) + `"}`)
	for lo := 0; lo < n; lo += publishBatch {
		hi := min(lo+publishBatch, n)
		names := make([]string, 0, hi-lo)
		for i := lo; i < hi; i++ {
			names = append(names, name(i))
		}
		body, err := json.Marshal(struct {
			Channels []string        `json:"channels"`
			Data     json.RawMessage `json:"data"`
		}{names, data})
		if err != nil {
			return err
		}
		b, err := api.do(ctx, http.MethodPost, "/api/publish", body)
		if err != nil {
			return err
		}
		var resp struct {
			Offsets map[string]uint64 `json:"offsets"`
		}
		if err := json.Unmarshal(b, &resp); err != nil {
			return fmt.Errorf("publish reply: %w", err)
		}
		for _, ch := range names {
			if _, ok := resp.Offsets[ch]; !ok {
				return fmt.Errorf("publish reply lacks channel %s", ch)
			}
		}
	}
	return nil
}

// subscriber is one benchmark connection to /ws. The benchmark tool may
// spend a goroutine per connection while it subscribes; the server may
// not, and does not.
type subscriber struct {
	ws    *websocket.Conn
	index int
}

func (c *subscriber) close() { _ = c.ws.Close() }

// reply is the part of a server frame the benchmark checks.
type reply struct {
	Op      string `json:"op"`
	ID      *int   `json:"id"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// expect reads the next frame and checks that it is op answering id.
func (c *subscriber) expect(op string, id int) error {
	_, p, err := c.ws.ReadMessage()
	if err != nil {
		return fmt.Errorf("connection %d: %w", c.index, err)
	}
	var r reply
	if err := json.Unmarshal(p, &r); err != nil {
		return fmt.Errorf("connection %d: %q: %w", c.index, p, err)
	}
	if r.Op != op || r.ID == nil || *r.ID != id {
		return fmt.Errorf("connection %d: got %s, want %s with id %d", c.index, p, op, id)
	}
	return nil
}

// dialSubscribers opens n connections to url and warms each up: a burst
// of subscribeWindow pings, as many requests in flight as the subscribes
// will have, then a subscription to a warm-up channel of its own.
func dialSubscribers(ctx context.Context, url string, n int) ([]*subscriber, error) {
	conns := make([]*subscriber, n)
	err := forEach(ctx, n, func(ctx context.Context, i int) error {
		ws, _, err := websocket.DefaultDialer.DialContext(ctx, url, nil)
		if err != nil {
			return fmt.Errorf("dial %d: %w", i, err)
		}
		c := &subscriber{ws: ws, index: i}
		conns[i] = c
		defer c.unblockOnDone(ctx)()
		var b []byte
		for id := range subscribeWindow {
			b = fmt.Appendf(b[:0], `{"op":"ping","id":%d}`, id)
			if err := ws.WriteMessage(websocket.TextMessage, b); err != nil {
				return fmt.Errorf("connection %d: %w", i, err)
			}
		}
		for id := range subscribeWindow {
			if err := c.expect("pong", id); err != nil {
				return err
			}
		}
		b = fmt.Appendf(b[:0], `{"op":"subscribe","channel":%q,"id":-1}`, warmName(i))
		if err := ws.WriteMessage(websocket.TextMessage, b); err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
		return c.expect("ack", -1)
	})
	if err != nil {
		for _, c := range conns {
			if c != nil {
				c.close()
			}
		}
		return nil, err
	}
	return conns, nil
}

// unblockOnDone bounds c's reads and writes by ctx: by its deadline, and
// by closing c when ctx ends first (another connection failed), until the
// returned stop is called.
func (c *subscriber) unblockOnDone(ctx context.Context) (stop func() bool) {
	if d, ok := ctx.Deadline(); ok {
		_ = c.ws.SetReadDeadline(d)
		_ = c.ws.SetWriteDeadline(d)
	}
	return context.AfterFunc(ctx, c.close)
}

// subscribeAll subscribes the connections to total distinct channels,
// spread evenly (the first ones take the remainder), with up to
// subscribeWindow subscribes in flight per connection, and checks every
// ack.
func subscribeAll(ctx context.Context, conns []*subscriber, total int) error {
	n := len(conns)
	return forEach(ctx, n, func(ctx context.Context, i int) error {
		c := conns[i]
		defer c.unblockOnDone(ctx)()
		// Connection i takes channels i, i+n, i+2n, ...
		var batch []byte
		for lo := i; lo < total; lo += subscribeWindow * n {
			batch = batch[:0]
			var ids []int
			for k := lo; k < total && k < lo+subscribeWindow*n; k += n {
				batch = fmt.Appendf(batch[:0], `{"op":"subscribe","channel":%q,"id":%d}`, chanName(k), k)
				if err := c.ws.WriteMessage(websocket.TextMessage, batch); err != nil {
					return fmt.Errorf("connection %d: %w", i, err)
				}
				ids = append(ids, k)
			}
			for _, id := range ids {
				if err := c.expect("ack", id); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// forEach runs f(0..n-1) on up to dialers goroutines and returns the first
// error, cancelling the rest; it fails too when ctx ends before every f
// has succeeded.
func forEach(ctx context.Context, n int, f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		done  int
		next  = make(chan int)
	)
	for range min(dialers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				err := f(ctx, i)
				mu.Lock()
				if err == nil {
					done++
				} else if first == nil {
					first = err
					cancel()
				}
				mu.Unlock()
			}
		}()
	}
	func() {
		defer close(next)
		for i := range n {
			select {
			case next <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	wg.Wait()
	switch {
	case first != nil:
		return first
	case done < n:
		return fmt.Errorf("%d of %d done: %w", done, n, ctx.Err())
	}
	return nil
}

// channelScenarios are the channel-memory scenarios among scenarios.
func channelScenarios(scenarios []scenario) []scenario {
	var out []scenario
	for _, sc := range scenarios {
		if sc.Channels != nil {
			out = append(out, sc)
		}
	}
	return out
}

// renderChannels is the report's section on channel memory: one row per
// channel-memory scenario in the run, empty when there is none.
func renderChannels(scenarios []scenario, data map[string]map[string][]measurement) string {
	cs := channelScenarios(scenarios)
	if len(cs) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "## Channel memory (Herald only)\n\n")
	b.WriteString("What a channel costs the server. The peers have no channel concept (they echo and broadcast to every connection), so these figures are Herald's alone. " +
		"Each measurement starts a fresh `herald serve` with the in-memory broker and default flags, except `-ping-interval 0 -idle-timeout 0` (nothing is sent while connections sit idle) and `-max-channels-per-conn`/`-max-channels` sized to the run. ")
	for _, sc := range cs {
		if sc.Channels.Conns > 0 {
			fmt.Fprintf(&b, "*subscribed*: the connections are opened and warmed up before the baseline (a burst of %[1]d pings, then one subscription each to a warm-up channel, so that buffers and first entries are the connection's cost), then each subscribes to its own share of distinct, never-published channels, up to %[1]d subscribes in flight. ", subscribeWindow)
			break
		}
	}
	for _, sc := range cs {
		if sc.Channels.Conns == 0 {
			fmt.Fprintf(&b, "*one message*: no connection; after a warm-up request to %[2]d other channels before the baseline, one %[1]d-byte JSON message is published to each distinct channel through `POST /api/publish`, %[2]d channels per request, and stays in the channel's history (default history settings). ", sc.Channels.Size, publishBatch)
			break
		}
	}
	b.WriteString("Channel names are 10 bytes (`ch-0000042`). Every ack and publish reply is checked, and the server must count exactly the channels and subscriptions (`/api/stats`) or accepted publications (`herald_broker_publishes_total`) meant.\n\n")
	fmt.Fprintf(&b, "Memory is sampled before and after: %v of settling, then `/metrics` is scraped until the Go runtime has completed a GC cycle (the server cannot be told to collect; each scrape allocates about 100 KB there, which drives the next cycle) and %d samples after it. "+
		"Before the baseline, %d such rounds run and are discarded: the scrapes grow the heap to its GC goal, and RSS with it, until it levels off. "+
		"RSS is the lowest VmRSS (/proc/PID/status) of the samples; heap is the lowest `go_memstats_heap_inuse_bytes` after the GC, i.e. live heap plus fragmentation. Per-channel figures are (after − before) / channels. "+
		"Per-channel figures are medians with the lowest and highest repeat in brackets. "+
		"RSS differs from heap in use both ways: it runs above because the runtime lets the heap grow towards its GC goal (twice the live heap at the default GOGC=100) before collecting and returns freed pages to the kernel only gradually, and below because new channels first fill pages the process already holds. "+
		"A run that creates no channel still moves both figures by a few hundred KiB, i.e. tens of bytes per channel at 10,000 channels and a few at 100,000, so the 100,000-channel rows are the ones to read.\n\n",
		memSettle, memAfterGC, memWarmRounds)
	b.WriteString("| scenario | channels | connections | RSS per channel (B) | heap in use per channel (B) | RSS before → after (MiB) | heap before → after (MiB) | setup (channels/s) | repeats |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, sc := range cs {
		ms := data[sc.Name]["herald"]
		conns := "none"
		if sc.Channels.Conns > 0 {
			conns = strconv.Itoa(sc.Channels.Conns)
		}
		if _, ok := median(ms, "rss_per_channel"); !ok {
			fmt.Fprintf(&b, "| %s | %d | %s | failed | | | | | 0 |\n", sc.Name, sc.Channels.Channels, conns)
			continue
		}
		f := func(key, format string) string {
			if v, ok := median(ms, key); ok {
				return fmt.Sprintf(format, v)
			}
			return "n/a"
		}
		spread := func(key string) string {
			v, ok := median(ms, key)
			if !ok {
				return "n/a"
			}
			lo, hi := extremes(ms, key)
			return fmt.Sprintf("%.0f (%.0f–%.0f)", v, lo, hi)
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s → %s | %s → %s | %s | %d |\n",
			sc.Name, sc.Channels.Channels, conns, spread("rss_per_channel"), spread("heap_per_channel"),
			f("rss_before_mib", "%.1f"), f("rss_after_mib", "%.1f"),
			f("heap_before_mib", "%.1f"), f("heap_after_mib", "%.1f"),
			f("setup_per_s", "%.0f"), len(ms))
	}
	b.WriteString("\n")
	return b.String()
}

// extremes is the lowest and highest value of key over ms (which must hold
// at least one).
func extremes(ms []measurement, key string) (lo, hi float64) {
	first := true
	for _, m := range ms {
		v, ok := m[key]
		if !ok {
			continue
		}
		if first || v < lo {
			lo = v
		}
		if first || v > hi {
			hi = v
		}
		first = false
	}
	return lo, hi
}
