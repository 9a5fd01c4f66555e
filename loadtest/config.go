package loadtest

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// Config describes one run.
type Config struct {
	Scenario  string        // "connect" or "echo"
	URL       string        // ws://host:port/path
	Conns     int           // connections to open
	Rate      int           // connections opened per second; 0: as fast as possible
	Duration  time.Duration // how long to hold (connect) or drive (echo) after set-up
	Size      int           // echo: message size in bytes (>= 8)
	InFlight  int           // echo: messages in flight per connection
	SourceIPs []net.IP      // local addresses to spread connections over; empty: kernel's choice
	ServerPID int           // sample this process's RSS and CPU; 0: none
	// DialTimeout bounds each connection's TCP connect and upgrade.
	DialTimeout time.Duration
	// Settle is how long connect waits after the last connection opens
	// before it samples the server's memory.
	Settle time.Duration
	// Push configures the push scenario.
	Push PushConfig
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
	switch {
	case c.Conns <= 0:
		return errors.New("loadtest: conns must be > 0")
	case c.Duration <= 0:
		return errors.New("loadtest: duration must be > 0")
	case c.Size < 8:
		return errors.New("loadtest: size must be >= 8 (a send timestamp rides in each message)")
	case c.Rate < 0 || c.InFlight < 0:
		return errors.New("loadtest: rate and in-flight must not be negative")
	}
	u, err := url.Parse(c.URL)
	if err != nil || u.Scheme != "ws" || u.Host == "" {
		return fmt.Errorf("loadtest: url %q is not ws://host:port/path", c.URL)
	}
	if c.Scenario == "push" && c.Push.APIURL == "" {
		c.Push.APIURL = apiURLFrom(c.URL)
	}
	return nil
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
