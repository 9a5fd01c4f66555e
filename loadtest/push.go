package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
)

// PushConfig is the push scenario's part of Config; the churn scenario's
// publisher uses it too.
type PushConfig struct {
	// APIURL is http://host:port (or https:// through a TLS proxy) of the
	// API listener, or a comma-separated list of them: publications go to
	// them round-robin (with a cluster, each publication can enter at a
	// different node). Default: every ws:// -url host with its port + 1,
	// every wss:// -url host as https:// on the same port.
	APIURL   string
	APIKey   string  // bearer key for /api/publish
	Channels int     // K: subscribers are spread over this many channels
	Rate     float64 // publications per second, round-robin over channels; push default 5, churn: 0 publishes nothing
	Prefix   string  // channel name prefix
	Loops    int     // client event loops; default 2
	// BroadcastURL switches to peer mode: connections do not subscribe,
	// publications are POSTed as raw JSON to this URL (a reference server's
	// POST /broadcast; a comma-separated list is used round-robin) and
	// arrive unwrapped; Channels is then 1.
	BroadcastURL string
	// Transport is what subscribers use: "ws" (the default), "sse" or
	// "poll" (see transport.go), with the same loss, duplicate and
	// latency accounting.
	Transport string
	// Concurrency bounds the publish calls in flight (default 64); a high
	// Rate against an API whose calls take tens of milliseconds (a
	// replicated stream, a loaded node) needs more.
	Concurrency int
	// Drain is how long the run keeps counting deliveries after the last
	// publication (default 1s); a broadcast that takes seconds to reach
	// every subscriber needs more, or its tail counts as lost.
	Drain time.Duration
	// Batch, above 1, sends the publications in POST /api/batch calls of
	// this many (consecutive publications, so over different channels
	// with Channels > 1) instead of one POST /api/publish each; the rate
	// stays publications per second. Not with BroadcastURL.
	Batch int
}

// pushDefaults fills in the push settings of a push or churn run.
func (c *Config) pushDefaults() error {
	pc := &c.Push
	if pc.Rate < 0 {
		return fmt.Errorf("loadtest: publication rate must not be negative")
	}
	if pc.Channels <= 0 {
		pc.Channels = 1
	}
	if c.Scenario == "push" && pc.Rate <= 0 {
		pc.Rate = 5
	}
	if pc.Prefix == "" {
		pc.Prefix = "load"
	}
	if pc.Loops <= 0 {
		pc.Loops = 2
	}
	if pc.Concurrency < 0 || pc.Drain < 0 {
		return fmt.Errorf("loadtest: publish concurrency and drain must not be negative")
	}
	if pc.Concurrency == 0 {
		pc.Concurrency = 64
	}
	if pc.Batch < 0 || (pc.Batch > 1 && pc.BroadcastURL != "") {
		return fmt.Errorf("loadtest: -pub-batch must be at least 1 and needs the Herald API (no -broadcast-url)")
	}
	if pc.Batch == 0 {
		pc.Batch = 1
	}
	if pc.Drain == 0 {
		pc.Drain = time.Second
	}
	if err := c.checkTransport(); err != nil {
		return err
	}
	if pc.BroadcastURL != "" {
		pc.Channels = 1
		return checkHTTPURLs("-broadcast-url", pc.BroadcastURL)
	}
	if publishes(*c) && pc.APIURL == "" {
		return fmt.Errorf("loadtest: push needs the API URL (-api-url)")
	}
	if pc.APIURL != "" {
		return checkHTTPURLs("-api-url", pc.APIURL)
	}
	return nil
}

// publishes reports whether a run of c publishes: push always, churn when
// it has a publication rate and something to publish to.
func publishes(c Config) bool {
	switch c.Scenario {
	case "push":
		return true
	case "churn":
		return c.Push.Rate > 0 && (c.Push.BroadcastURL != "" || c.urls[0].Path == "/ws")
	}
	return false
}

// maxPubs bounds the publications of a run of c; every part sizes its
// receipt accounting by it.
func maxPubs(c Config) int {
	if !publishes(c) {
		return 0
	}
	return int(c.Push.Rate*c.Duration.Seconds()) + 16
}

// publication is what the publisher knows of one message it published.
type publication struct {
	channel int
	offset  uint64
	sent    int64 // unix ns just before the API call
	ok      bool
}

// publisher calls the publish API at a fixed rate. It runs in the process
// that drives the run; with worker processes, only the parent publishes.
type publisher struct {
	pc    PushConfig
	tls   *tls.Config // https:// API calls
	urls  []string
	max   int
	bcast bool
	mu    sync.Mutex
	pubs  []*publication
	errs  errLog   // failed calls, kind "publish"; a batch's failed items one each
	batch []string // POST /api/batch URLs, beside urls, when Batch > 1
}

func newPublisher(cfg Config) *publisher {
	p := &publisher{pc: cfg.Push, tls: cfg.tlsBase, max: maxPubs(cfg), bcast: cfg.Push.BroadcastURL != ""}
	if p.bcast {
		p.urls = splitList(cfg.Push.BroadcastURL)
	} else {
		for _, u := range splitList(cfg.Push.APIURL) {
			p.urls = append(p.urls, strings.TrimRight(u, "/")+"/api/publish")
			p.batch = append(p.batch, strings.TrimRight(u, "/")+"/api/batch")
		}
	}
	p.pubs = make([]*publication, 0, p.max)
	return p
}

// run publishes every 1/Rate seconds from start for d and returns how many
// calls failed. Publication seq goes to endpoint seq round-robin.
func (p *publisher) run(ctx context.Context, start time.Time, d time.Duration) int {
	pc := p.pc
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: pc.Concurrency, TLSClientConfig: p.tls}}
	defer client.CloseIdleConnections()
	interval := time.Duration(float64(time.Second) / pc.Rate)
	deadline := start.Add(d)
	var wg sync.WaitGroup
	var errs atomic.Int32
	sem := make(chan struct{}, pc.Concurrency)
	if pc.Batch > 1 {
		return p.runBatches(ctx, client, start, deadline, interval, sem)
	}
	for seq := 0; seq < p.max && time.Now().Before(deadline) && ctx.Err() == nil; seq++ {
		if wait := time.Until(start.Add(time.Duration(seq) * interval)); wait > 0 {
			sleep(ctx, wait)
		}
		pub := &publication{channel: seq % pc.Channels}
		p.mu.Lock()
		p.pubs = append(p.pubs, pub)
		p.mu.Unlock()
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			sent := time.Now().UnixNano()
			off, err := p.call(ctx, client, p.urls[seq%len(p.urls)], seq, pub.channel, sent)
			p.mu.Lock()
			pub.sent = sent
			if err == nil {
				pub.offset, pub.ok = off, true
			}
			p.mu.Unlock()
			if err != nil {
				errs.Add(1)
				p.errs.add("publish", err)
			}
		}()
	}
	wg.Wait()
	return int(errs.Load())
}

// runBatches is run with Batch > 1: every Batch publications that are due
// go in one POST /api/batch, batch b to endpoint b round-robin. It
// returns how many publications failed.
func (p *publisher) runBatches(ctx context.Context, client *http.Client, start, deadline time.Time, interval time.Duration, sem chan struct{}) int {
	var wg sync.WaitGroup
	var errs atomic.Int32
	n := p.pc.Batch
	for seq, b := 0, 0; seq < p.max && time.Now().Before(deadline) && ctx.Err() == nil; seq, b = seq+n, b+1 {
		last := min(seq+n, p.max) - 1
		if wait := time.Until(start.Add(time.Duration(last) * interval)); wait > 0 {
			sleep(ctx, wait)
		}
		pubs := make([]*publication, 0, last-seq+1)
		p.mu.Lock()
		for s := seq; s <= last; s++ {
			pub := &publication{channel: s % p.pc.Channels}
			pubs = append(pubs, pub)
			p.pubs = append(p.pubs, pub)
		}
		p.mu.Unlock()
		sem <- struct{}{}
		wg.Add(1)
		go func(seq int, u string) {
			defer func() { <-sem; wg.Done() }()
			sent := time.Now().UnixNano()
			offs, itemErrs, err := p.callBatch(ctx, client, u, seq, pubs, sent)
			p.mu.Lock()
			for i, pub := range pubs {
				pub.sent = sent
				if err == nil && itemErrs[i] == "" {
					pub.offset, pub.ok = offs[i], true
				}
			}
			p.mu.Unlock()
			for i := range pubs {
				switch {
				case err != nil:
					errs.Add(1)
					p.errs.add("publish", err)
				case itemErrs[i] != "":
					errs.Add(1)
					p.errs.add("publish", fmt.Errorf("POST %s: publication %d: %s", u, seq+i, itemErrs[i]))
				}
			}
		}(seq, p.batch[b%len(p.batch)])
	}
	wg.Wait()
	return int(errs.Load())
}

// callBatch makes one batch request for pubs (publications seq, seq+1, ...)
// and returns each one's offset or error. err is set when the call as a
// whole failed (no answer, or one that is not a batch answer).
func (p *publisher) callBatch(ctx context.Context, client *http.Client, u string, seq int, pubs []*publication, sent int64) ([]uint64, []string, error) {
	var body strings.Builder
	body.WriteString(`{"publications":[`)
	for i, pub := range pubs {
		if i > 0 {
			body.WriteByte(',')
		}
		fmt.Fprintf(&body, `{"channel":"%s-%d","data":{"seq":%d,"t":%d}}`, p.pc.Prefix, pub.channel, seq+i, sent)
	}
	body.WriteString(`]}`)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(body.String()))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if p.pc.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+p.pc.APIKey)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
	default:
		return nil, nil, httpError(u, resp)
	}
	var out struct {
		Results []struct {
			Offset uint64 `json:"offset"`
			Error  string `json:"error"`
		} `json:"results"`
		Error string `json:"error"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil {
		return nil, nil, fmt.Errorf("POST %s: HTTP %d: reading the answer: %w", u, resp.StatusCode, err)
	}
	if len(out.Results) != len(pubs) {
		return nil, nil, fmt.Errorf("POST %s: HTTP %d: %d results for %d publications: %s", u, resp.StatusCode, len(out.Results), len(pubs), out.Error)
	}
	offs, errTexts := make([]uint64, len(pubs)), make([]string, len(pubs))
	for i, r := range out.Results {
		offs[i], errTexts[i] = r.Offset, r.Error
		if r.Error == "" && r.Offset == 0 {
			errTexts[i] = "stored without an offset"
		}
	}
	return offs, errTexts, nil
}

// call makes one publish request and returns the offset the server gave
// it (peers give none: seq+1 stands in).
func (p *publisher) call(ctx context.Context, client *http.Client, u string, seq, channel int, sent int64) (uint64, error) {
	pc := p.pc
	body := fmt.Sprintf(`{"channel":"%s-%d","data":{"seq":%d,"t":%d}}`, pc.Prefix, channel, seq, sent)
	if p.bcast {
		body = fmt.Sprintf(`{"seq":%d,"t":%d}`, seq, sent)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if pc.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+pc.APIKey)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if p.bcast {
		if resp.StatusCode/100 != 2 {
			return 0, httpError(u, resp)
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return uint64(seq) + 1, nil
	}
	var out struct {
		Offset uint64 `json:"offset"`
	}
	if resp.StatusCode != http.StatusOK {
		return 0, httpError(u, resp)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&out); err != nil {
		return 0, fmt.Errorf("POST %s: reading the answer: %w", u, err)
	}
	return out.Offset, nil
}

// httpError describes a refused publish call with the start of the
// server's answer, which says why (a wrong API key, a bad channel name).
func httpError(u string, resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	body := strings.Join(strings.Fields(string(b)), " ")
	if body == "" {
		return fmt.Errorf("POST %s: HTTP %d", u, resp.StatusCode)
	}
	return fmt.Errorf("POST %s: HTTP %d: %s", u, resp.StatusCode, body)
}

// list returns a copy of the publications so far.
func (p *publisher) list() []publication {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]publication, len(p.pubs))
	for i, pub := range p.pubs {
		out[i] = *pub
	}
	return out
}

// subscriber is one measured connection, owned by a gnet client loop.
type subscriber struct {
	channel    int
	last       uint64  // highest offset seen
	seen       seenSet // publication sequence numbers received
	dups       int64
	outOfOrder int64
}

// churned marks a connection of the churn pool in its gnet context: it is
// read (so the server never sees it stall) but not measured.
type churned struct{}

// pushPart holds subscribed connections on a gnet client's event loops and
// accounts for every delivery; with a churner it also churns part of them.
type pushPart struct {
	gnet.BuiltinEventEngine
	cfg     Config
	sh      share
	m       *meter
	maxPubs int
	cli     *gnet.Client
	stopCli sync.Once
	// stopping is set before the client loops stop, so that the closes
	// they cause are not reported as read errors.
	stopping atomic.Bool

	p          *pool
	opened     int
	subs       []*subscriber
	perChannel []int

	// mu guards the accounting shared by the loops. It is taken once per
	// read (see tally), not once per message: at a million deliveries a
	// second, per-message locks and atomics on counters every loop touches
	// cost the generator more than parsing.
	mu     sync.Mutex
	recv   []int32                 // per publication: subscribers that got it
	lastNs []int64                 // per publication: latest delivery latency
	lat    *hdrhistogram.Histogram // first deliveries, µs
	closes int

	churn *churner // nil unless the scenario is churn

	// The wss:// connections, each read by a goroutine of its own (see
	// enroll). wssStopping and live are guarded by smu; readers counts
	// the goroutines.
	smu         sync.Mutex
	wssStopping bool
	live        map[*conn]struct{}
	readers     sync.WaitGroup
}

func newPushPart(cfg Config, sh share, m *meter) *pushPart {
	n := maxPubs(cfg)
	pp := &pushPart{
		cfg:        cfg,
		sh:         sh,
		m:          m,
		maxPubs:    n,
		perChannel: make([]int, cfg.Push.Channels),
		recv:       make([]int32, n),
		lastNs:     make([]int64, n),
		lat:        newHistogram(),
		live:       map[*conn]struct{}{},
	}
	if cfg.Scenario == "churn" {
		pp.churn = &churner{pp: pp, connect: newHistogram()}
	}
	return pp
}

// subscribes reports whether local connection i sends a subscribe: not in
// peer mode, and in the churn scenario only on a /ws URL.
func (pp *pushPart) subscribes(i int) bool {
	if pp.cfg.Push.BroadcastURL != "" {
		return false
	}
	return pp.cfg.Scenario == "push" || pp.urlOf(i).Path == "/ws"
}

func (pp *pushPart) urlOf(i int) *url.URL { return pp.cfg.urlOf(pp.sh, i) }

func (pp *pushPart) channelOf(i int) int { return pp.sh.global(i) % pp.cfg.Push.Channels }

func (pp *pushPart) channelName(i int) string {
	return pp.cfg.Push.Prefix + "-" + strconv.Itoa(pp.channelOf(i))
}

func (pp *pushPart) setup(ctx context.Context) (int, error) {
	cfg := pp.cfg
	cli, err := gnet.NewClient(pp, gnet.WithMulticore(true), gnet.WithNumEventLoop(cfg.Push.Loops), gnet.WithReadBufferCap(64<<10), gnet.WithLogger(gnetLogger{}))
	if err != nil {
		return 0, fmt.Errorf("loadtest: client loops: %w", err)
	}
	if err := cli.Start(); err != nil {
		return 0, fmt.Errorf("loadtest: client loops: %w", err)
	}
	pp.cli = cli
	stable := cfg.Conns
	if pp.churn != nil {
		stable = int(math.Round(float64(cfg.Conns) * cfg.Churn.Stable))
		pp.churn.rate = cfg.Churn.Rate
		pp.churn.next = cfg.Conns
	}
	// Connect and subscribe with blocking sockets, then hand each socket to
	// the client's event loops.
	since := make([]uint64, cfg.Conns) // poll: each connection's position after its first poll
	p := open(ctx, cfg, pp.sh, cfg.Conns, cfg.Rate, pp.m, false, func(c *conn, i int) error {
		if !pp.subscribes(i) {
			return nil
		}
		switch cfg.Push.Transport {
		case TransportSSE:
			return subscribeSSE(c, pp.urlOf(i).Host, pp.channelName(i))
		case TransportPoll:
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			defer func() { _ = c.SetDeadline(time.Time{}) }()
			a, err := poll(c, bufio.NewReader(c), pp.urlOf(i).Host, pp.channelName(i), nil, 0)
			since[i] = a.Since[pp.channelName(i)]
			return err
		}
		return subscribe(c, pp.channelName(i), i+1)
	})
	pp.p = p
	pp.opened = len(p.conns)
	for k, c := range p.conns {
		i := p.idx[k]
		var ctx any = churned{}
		var s *subscriber
		if i < stable {
			s = &subscriber{channel: pp.channelOf(i)}
			ctx = s
		}
		if cfg.Push.Transport == TransportPoll {
			pp.startPolling(c, s, pp.urlOf(i).Host, pp.channelName(i), since[i])
			if s != nil {
				pp.subs = append(pp.subs, s)
				pp.perChannel[s.channel]++
			}
			continue
		}
		gc, err := pp.enroll(c, ctx)
		if err != nil {
			pp.opened--
			p.failures++
			p.errs.add("enroll", err)
			pp.m.open.Add(-1)
			continue
		}
		if s != nil {
			pp.subs = append(pp.subs, s)
			pp.perChannel[s.channel]++
		} else {
			pp.churn.queue = append(pp.churn.queue, gc)
			pp.churn.pool++
		}
	}
	p.conns, p.idx = nil, nil
	return pp.opened, nil
}

func (pp *pushPart) drive(ctx context.Context, stop <-chan struct{}) {
	if pp.churn != nil {
		pp.churn.run(ctx, stop)
	} else {
		select {
		case <-stop:
		case <-ctx.Done():
		}
	}
	// Tally on the loops' own state: stop them first.
	pp.stop()
}

func (pp *pushPart) stop() {
	pp.stopCli.Do(func() {
		pp.stopping.Store(true)
		if pp.cli != nil {
			_ = pp.cli.Stop()
		}
		pp.smu.Lock()
		pp.wssStopping = true
		for c := range pp.live {
			_ = c.SetReadDeadline(time.Now()) // wakes its reader
		}
		pp.smu.Unlock()
		pp.readers.Wait()
	})
}

// enroll hands a subscribed connection to whoever reads it from now on,
// with its state ctx (a *subscriber or churned). A ws:// connection goes
// to the gnet client's loops, which close c.Conn and keep a dup: no
// goroutine. A wss:// connection cannot: gnet reads raw bytes from the
// socket, and TLS records need crypto/tls on a blocking net.Conn. It gets
// a reader goroutine of its own instead (see loadtest/doc.go). The result
// closes the connection from any goroutine.
func (pp *pushPart) enroll(c *conn, ctx any) (io.Closer, error) {
	if !c.isTLS() {
		return pp.cli.EnrollContext(c.Conn, ctx)
	}
	pp.smu.Lock()
	defer pp.smu.Unlock()
	if pp.wssStopping {
		_ = c.Close()
		return nil, errStopping
	}
	pp.live[c] = struct{}{}
	s, _ := ctx.(*subscriber)
	pp.readers.Add(1)
	go pp.readStream(c, s)
	return c, nil
}

var errStopping = errors.New("loadtest: the run is stopping")

// readStream is a wss:// connection's reader: what OnTraffic and OnClose
// do for a gnet connection, on a blocking *tls.Conn. s is nil for a
// churned connection. It returns when the server closes, the connection
// fails or is closed, or stop expires its read deadline.
func (pp *pushPart) readStream(c *conn, s *subscriber) {
	defer pp.readers.Done()
	defer func() {
		pp.smu.Lock()
		delete(pp.live, c)
		pp.smu.Unlock()
		_ = c.Close()
		pp.m.open.Add(-1)
	}()
	var buf []byte
	for {
		f, b, err := c.readFrame(buf)
		buf = b
		if err != nil {
			return
		}
		switch f.OpCode {
		case ws.OpText:
			if s != nil {
				var t tally
				pp.onMessage(s, f.Payload, time.Now().UnixNano(), &t)
				pp.flush(&t)
			}
		case ws.OpPing:
			_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write(appendClientFrame(nil, ws.OpPong, f.Payload)); err != nil {
				return
			}
		case ws.OpClose:
			pp.mu.Lock()
			pp.closes++
			pp.mu.Unlock()
			return
		}
	}
}

func (pp *pushPart) close() { pp.stop() }

func (pp *pushPart) report() *partReport {
	r := pp.p.report()
	r.Opened = pp.opened
	pr := &pushReport{PerChannel: pp.perChannel}
	pp.mu.Lock()
	n := 0
	for i, c := range pp.recv {
		if c > 0 {
			n = i + 1
		}
	}
	pr.Received = append([]int32(nil), pp.recv[:n]...)
	pr.LastNs = append([]int64(nil), pp.lastNs[:n]...)
	for _, c := range pr.Received {
		r.Messages += int64(c)
	}
	for _, s := range pp.subs {
		pr.Duplicates += s.dups
		pr.OutOfOrder += s.outOfOrder
	}
	pr.Closes = pp.closes
	pr.Latency = exportHist(pp.lat)
	pp.mu.Unlock()
	r.Push = pr
	if ch := pp.churn; ch != nil {
		ch.mu.Lock()
		r.Churn = &churnReport{
			Stable:      len(pp.subs),
			Pool:        ch.pool,
			Connects:    ch.connects,
			Disconnects: ch.disconnects,
			Failures:    ch.failures,
			Connect:     exportHist(ch.connect),
		}
		ch.mu.Unlock()
	}
	return r
}

// gnetLogger keeps gnet's chatter (it logs to stdout by default) out of
// the generator's output: debug and info lines are dropped, the rest go to
// slog's default logger.
type gnetLogger struct{}

func (gnetLogger) Debugf(string, ...any) {}
func (gnetLogger) Infof(string, ...any)  {}
func (gnetLogger) Warnf(f string, a ...any) {
	slog.Warn(fmt.Sprintf(f, a...), "component", "gnet")
}
func (gnetLogger) Errorf(f string, a ...any) {
	slog.Error(fmt.Sprintf(f, a...), "component", "gnet")
}
func (gnetLogger) Fatalf(f string, a ...any) {
	slog.Error(fmt.Sprintf(f, a...), "component", "gnet")
}

// subscribe sends a subscribe frame and waits for its ack on the blocking
// socket. It reads no further than the ack: messages published meanwhile
// stay in the socket for the event loop that takes the connection over.
func subscribe(c *conn, channel string, id int) error {
	req := fmt.Sprintf(`{"op":"subscribe","channel":%q,"id":%d}`, channel, id)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	defer func() { _ = c.SetDeadline(time.Time{}) }()
	if _, err := c.Write(appendClientFrame(nil, ws.OpText, []byte(req))); err != nil {
		return err
	}
	var buf []byte
	for {
		f, b, err := c.readFrameExact(buf)
		buf = b
		if err != nil {
			return err
		}
		if f.OpCode != ws.OpText {
			continue
		}
		if bytes.Contains(f.Payload, []byte(`"op":"ack"`)) {
			if c.br != nil && c.br.Buffered() > 0 {
				return fmt.Errorf("unexpected bytes after the ack")
			}
			return nil
		}
		if bytes.Contains(f.Payload, []byte(`"op":"error"`)) {
			return fmt.Errorf("%s", f.Payload)
		}
	}
}

// OnTraffic parses every complete server frame buffered for a connection.
func (pp *pushPart) OnTraffic(c gnet.Conn) gnet.Action {
	s, _ := c.Context().(*subscriber)
	// in aliases the loop's inbound buffer and is valid only until Discard.
	in, _ := c.Peek(-1)
	now := time.Now().UnixNano()
	consumed := 0
	var t tally
	defer pp.flush(&t)
	if pp.cfg.Push.Transport == TransportSSE {
		for {
			data, n := nextEvent(in[consumed:])
			if n == 0 {
				break
			}
			consumed += n
			if s != nil && data != nil {
				pp.onMessage(s, data, now, &t)
			}
		}
		if consumed > 0 {
			_, _ = c.Discard(consumed)
		}
		return gnet.None
	}
	for {
		op, payload, n := parseServerFrame(in[consumed:])
		if n == 0 {
			break
		}
		consumed += n
		switch op {
		case ws.OpText:
			if s != nil {
				pp.onMessage(s, payload, now, &t)
			}
		case ws.OpPing:
			_, _ = c.Write(appendClientFrame(nil, ws.OpPong, payload))
		case ws.OpClose:
			pp.mu.Lock()
			pp.closes++
			pp.mu.Unlock()
			_, _ = c.Discard(consumed)
			return gnet.Close
		}
	}
	// Discard(0) would drop everything buffered, a partial frame included.
	if consumed > 0 {
		_, _ = c.Discard(consumed)
	}
	return gnet.None
}

// OnClose counts the connection out of the progress line and keeps the
// error that ended it, if any, as a read error.
func (pp *pushPart) OnClose(_ gnet.Conn, err error) gnet.Action {
	pp.m.open.Add(-1)
	if err != nil && !pp.stopping.Load() && pp.p != nil {
		pp.p.errs.add("read", err)
	}
	return gnet.None
}

// tally holds one read's first deliveries until flush adds them to the
// shared accounting under one lock.
type tally struct {
	n   int
	seq [64]uint32
	lat [64]int64 // ns
}

// flush adds t's deliveries to the part's accounting and empties t.
func (pp *pushPart) flush(t *tally) {
	if t.n == 0 {
		return
	}
	pp.mu.Lock()
	for i := range t.n {
		seq, lat := t.seq[i], t.lat[i]
		_ = pp.lat.RecordValue(max(lat/1000, 1))
		pp.recv[seq]++
		pp.lastNs[seq] = max(pp.lastNs[seq], lat)
	}
	pp.mu.Unlock()
	pp.m.recordAll(t.lat[:t.n])
	pp.m.msgs.Add(int64(t.n))
	t.n = 0
}

// onMessage accounts for one message to s: a publication's first arrival
// is a delivery (kept in t until flush), a second one a duplicate; an
// offset below the highest seen is out of order. p aliases the loop's
// buffer.
func (pp *pushPart) onMessage(s *subscriber, p []byte, now int64, t *tally) {
	seq, ok := jsonUint(p, `"seq":`)
	if !ok {
		return // not one of ours
	}
	var offset uint64
	switch {
	case bytes.HasPrefix(p, []byte(`{"op":"message"`)):
		offset, _ = jsonUint(p, `"offset":`)
	case bytes.HasPrefix(p, []byte(`{"seq":`)) && pp.cfg.Push.BroadcastURL != "":
		offset = seq + 1 // peers have no offsets; publication order stands in
	default:
		return
	}
	if seq >= uint64(pp.maxPubs) {
		return
	}
	if s.seen.add(seq, pp.maxPubs) {
		s.dups++
		return
	}
	if offset <= s.last {
		s.outOfOrder++
	} else {
		s.last = offset
	}
	sent, _ := jsonUint(p, `"t":`)
	if t.n == len(t.seq) {
		pp.flush(t)
	}
	t.seq[t.n], t.lat[t.n] = uint32(seq), now-int64(sent)
	t.n++
}

// fillPush tallies the parts' receipts against the publisher's list: a
// publication the API acknowledged is expected once at every measured
// subscriber of its channel.
func (r *Result) fillPush(cfg Config, m *merged, pub *publisher, pubErrs int, elapsed time.Duration) {
	if c := m.Churn; c != nil {
		r.Churn = &ChurnResult{
			Rate:        cfg.Churn.Rate,
			Stable:      c.Stable,
			Pool:        c.Pool,
			Connects:    c.Connects,
			Disconnects: c.Disconnects,
			Failures:    c.Failures,
			Connect:     summarise(m.churnConnect),
		}
		if s := elapsed.Seconds(); s > 0 {
			r.Churn.ConnectsPerSec = float64(c.Connects) / s
		}
	}
	if pub == nil || m.Push == nil {
		return
	}
	mp := m.Push
	subs := 0
	for _, n := range mp.PerChannel {
		subs += n
	}
	pubs := pub.list()
	var expected, delivered int64
	last := newHistogram()
	for seq, p := range pubs {
		if !p.ok {
			continue
		}
		var want, got int64
		if p.channel < len(mp.PerChannel) {
			want = int64(mp.PerChannel[p.channel])
		}
		if seq < len(mp.Received) {
			got = int64(mp.Received[seq])
			if got > 0 {
				_ = last.RecordValue(max(mp.LastNs[seq]/1000, 1))
			}
		}
		expected += want
		delivered += min(got, want)
	}
	r.Push = &PushResult{
		Subscribers:  subs,
		Channels:     cfg.Push.Channels,
		Publications: len(pubs),
		PublishErrs:  pubErrs,
		Expected:     expected,
		Delivered:    delivered,
		Lost:         expected - delivered,
		Duplicates:   mp.Duplicates,
		OutOfOrder:   mp.OutOfOrder,
		ServerCloses: mp.Closes,
		Latency:      summarise(m.latency),
		LastDelivery: summarise(last),
	}
	r.ErrorCount += int64(pubErrs)
	r.Messages = delivered
	if s := elapsed.Seconds(); s > 0 {
		r.MsgsPerSec = float64(delivered) / s
	}
}

// jsonUint reads the unsigned number after key in p.
func jsonUint(p []byte, key string) (uint64, bool) {
	i := bytes.Index(p, []byte(key))
	if i < 0 {
		return 0, false
	}
	var v uint64
	digits := 0
	for _, c := range p[i+len(key):] {
		if c < '0' || c > '9' {
			break
		}
		v = v*10 + uint64(c-'0')
		digits++
	}
	return v, digits > 0
}

// parseServerFrame parses one unmasked server frame; n == 0 means
// incomplete. payload aliases b.
func parseServerFrame(b []byte) (op ws.OpCode, payload []byte, n int) {
	if len(b) < 2 {
		return 0, nil, 0
	}
	op = ws.OpCode(b[0] & 0x0f)
	l := int(b[1] & 0x7f)
	h := 2
	switch l {
	case 126:
		if len(b) < 4 {
			return 0, nil, 0
		}
		l, h = int(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		if len(b) < 10 {
			return 0, nil, 0
		}
		l, h = int(binary.BigEndian.Uint64(b[2:])), 10
	}
	if len(b) < h+l {
		return 0, nil, 0
	}
	return op, b[h : h+l], h + l
}
