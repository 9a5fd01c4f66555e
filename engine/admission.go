package engine

import (
	"bytes"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/herald-ws/herald/codec"
)

// Admission under reconnect storms. When a node restarts, every client it
// held comes back within a second or two; admitting them all at once
// starves the loops that serve the clients already in. Two bounds apply in
// OnOpen, before a byte of the request is read:
//
//   - Config.UpgradeRate: new connections per second per node, a token
//     bucket per loop (rate/loops each, a burst of one second's worth).
//     Past it the connection gets 503 with a Retry-After drawn at random
//     from one second up to the time the loop needs to admit the clients it
//     refused lately, so that a storm spreads itself out instead of coming
//     back in one wave.
//   - Config.MaxConnsPerIP: open connections per source address; past it
//     429. The count lives in one map shared by the loops, an entry per
//     address with connections, removed when its count falls to 0.

// maxRetryAfter caps the Retry-After of a rate refusal, in seconds.
const maxRetryAfter = 60

// bucket is one loop's share of the upgrade rate. Only that loop touches it.
type bucket struct {
	tokens  float64
	last    time.Time
	window  time.Time // start of the current one-second refusal window
	refused [2]int    // refusals in the previous and the current window
}

// take reports whether a connection may be admitted at now, refilling at
// rate per second up to burst; a refusal is counted.
func (b *bucket) take(now time.Time, rate, burst float64) bool {
	if b.last.IsZero() {
		b.tokens, b.last, b.window = burst, now, now
	}
	b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()*rate)
	b.last = now
	if d := now.Sub(b.window); d >= time.Second {
		if d >= 2*time.Second {
			b.refused[0] = 0
		} else {
			b.refused[0] = b.refused[1]
		}
		b.refused[1] = 0
		b.window = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true
	}
	b.refused[1]++
	return false
}

// retryAfter picks a refused client's wait: uniform between 1 s and the
// time this loop needs, at rate, to admit the clients it refused in the
// last two windows (each of them is coming back), plus a fifth.
func (b *bucket) retryAfter(rate float64) int {
	backlog := float64(b.refused[0] + b.refused[1])
	spread := int(math.Ceil(backlog/rate*1.2)) + 1
	spread = min(max(spread, 1), maxRetryAfter)
	return 1 + rand.IntN(spread)
}

// perIP counts open connections by source address.
type perIP struct {
	mu   sync.Mutex
	n    map[netip.Addr]int32
	peak int // the most addresses n held since it was last copied
}

func ipOf(a net.Addr) (netip.Addr, bool) {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort().Addr().Unmap(), true
	}
	return netip.Addr{}, false
}

// add counts one more connection from ip unless that passes limit.
func (p *perIP) add(ip netip.Addr, limit int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if int(p.n[ip]) >= limit {
		return false
	}
	p.n[ip]++
	return true
}

func (p *perIP) remove(ip netip.Addr) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := p.n[ip] - 1; n > 0 {
		p.n[ip] = n
		return
	}
	p.peak = max(p.peak, len(p.n))
	delete(p.n, ip)
	// A Go map keeps its buckets after deletes: once a storm from many
	// addresses is over, the map is copied down to what it holds.
	if p.peak >= 1024 && len(p.n) < p.peak/4 {
		c := make(map[netip.Addr]int32, len(p.n))
		for k, v := range p.n {
			c[k] = v
		}
		p.n, p.peak = c, len(c)
	}
}

// addresses is how many source addresses have connections counted.
func (p *perIP) addresses() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.n)
}

// rateRefusals are the 503 answers of a rate refusal, one per Retry-After
// value from 1 to maxRetryAfter, built once.
func rateRefusals() [][]byte {
	base := codec.AppendHTTPError(nil, 503, "server admitting connections at its -upgrade-rate; retry after the time given")
	out := make([][]byte, maxRetryAfter+1)
	for i := 1; i <= maxRetryAfter; i++ {
		out[i] = bytes.Replace(base, []byte("Retry-After: 1\r\n"), []byte("Retry-After: "+strconv.Itoa(i)+"\r\n"), 1)
	}
	return out
}

// admit applies the per-address and rate bounds to a connection OnOpen
// has counted; a refusal returns the answer to write before closing.
func (s *Server) admit(c gnet.Conn, l *loop, now time.Time) (refusal []byte) {
	var ip netip.Addr
	counted := false
	if s.cfg.MaxConnsPerIP > 0 {
		var ok bool
		if ip, ok = ipOf(c.RemoteAddr()); ok {
			if !s.perIP.add(ip, s.cfg.MaxConnsPerIP) {
				s.stats.Refuse(429)
				s.refusedPerIP.Add(1)
				return s.ipRefusal
			}
			counted = true
		}
	}
	if s.cfg.UpgradeRate > 0 {
		rate := s.cfg.UpgradeRate / float64(s.cfg.Loops)
		if !l.bucket.take(now, rate, max(1, rate)) {
			if counted {
				s.perIP.remove(ip)
			}
			s.stats.Refuse(503)
			s.refusedRate.Add(1)
			return s.rateRefusal[l.bucket.retryAfter(rate)]
		}
	}
	return nil
}

// AdmissionStats are the counts of connections refused by the storm bounds.
type AdmissionStats struct {
	RefusedRate  int64 // past -upgrade-rate (503)
	RefusedPerIP int64 // past -max-conns-per-ip (429)
	Addresses    int   // source addresses with connections counted (0 unless -max-conns-per-ip)
}

// Admission reports the storm bounds' refusals.
func (s *Server) Admission() AdmissionStats {
	a := AdmissionStats{RefusedRate: s.refusedRate.Load(), RefusedPerIP: s.refusedPerIP.Load()}
	if s.cfg.MaxConnsPerIP > 0 {
		a.Addresses = s.perIP.addresses()
	}
	return a
}
