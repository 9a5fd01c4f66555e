package loadtest

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Config describes one run.
type Config struct {
	Scenario string // "connect", "echo", "push" or "churn"
	// URL is ws://host:port/path or wss://host:port/path (through a TLS
	// proxy), or a comma-separated list of them (several server processes
	// or cluster nodes): connections are spread over the list round-robin.
	URL       string
	Conns     int           // connections to open (churn: to keep open)
	Rate      int           // connections opened per second; 0: as fast as possible
	Duration  time.Duration // how long to hold (connect) or drive (echo, push, churn) after set-up
	Size      int           // echo: message size in bytes (>= 8)
	InFlight  int           // echo: messages in flight per connection
	SourceIPs []net.IP      // local addresses to spread connections over; empty: kernel's choice
	ServerPID int           // sample this process's RSS and CPU; 0: none
	// DialTimeout bounds each connection's TCP connect and upgrade.
	DialTimeout time.Duration
	// Settle is how long connect waits after the last connection opens
	// before it samples the server's memory.
	Settle time.Duration
	// Push configures the push scenario and the churn scenario's publisher.
	Push PushConfig
	// Churn configures the churn scenario.
	Churn ChurnConfig
	// Procs > 1 runs the connections in that many worker processes (see
	// WorkerArgs) and merges their figures; SourceIPs are partitioned so
	// that no two workers share an address.
	Procs int
	// WorkerArgs is the command that starts one worker process; empty
	// means this executable with `loadtest -worker`. The command must call
	// ReadAssignment and Assignment.Serve on its stdin and stdout.
	WorkerArgs []string `json:"-"`
	// TLS configures wss:// connections and https:// API calls.
	TLS TLSConfig
	// Progress, when not nil, receives a one-line summary once per second:
	// connections open, messages per second, p99 of the last interval.
	Progress io.Writer `json:"-"`

	urls          []*url.URL             // URL parsed
	tlsByHost     map[string]*tls.Config // per wss:// host (ServerName set); built by defaults
	tlsBase       *tls.Config            // for the publisher's https:// calls; nil: Go's defaults
	progressEvery time.Duration          // tests shorten it; 0: one second
}

// Params are a run's parameters as the -out JSON records them: Config
// without the process-local parts, the API key redacted.
type Params struct {
	Scenario     string   `json:"scenario"`
	URL          string   `json:"url"`
	Conns        int      `json:"conns"`
	Rate         int      `json:"rate"`
	Duration     string   `json:"duration"`
	Size         int      `json:"size,omitempty"`
	InFlight     int      `json:"inflight,omitempty"`
	SourceIPs    int      `json:"source_ips,omitempty"` // how many addresses
	ServerPID    int      `json:"server_pid,omitempty"`
	DialTimeout  string   `json:"dial_timeout"`
	Settle       string   `json:"settle,omitempty"`
	Procs        int      `json:"procs"`
	APIURL       string   `json:"api_url,omitempty"`
	APIKey       string   `json:"api_key,omitempty"` // "(set)" when one was given; never the key
	Channels     int      `json:"channels,omitempty"`
	PubRate      float64  `json:"pub_rate,omitempty"`
	Prefix       string   `json:"channel_prefix,omitempty"`
	ClientLoops  int      `json:"client_loops,omitempty"`
	BroadcastURL string   `json:"broadcast_url,omitempty"`
	Transport    string   `json:"transport,omitempty"`
	Concurrency  int      `json:"publish_concurrency,omitempty"`
	Drain        string   `json:"drain,omitempty"`
	Batch        int      `json:"publish_batch,omitempty"`
	ChurnRate    float64  `json:"churn_rate,omitempty"`
	ChurnStable  float64  `json:"churn_stable,omitempty"`
	Thresholds   []string `json:"thresholds,omitempty"` // -assert, filled in by the caller
}

// params records c (after defaults) for the Result.
func (c Config) params() *Params {
	p := &Params{
		Scenario: c.Scenario, URL: c.URL, Conns: c.Conns, Rate: c.Rate, Duration: c.Duration.String(),
		SourceIPs: len(c.SourceIPs), ServerPID: c.ServerPID, DialTimeout: c.DialTimeout.String(), Procs: c.Procs,
	}
	switch c.Scenario {
	case "echo":
		p.Size, p.InFlight = c.Size, c.InFlight
	case "connect":
		p.Settle = c.Settle.String()
	case "push", "churn":
		p.APIURL, p.Channels, p.PubRate, p.Prefix, p.ClientLoops, p.BroadcastURL =
			c.Push.APIURL, c.Push.Channels, c.Push.Rate, c.Push.Prefix, c.Push.Loops, c.Push.BroadcastURL
		p.Transport, p.Concurrency, p.Drain = c.Push.Transport, c.Push.Concurrency, c.Push.Drain.String()
		if c.Push.Batch > 1 {
			p.Batch = c.Push.Batch
		}
		if c.Push.APIKey != "" {
			p.APIKey = "(set)"
		}
		if c.Scenario == "churn" {
			p.ChurnRate, p.ChurnStable = c.Churn.Rate, c.Churn.Stable
		}
	}
	return p
}

// ChurnConfig is the churn scenario's part of Config.
type ChurnConfig struct {
	// Rate is connections closed and opened per second.
	Rate float64
	// Stable is the fraction of Conns that is never churned (the
	// subscribers whose deliveries are measured); default 0.5.
	Stable float64
}

func (c *Config) defaults() error {
	if c.DialTimeout == 0 {
		c.DialTimeout = 10 * time.Second
	}
	if c.Settle == 0 {
		c.Settle = 2 * time.Second
	}
	if c.Size == 0 {
		c.Size = 64
	}
	if c.InFlight == 0 {
		c.InFlight = 1
	}
	if c.Procs == 0 {
		c.Procs = 1
	}
	if c.Scenario == "churn" && c.Churn.Stable == 0 {
		c.Churn.Stable = 0.5
	}
	switch {
	case c.Conns <= 0:
		return errors.New("loadtest: conns must be > 0")
	case c.Duration <= 0:
		return errors.New("loadtest: duration must be > 0")
	case c.Size < 8:
		return errors.New("loadtest: size must be >= 8 (a send timestamp rides in each message)")
	case c.Rate < 0 || c.InFlight < 0:
		return errors.New("loadtest: rate and in-flight must not be negative")
	case c.Procs < 0 || c.Procs > c.Conns:
		return fmt.Errorf("loadtest: procs must be between 1 and conns (%d)", c.Conns)
	case c.Procs > 1 && len(c.SourceIPs) > 0 && len(c.SourceIPs) < c.Procs:
		return fmt.Errorf("loadtest: %d source addresses cannot be split over %d processes", len(c.SourceIPs), c.Procs)
	case c.Scenario == "churn" && c.Churn.Rate <= 0:
		return errors.New("loadtest: churn needs a churn rate > 0")
	case c.Churn.Stable < 0 || c.Churn.Stable > 1:
		return errors.New("loadtest: the stable fraction must be between 0 and 1")
	}
	urls, err := parseURLs(c.URL)
	if err != nil {
		return err
	}
	c.urls = urls
	if err := c.tlsDefaults(); err != nil {
		return err
	}
	if c.Scenario == "push" || c.Scenario == "churn" {
		if c.Push.APIURL == "" {
			c.Push.APIURL = apiURLsFrom(urls)
		}
		return c.pushDefaults()
	}
	return nil
}

// urlOf is the URL of a part's local connection i: the run's URLs are
// used round-robin by global connection number.
func (c *Config) urlOf(sh share, i int) *url.URL {
	return c.urls[sh.global(i)%len(c.urls)]
}

// parseURLs splits a comma-separated list of ws:// and wss:// URLs.
func parseURLs(s string) ([]*url.URL, error) {
	var out []*url.URL
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		u, err := url.Parse(part)
		if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
			return nil, fmt.Errorf("loadtest: url %q is not ws://host:port/path or wss://host:port/path", part)
		}
		out = append(out, u)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("loadtest: no url in %q", s)
	}
	return out, nil
}

// checkHTTPURLs checks every entry of a comma-separated list of HTTP
// endpoints before the run, since a URL the HTTP client cannot use would
// otherwise fail every publication, one by one.
func checkHTTPURLs(flagName, list string) error {
	parts := splitList(list)
	if len(parts) == 0 {
		return fmt.Errorf("loadtest: %s %q holds no URL", flagName, list)
	}
	for _, part := range parts {
		u, err := url.Parse(part)
		switch {
		case err != nil || !strings.Contains(part, "://"):
			return fmt.Errorf("loadtest: %s %q is not a URL with a scheme: write http://%s", flagName, part, strings.TrimPrefix(part, "//"))
		case u.Scheme != "http" && u.Scheme != "https":
			return fmt.Errorf("loadtest: %s %q: the scheme must be http or https, not %s", flagName, part, u.Scheme)
		case u.Host == "":
			return fmt.Errorf("loadtest: %s %q has no host", flagName, part)
		}
	}
	return nil
}

// splitList splits a comma-separated list, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// HardDeadline is the longest a run of c may take: set-up (every
// connection at a quarter of Rate, or at no less than 1,000 per second,
// plus a dial timeout and a margin for subscribing), Duration, and a drain
// margin. Run gives up at this point, and `herald loadtest` exits shortly
// after.
func (c Config) HardDeadline() time.Duration {
	_ = c.defaults()
	setup := c.DialTimeout + 30*time.Second
	if c.Rate > 0 {
		// Four times the time the rate implies: a loaded machine falls
		// behind it (600,000 subscribers of a channel each, every
		// subscribe a NATS subscription and a JetStream read, connected
		// at 1,300/s of the 3,000/s asked, and half of Rate cut that run
		// off while it published).
		setup += time.Duration(4 * float64(c.Conns) / float64(c.Rate) * float64(time.Second))
	} else {
		setup += time.Duration(c.Conns) * time.Millisecond
	}
	return setup + c.Duration + c.Push.Drain + c.StopMargin()
}

// StopMargin is how long the run allows, after stop, for every connection
// to be closed and every worker to report: 30 s, plus 100 µs per
// connection. Closing is work on both ends of every socket, shared by all
// the workers and server processes on the machine: at 600,000 connections
// on two cores it took longer than a fixed 30 s.
func (c Config) StopMargin() time.Duration {
	return 30*time.Second + time.Duration(c.Conns)*100*time.Microsecond
}

// ParseIPRange parses "127.0.0.2-127.0.0.254", a single address, or a
// comma-separated list of either, into the addresses it covers.
func ParseIPRange(s string) ([]net.IP, error) {
	var out []net.IP
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a := net.ParseIP(strings.TrimSpace(lo)).To4()
		if a == nil {
			return nil, fmt.Errorf("loadtest: %q is not an IPv4 address", lo)
		}
		if !isRange {
			out = append(out, a)
			continue
		}
		b := net.ParseIP(strings.TrimSpace(hi)).To4()
		if b == nil {
			return nil, fmt.Errorf("loadtest: %q is not an IPv4 address", hi)
		}
		from, to := ipToU32(a), ipToU32(b)
		if to < from || to-from > 1<<16 {
			return nil, fmt.Errorf("loadtest: bad address range %q", part)
		}
		for v := from; v <= to; v++ {
			out = append(out, net.IPv4(byte(v>>24), byte(v>>16), byte(v>>8), byte(v)).To4())
		}
	}
	return out, nil
}

func ipToU32(ip net.IP) uint32 {
	return uint32(ip[0])<<24 | uint32(ip[1])<<16 | uint32(ip[2])<<8 | uint32(ip[3])
}

// PartitionIPs splits ips into n disjoint, contiguous parts whose sizes
// differ by at most one, so that n processes never share a source
// address. With no addresses every part is empty (the kernel chooses);
// with fewer addresses than parts it fails.
func PartitionIPs(ips []net.IP, n int) ([][]net.IP, error) {
	if n <= 0 {
		return nil, fmt.Errorf("loadtest: cannot split addresses into %d parts", n)
	}
	out := make([][]net.IP, n)
	if len(ips) == 0 {
		return out, nil
	}
	if len(ips) < n {
		return nil, fmt.Errorf("loadtest: %d source addresses cannot be split over %d processes", len(ips), n)
	}
	start := 0
	for i := range n {
		size := len(ips) / n
		if i < len(ips)%n {
			size++
		}
		out[i] = ips[start : start+size : start+size]
		start += size
	}
	return out, nil
}

// shareOf is how many of total items part i of n gets.
func shareOf(total, i, n int) int {
	s := total / n
	if i < total%n {
		s++
	}
	return s
}

// apiURLsFrom derives the API URLs of a list of WebSocket URLs, once per
// distinct host: for ws:// Herald's own layout (same host, port + 1), for
// wss:// the same https:// host and port, since a TLS proxy serves /ws and
// /api/ side by side (see docs/deployment.md).
func apiURLsFrom(urls []*url.URL) string {
	var out []string
	seen := map[string]bool{}
	for _, u := range urls {
		var a string
		if u.Scheme == "wss" {
			a = "https://" + u.Host
		} else {
			port, err := strconv.Atoi(u.Port())
			if err != nil {
				continue
			}
			a = "http://" + net.JoinHostPort(u.Hostname(), strconv.Itoa(port+1))
		}
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	return strings.Join(out, ",")
}
