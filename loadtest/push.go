package loadtest

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
)

// PushConfig is the push scenario's part of Config.
type PushConfig struct {
	APIURL   string  // http://host:port of the API listener
	APIKey   string  // bearer key for /api/publish
	Channels int     // K: subscribers are spread over this many channels
	Rate     float64 // publications per second, round-robin over channels
	Prefix   string  // channel name prefix
	Loops    int     // client event loops; default 2
	// BroadcastURL switches to peer mode: connections do not subscribe,
	// publications are POSTed as raw JSON to this URL (a reference server's
	// POST /broadcast) and arrive unwrapped; Channels is then 1.
	BroadcastURL string
}

// publication is what the publisher knows of one message it published.
type publication struct {
	channel int
	offset  uint64
	sent    int64 // unix ns just before the API call
	ok      bool
	// filled by subscribers (atomically)
	lastNs   atomic.Int64 // latest delivery latency, ns
	received atomic.Int32
}

// subscriber is one subscribed connection, owned by a gnet client loop.
type subscriber struct {
	channel    int
	last       uint64   // highest offset seen
	seen       []uint64 // bitset over publication sequence numbers
	dups       int
	outOfOrder int
	closed     bool
}

// pushRun is the shared state of a push run.
type pushRun struct {
	gnet.BuiltinEventEngine
	cfg   Config
	start int64

	mu      sync.Mutex
	pubs    []*publication
	lat     *hdrhistogram.Histogram // every delivery
	closes  int
	maxPubs int
}

func runPush(ctx context.Context, cfg Config) (*Result, error) {
	pc := cfg.Push
	if pc.Channels <= 0 {
		pc.Channels = 1
	}
	if pc.Rate <= 0 {
		pc.Rate = 5
	}
	if pc.Prefix == "" {
		pc.Prefix = "load"
	}
	if pc.Loops <= 0 {
		pc.Loops = 2
	}
	if pc.BroadcastURL != "" {
		pc.Channels = 1
	} else if pc.APIURL == "" {
		return nil, fmt.Errorf("loadtest: push needs the API URL")
	}
	cfg.Push = pc
	r := &Result{Scenario: "push", URL: cfg.URL, Conns: cfg.Conns}
	run := &pushRun{cfg: cfg, lat: newHistogram()}
	run.maxPubs = int(pc.Rate*cfg.Duration.Seconds()) + 16
	run.pubs = make([]*publication, 0, run.maxPubs)

	cli, err := gnet.NewClient(run, gnet.WithMulticore(true), gnet.WithNumEventLoop(pc.Loops), gnet.WithReadBufferCap(64<<10))
	if err != nil {
		return nil, err
	}
	if err := cli.Start(); err != nil {
		return nil, err
	}
	defer func() { _ = cli.Stop() }()

	// Connect and subscribe with blocking sockets, then hand each socket to
	// the client's event loops.
	p := open(ctx, cfg)
	p.fill(r)
	subs := make([]*subscriber, 0, len(p.conns))
	var subErrs int
	for i, c := range p.conns {
		s := &subscriber{channel: i % pc.Channels, seen: make([]uint64, (run.maxPubs+63)/64)}
		if pc.BroadcastURL == "" { // peers' broadcast reaches everyone without a subscribe
			if err := subscribe(c, pc.Prefix+"-"+strconv.Itoa(s.channel), i+1); err != nil {
				subErrs++
				if len(r.Errors) < 5 {
					r.Errors = append(r.Errors, "subscribe: "+err.Error())
				}
				_ = c.Close()
				continue
			}
		}
		if _, err := cli.EnrollContext(c.Conn, s); err != nil {
			subErrs++
			continue
		}
		subs = append(subs, s)
	}
	p.conns = nil // ownership moved to gnet (EnrollContext closed the originals)
	r.Failures += subErrs

	var before procSample
	if cfg.ServerPID > 0 {
		if before, err = sampleProc(cfg.ServerPID); err != nil {
			return nil, fmt.Errorf("loadtest: sample server: %w", err)
		}
	}
	run.start = time.Now().UnixNano()
	pubErrs := run.publish(ctx)
	// Let the last publications arrive.
	sleep(ctx, time.Second)
	var after procSample
	if cfg.ServerPID > 0 {
		after, _ = sampleProc(cfg.ServerPID)
	}
	elapsed := time.Duration(time.Now().UnixNano() - run.start)

	// Tally on the loops' own state: stop them first.
	_ = cli.Stop()
	run.mu.Lock()
	defer run.mu.Unlock()
	var expected, delivered, lost, dups, ooo int64
	perChannel := make([][]int, pc.Channels) // seq numbers per channel
	for seq, pub := range run.pubs {
		if pub.ok {
			perChannel[pub.channel] = append(perChannel[pub.channel], seq)
		}
	}
	last := newHistogram()
	for _, pub := range run.pubs {
		if pub.ok && pub.received.Load() > 0 {
			_ = last.RecordValue(max(pub.lastNs.Load()/1000, 1))
		}
	}
	for _, s := range subs {
		for _, seq := range perChannel[s.channel] {
			expected++
			if s.seen[seq/64]&(1<<(seq%64)) != 0 {
				delivered++
			} else {
				lost++
			}
		}
		dups += int64(s.dups)
		ooo += int64(s.outOfOrder)
	}
	r.Push = &PushResult{
		Subscribers:  len(subs),
		Channels:     pc.Channels,
		Publications: len(run.pubs),
		PublishErrs:  pubErrs,
		Expected:     expected,
		Delivered:    delivered,
		Lost:         lost,
		Duplicates:   dups,
		OutOfOrder:   ooo,
		ServerCloses: run.closes,
		Latency:      summarise(run.lat),
		LastDelivery: summarise(last),
	}
	r.Messages = delivered
	r.MsgsPerSec = float64(delivered) / elapsed.Seconds()
	r.Seconds = elapsed.Seconds()
	if cfg.ServerPID > 0 {
		r.Server = usage(cfg.ServerPID, before, after)
		if delivered > 0 {
			r.Server.CPUPerMessage = r.Server.CPUSeconds * 1e6 / float64(delivered)
		}
	}
	return r, nil
}

// subscribe sends a subscribe frame and waits for its ack on the blocking
// socket.
func subscribe(c *conn, channel string, id int) error {
	req := fmt.Sprintf(`{"op":"subscribe","channel":%q,"id":%d}`, channel, id)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	defer func() { _ = c.SetDeadline(time.Time{}) }()
	if _, err := c.Write(appendClientFrame(nil, ws.OpText, []byte(req))); err != nil {
		return err
	}
	var buf []byte
	for {
		f, b, err := c.readFrame(buf)
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

// publish calls the API at the configured rate for the run's duration and
// returns how many calls failed.
func (run *pushRun) publish(ctx context.Context) int {
	pc := run.cfg.Push
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	u := pc.APIURL + "/api/publish"
	if pc.BroadcastURL != "" {
		u = pc.BroadcastURL
	}
	interval := time.Duration(float64(time.Second) / pc.Rate)
	deadline := time.Now().Add(run.cfg.Duration)
	var wg sync.WaitGroup
	var errs atomic.Int32
	sem := make(chan struct{}, 64)
	for seq := 0; seq < run.maxPubs && time.Now().Before(deadline) && ctx.Err() == nil; seq++ {
		due := time.Unix(0, run.start).Add(time.Duration(seq) * interval)
		if d := time.Until(due); d > 0 {
			sleep(ctx, d)
		}
		pub := &publication{channel: seq % pc.Channels}
		run.mu.Lock()
		run.pubs = append(run.pubs, pub)
		run.mu.Unlock()
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			pub.sent = time.Now().UnixNano()
			body := fmt.Sprintf(`{"channel":"%s-%d","data":{"seq":%d,"t":%d}}`, pc.Prefix, pub.channel, seq, pub.sent)
			if pc.BroadcastURL != "" {
				body = fmt.Sprintf(`{"seq":%d,"t":%d}`, seq, pub.sent)
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader([]byte(body)))
			req.Header.Set("Content-Type", "application/json")
			if pc.APIKey != "" {
				req.Header.Set("Authorization", "Bearer "+pc.APIKey)
			}
			resp, err := client.Do(req)
			if err != nil {
				errs.Add(1)
				return
			}
			defer resp.Body.Close()
			var out struct {
				Offset uint64 `json:"offset"`
			}
			if pc.BroadcastURL != "" {
				if resp.StatusCode/100 != 2 {
					errs.Add(1)
					return
				}
				out.Offset = uint64(seq) + 1
			} else if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&out) != nil {
				errs.Add(1)
				return
			}
			run.mu.Lock()
			pub.offset, pub.ok = out.Offset, true
			run.mu.Unlock()
		}()
	}
	wg.Wait()
	return int(errs.Load())
}

// OnTraffic parses every complete server frame buffered for a subscriber.
func (run *pushRun) OnTraffic(c gnet.Conn) gnet.Action {
	s, _ := c.Context().(*subscriber)
	in, _ := c.Peek(-1)
	now := time.Now().UnixNano()
	consumed := 0
	for {
		op, payload, n := parseServerFrame(in[consumed:])
		if n == 0 {
			break
		}
		consumed += n
		switch op {
		case ws.OpText:
			run.onMessage(s, payload, now)
		case ws.OpPing:
			_, _ = c.Write(appendClientFrame(nil, ws.OpPong, payload))
		case ws.OpClose:
			run.mu.Lock()
			run.closes++
			run.mu.Unlock()
			_, _ = c.Discard(consumed)
			return gnet.Close
		}
	}
	_, _ = c.Discard(consumed)
	return gnet.None
}

func (run *pushRun) onMessage(s *subscriber, p []byte, now int64) {
	if s == nil {
		return
	}
	seq := jsonUint(p, `"seq":`)
	var offset uint64
	switch {
	case bytes.HasPrefix(p, []byte(`{"op":"message"`)):
		offset = jsonUint(p, `"offset":`)
	case bytes.HasPrefix(p, []byte(`{"seq":`)) && run.cfg.Push.BroadcastURL != "":
		offset = seq + 1 // peers have no offsets; publication order stands in
	default:
		return
	}
	sent := int64(jsonUint(p, `"t":`))
	if offset <= s.last {
		if offset == s.last {
			s.dups++
		} else {
			s.outOfOrder++
		}
	} else {
		s.last = offset
	}
	if seq >= uint64(len(s.seen)*64) {
		return
	}
	if s.seen[seq/64]&(1<<(seq%64)) != 0 {
		s.dups++
		return
	}
	s.seen[seq/64] |= 1 << (seq % 64)
	lat := now - sent
	run.mu.Lock()
	_ = run.lat.RecordValue(max(lat/1000, 1))
	var pub *publication
	if int(seq) < len(run.pubs) {
		pub = run.pubs[seq]
	}
	run.mu.Unlock()
	if pub != nil {
		pub.received.Add(1)
		for {
			old := pub.lastNs.Load()
			if lat <= old || pub.lastNs.CompareAndSwap(old, lat) {
				break
			}
		}
	}
}

// jsonUint reads the unsigned number after key in p (0 if absent).
func jsonUint(p []byte, key string) uint64 {
	i := bytes.Index(p, []byte(key))
	if i < 0 {
		return 0
	}
	var v uint64
	for _, c := range p[i+len(key):] {
		if c < '0' || c > '9' {
			break
		}
		v = v*10 + uint64(c-'0')
	}
	return v
}

// parseServerFrame parses one unmasked server frame; n == 0 means
// incomplete.
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

// apiURLFrom derives http://host:8081 style API URLs from a ws URL when the
// caller did not give one: same host, port + 1.
func apiURLFrom(wsURL string) string {
	u, err := url.Parse(wsURL)
	if err != nil {
		return ""
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		return ""
	}
	return "http://" + u.Hostname() + ":" + strconv.Itoa(port+1)
}
