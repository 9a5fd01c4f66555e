package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/herald-ws/herald/codec"
	"github.com/herald-ws/herald/session"
)

// Config configures a Server. Zero values take the documented defaults.
type Config struct {
	Addr       string // host:port; port 0 picks a free port (see Server.Addr)
	Loops      int    // event loops; default GOMAXPROCS
	MaxConns   int    // open connections past which new ones get HTTP 503; 0: no limit
	ReusePort  bool
	TCPNoDelay bool
	// UpgradeRate bounds new connections per second over the node (503
	// with a jittered Retry-After past it); MaxConnsPerIP bounds the open
	// connections of one source address (429 past it). 0: no bound. See
	// admission.go.
	UpgradeRate   float64
	MaxConnsPerIP int
	Session       session.Config
	Logger        *slog.Logger
}

// Server is a running client listener.
type Server struct {
	gnet.BuiltinEventEngine

	cfg    Config
	log    *slog.Logger
	stats  session.Stats
	tick   time.Duration
	reject []byte // the 503 response, built once

	// Storm admission (admission.go).
	rateRefusal  [][]byte // 503 answers by Retry-After
	ipRefusal    []byte   // the 429 answer
	perIP        perIP
	refusedRate  atomic.Int64
	refusedPerIP atomic.Int64

	conns    atomic.Int64
	churn    atomic.Int64 // connections opened plus closed, for settle
	settle   settler
	draining atomic.Bool

	eng    gnet.Engine
	addr   net.Addr
	booted chan struct{}
	ran    chan error
	start  sync.Once
	stop   sync.Once // Shutdown and Stop stop the engine once
	runErr error     // what gnet.Run returned

	waker *writeWaker

	mu      sync.RWMutex // guards loops and byIndex; taken for writing once per loop
	loops   map[gnet.EventLoop]*loop
	byIndex []*loop
}

// loop is one event loop's connection list and task inbox. Only that
// loop's goroutine touches conns (in gnet callbacks and tasks); any
// goroutine may add to the inbox.
type loop struct {
	el    gnet.EventLoop
	idx   int
	state *session.Loop
	conns connList
	open  atomic.Int64 // connections on this loop, readable from any goroutine (metrics)
	// backlogged are the connections waiting for their socket to drain,
	// by fd; the write waker's wake-ups are looked up here.
	backlogged map[int32]*conn
	waker      *writeWaker
	bucket     bucket // this loop's share of -upgrade-rate

	// The inbox keeps tasks in the order they were given. gnet's Execute
	// does not: past 1,024 queued tasks it spills into a second queue and
	// later tasks can overtake earlier ones, which would reorder a
	// channel's publications. One Execute drains the whole inbox.
	inboxMu   sync.Mutex
	inbox     []func()
	ready     []int32  // fds the write waker found writable
	scheduled bool     // a drain is queued with gnet
	spare     []func() // the previous batch's backing array; loop goroutine only
	spareFds  []int32  // likewise for ready
}

// exec runs f on the loop after every function given before it.
func (l *loop) exec(f func()) error {
	l.inboxMu.Lock()
	l.inbox = append(l.inbox, f)
	if l.scheduled {
		l.inboxMu.Unlock()
		return nil
	}
	l.scheduled = true
	l.inboxMu.Unlock()
	return l.el.Execute(context.Background(), gnet.RunnableFunc(l.drain))
}

// wakeWritable queues fd for OnWritable on the loop; the write waker calls it.
func (l *loop) wakeWritable(fd int) {
	l.inboxMu.Lock()
	l.ready = append(l.ready, int32(fd))
	if l.scheduled {
		l.inboxMu.Unlock()
		return
	}
	l.scheduled = true
	l.inboxMu.Unlock()
	_ = l.el.Execute(context.Background(), gnet.RunnableFunc(l.drain))
}

// drain runs on the loop: every queued function, in order, then the
// sockets found writable.
func (l *loop) drain(context.Context) error {
	l.inboxMu.Lock()
	batch, fds := l.inbox, l.ready
	l.inbox, l.ready = l.spare[:0], l.spareFds[:0]
	l.scheduled = false
	l.inboxMu.Unlock()
	for i, f := range batch {
		f()
		batch[i] = nil
	}
	l.spare = batch[:0]
	for _, fd := range fds {
		e := l.backlogged[fd]
		if e == nil {
			continue // closed meanwhile, or a stale wake-up
		}
		if e.OnWritable() {
			_ = l.el.Close(e.gc())
			continue
		}
		if e.Backlog() == 0 {
			delete(l.backlogged, fd)
		}
	}
	l.spareFds = fds[:0]
	return nil
}

// waitWritable is the sessions' session.Loop.WaitWritable.
func (l *loop) waitWritable(s *session.Session) error {
	gc, _ := s.Conn().(gnet.Conn)
	if gc == nil {
		return ErrNotStarted
	}
	e, _ := gc.Context().(*conn)
	if e == nil {
		return ErrNotStarted
	}
	fd := gc.Fd()
	if l.backlogged == nil {
		l.backlogged = make(map[int32]*conn)
	}
	l.backlogged[int32(fd)] = e
	return l.waker.arm(fd, l.idx)
}

// conn is a session, whose Conn is gnet's connection. Its index in the
// loop's list is the session's Slot. An idle server holds one per connection, so it is
// kept to 112 bytes (a malloc size class): the loop is found from gnet's
// connection when needed, not stored.
type conn struct {
	session.Session
}

// gc is gnet's connection, which the session holds as its Conn.
func (e *conn) gc() gnet.Conn { return e.Conn().(gnet.Conn) }

// writeSocket is the sessions' session.Loop.WriteConn: writes go straight
// to the socket, never into gnet's outbound buffer (a session keeps its own
// backlog; see session.Session.Flush). It returns how much the kernel took;
// a full socket buffer is not an error.
func writeSocket(c session.Conn, p []byte) (int, error) {
	fd := c.Fd()
	n := 0
	for n < len(p) {
		m, err := unix.Write(fd, p[n:])
		switch err {
		case nil:
			n += m
		case unix.EINTR:
		case unix.EAGAIN:
			return n, nil
		default:
			return n, err
		}
	}
	return n, nil
}

// New validates cfg and returns a Server that is not yet listening.
func New(cfg Config) (*Server, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:8080"
	}
	if cfg.Loops <= 0 {
		cfg.Loops = runtime.GOMAXPROCS(0)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	sc := &cfg.Session
	if sc.CloseTimeout <= 0 {
		sc.CloseTimeout = 3 * time.Second
	}
	s := &Server{
		cfg:    cfg,
		log:    cfg.Logger,
		booted: make(chan struct{}),
		ran:    make(chan error, 1),
		loops:  make(map[gnet.EventLoop]*loop),
		reject: codec.AppendHTTPError(nil, 503, "server at connection limit"),
	}
	if cfg.UpgradeRate > 0 {
		s.rateRefusal = rateRefusals()
	}
	if cfg.MaxConnsPerIP > 0 {
		s.ipRefusal = codec.AppendHTTPError(nil, 429, "too many connections from this address (-max-conns-per-ip)")
		s.perIP.n = make(map[netip.Addr]int32)
	}
	s.tick = tickInterval(sc.HandshakeTimeout, sc.IdleTimeout, sc.PingInterval, sc.CloseTimeout)
	return s, nil
}

// tickInterval is a quarter of the shortest deadline, between 20 ms and 1 s,
// so every timeout fires at most 25% late.
func tickInterval(ds ...time.Duration) time.Duration {
	t := time.Second
	for _, d := range ds {
		if d > 0 && d/4 < t {
			t = d / 4
		}
	}
	return max(t, 20*time.Millisecond)
}

// Start begins listening and returns once the listener is bound, or with the
// error that prevented it.
func (s *Server) Start() error {
	err := ErrAlreadyStarted
	s.start.Do(func() {
		s.waker, err = newWriteWaker()
		if err != nil {
			return
		}
		// The second goroutine the engine starts: it waits for sockets with a backlog to
		// drain (see writeWaker).
		go s.waker.run(s.wakeWritable)
		nodelay := gnet.TCPDelay
		if s.cfg.TCPNoDelay {
			nodelay = gnet.TCPNoDelay
		}
		// The first goroutine: it runs gnet (which starts the event
		// loops) until the server stops. Connections get none.
		go func() {
			s.ran <- gnet.Run(s, "tcp://"+s.cfg.Addr,
				gnet.WithMulticore(true),
				gnet.WithNumEventLoop(s.cfg.Loops),
				gnet.WithReusePort(s.cfg.ReusePort),
				// A restarted node must bind while its old connections sit in
				// TIME_WAIT; net.Listen sets this, gnet does not by default.
				gnet.WithReuseAddr(true),
				gnet.WithTCPNoDelay(nodelay),
				gnet.WithTicker(true),
				gnet.WithLogger(gnetLogger{s.log}),
			)
		}()
		select {
		case <-s.booted:
			err = nil
		case err = <-s.ran:
			if err == nil {
				err = fmt.Errorf("engine: gnet stopped before boot")
			}
			s.waker.close()
		}
	})
	return err
}

// wakeWritable runs on the write waker's goroutine.
func (s *Server) wakeWritable(idx, fd int) {
	s.mu.RLock()
	var l *loop
	if idx < len(s.byIndex) {
		l = s.byIndex[idx]
	}
	s.mu.RUnlock()
	if l != nil {
		l.wakeWritable(fd)
	}
}

// Addr is the bound address (useful with port 0). Valid after Start.
func (s *Server) Addr() net.Addr { return s.addr }

// Stats returns the live counters.
func (s *Server) Stats() *session.Stats { return &s.stats }

// Conns reports the open connections, including those still upgrading.
func (s *Server) Conns() int64 { return s.conns.Load() }

// MaxConns is the configured connection limit (0: none).
func (s *Server) MaxConns() int { return s.cfg.MaxConns }

// LoopConns reports the open connections of each event loop, indexed by
// loop (Loops entries; a loop that never had a connection reports 0).
// Safe from any goroutine.
func (s *Server) LoopConns() []int64 {
	out := make([]int64, s.cfg.Loops)
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, l := range s.byIndex {
		if l.idx < len(out) {
			out[l.idx] = l.open.Load()
		}
	}
	return out
}

// OnBoot records the engine and the bound address.
func (s *Server) OnBoot(eng gnet.Engine) gnet.Action {
	s.eng = eng
	if fd, err := eng.Dup(); err == nil {
		if sa, err := unix.Getsockname(fd); err == nil {
			s.addr = sockaddrToTCP(sa)
		}
		_ = unix.Close(fd)
	}
	close(s.booted)
	return gnet.None
}

func sockaddrToTCP(sa unix.Sockaddr) net.Addr {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]).To16(), Port: a.Port}
	case *unix.SockaddrInet6:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}
	}
	return nil
}

// loopOf returns the bookkeeping for el, creating it on first sight.
func (s *Server) loopOf(el gnet.EventLoop) *loop {
	s.mu.RLock()
	l := s.loops[el]
	s.mu.RUnlock()
	if l != nil {
		return l
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if l = s.loops[el]; l == nil {
		l = &loop{el: el, idx: len(s.byIndex), waker: s.waker}
		l.state = session.NewLoop(&s.cfg.Session, &s.stats, l.exec)
		l.state.WaitWritable = l.waitWritable
		l.state.WriteConn = writeSocket
		s.loops[el] = l
		s.byIndex = append(s.byIndex, l)
	}
	return l
}

func (s *Server) loopList() []*loop {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*loop, 0, len(s.loops))
	for _, l := range s.loops {
		out = append(out, l)
	}
	return out
}

// OnOpen admits a connection or refuses it: 503 when the server is at
// -max-conns or shutting down, and the storm bounds of admission.go.
func (s *Server) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	// Count first, then check, so loops admitting at the same moment
	// cannot overshoot the limit together.
	if n := s.conns.Add(1); s.draining.Load() || (s.cfg.MaxConns > 0 && n > int64(s.cfg.MaxConns)) {
		s.conns.Add(-1)
		s.stats.Refuse(503)
		return s.reject, gnet.Close
	}
	l := s.loopOf(c.EventLoop())
	now := time.Now()
	if s.cfg.MaxConnsPerIP > 0 || s.cfg.UpgradeRate > 0 {
		if refusal := s.admit(c, l, now); refusal != nil {
			s.conns.Add(-1)
			return refusal, gnet.Close
		}
	}
	s.churn.Add(1)
	e := &conn{}
	e.Init(c, l.state, now)
	l.conns.push(e)
	l.open.Add(1)
	c.SetContext(e)
	return nil, gnet.None
}

// OnTraffic hands every buffered byte to the session.
func (s *Server) OnTraffic(c gnet.Conn) gnet.Action {
	e, ok := c.Context().(*conn)
	if !ok {
		return gnet.Close
	}
	if e.HandleTraffic(time.Now()) {
		return gnet.Close
	}
	return gnet.None
}

// OnClose releases the session and removes it from its loop's list.
func (s *Server) OnClose(c gnet.Conn, err error) gnet.Action {
	e, ok := c.Context().(*conn)
	if !ok {
		return gnet.None
	}
	c.SetContext(nil)
	l := s.loopOf(c.EventLoop())
	if fd := int32(c.Fd()); l.backlogged[fd] == e {
		delete(l.backlogged, fd)
		s.waker.forget(int(fd))
	}
	e.OnConnClosed()
	s.stats.CountClose(e.CloseReason(), uint16(e.CloseCode()))
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("connection closed", "reason", e.CloseReason().String(), "code", int(e.CloseCode()), "err", err)
	}
	l.conns.remove(e)
	l.open.Add(-1)
	s.conns.Add(-1)
	s.churn.Add(1)
	if s.cfg.MaxConnsPerIP > 0 {
		// Every admitted connection with a TCP address was counted.
		if ip, ok := ipOf(c.RemoteAddr()); ok {
			s.perIP.remove(ip)
		}
	}
	return gnet.None
}

// OnTick runs on gnet's ticker goroutine: it asks every loop to sweep its
// own connections.
func (s *Server) OnTick() (time.Duration, gnet.Action) {
	for _, l := range s.loopList() {
		_ = l.el.Execute(context.Background(), gnet.RunnableFunc(l.sweep))
	}
	s.settle.tick(time.Now(), s.churn.Load())
	return s.tick, gnet.None
}

// sweep runs on l's loop: deadlines and heartbeats for every connection.
// It walks backwards because closing swaps the last connection into the
// closed one's slot.
func (l *loop) sweep(context.Context) error {
	now := time.Now()
	for i := l.conns.len() - 1; i >= 0; i-- {
		if i >= l.conns.len() {
			continue
		}
		if e := l.conns.at(i); e.Tick(now) {
			_ = l.el.Close(e.gc())
		}
	}
	return nil
}

// Shutdown stops admitting connections, sends close 1001 to every client,
// spread evenly over grace so that clients do not reconnect elsewhere all at
// once (of the n clients open when it starts, client i gets its close at
// about i*grace/n, whatever n is), waits for them to close (bounded by ctx)
// and stops the engine. When ctx ends first, every client still open gets
// its 1001 at once.
func (s *Server) Shutdown(ctx context.Context, grace time.Duration) error {
	select {
	case <-s.booted:
	default:
		return ErrNotStarted
	}
	s.draining.Store(true)
	loops := s.loopList()
	open := make([]int, len(loops))
	n := 0
	for k, l := range loops {
		open[k] = l.openCount(ctx)
		n += open[k]
	}
	const step = 20 * time.Millisecond
	ticker := time.NewTicker(step)
	defer ticker.Stop()
	start := time.Now()
	issued := make([]int, len(loops))
	quota := make([]int, len(loops))
	for done := 0; done < n; {
		target := n
		if elapsed := time.Since(start); grace > 0 && ctx.Err() == nil && elapsed < grace {
			target = min(n, int(int64(elapsed)*int64(n)/int64(grace))+1)
		}
		clear(quota)
		for ; done < target; done++ {
			// The next close goes to the loop furthest behind its share.
			best := -1
			for k := range loops {
				if issued[k] < open[k] && (best < 0 || (issued[k]+1)*open[best] < (issued[best]+1)*open[k]) {
					best = k
				}
			}
			issued[best]++
			quota[best]++
		}
		for k, l := range loops {
			if quota[k] > 0 {
				_ = l.el.Execute(context.Background(), goingAway(l, quota[k]))
			}
		}
		if done < n {
			select {
			case <-ticker.C:
			case <-ctx.Done():
			}
		}
	}
	// Whoever is left (still upgrading, or missed by a loop that was busy
	// when it was counted) gets its 1001 now.
	for _, l := range s.loopList() {
		_ = l.el.Execute(context.Background(), goingAway(l, math.MaxInt))
	}
	// Wait for the close handshakes (bounded by the close timeout, which
	// the sweep enforces) or the caller's deadline.
	for s.conns.Load() > 0 && ctx.Err() == nil {
		select {
		case <-ticker.C:
		case <-ctx.Done():
		}
	}
	return s.stopEngine()
}

// openCount asks l how many of its sessions are open; 0 if it cannot.
func (l *loop) openCount(ctx context.Context) int {
	got := make(chan int, 1)
	err := l.el.Execute(ctx, gnet.RunnableFunc(func(context.Context) error {
		open := 0
		for i := range l.conns.len() {
			if l.conns.at(i).State() == session.StateOpen {
				open++
			}
		}
		got <- open
		return nil
	}))
	if err != nil {
		return 0
	}
	select {
	case n := <-got:
		return n
	case <-ctx.Done():
		return 0
	}
}

// stopEngine stops gnet once; later calls return the first call's error.
func (s *Server) stopEngine() error {
	s.stop.Do(func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.runErr = s.eng.Stop(stopCtx)
		<-s.ran
		s.waker.close()
	})
	return s.runErr
}

// goingAway returns a loop task that sends 1001 to quota of the loop's
// open sessions and closes those still upgrading.
func goingAway(l *loop, quota int) gnet.Runnable {
	return gnet.RunnableFunc(func(context.Context) error {
		for i := l.conns.len() - 1; i >= 0; i-- {
			if i >= l.conns.len() {
				continue
			}
			e := l.conns.at(i)
			switch e.State() {
			case session.StateOpen:
				if quota == 0 {
					continue
				}
				quota--
				e.Close(session.CloseGoingAway, "server shutdown")
				if !e.Flush() {
					_ = l.el.Close(e.gc())
				}
			case session.StateHandshake:
				_ = l.el.Close(e.gc())
			}
		}
		return nil
	})
}

// Stop closes every connection without the close handshake and stops the
// engine. Prefer Shutdown. Calling it after Shutdown (or twice) is a no-op.
func (s *Server) Stop(context.Context) error {
	select {
	case <-s.booted:
	default:
		return ErrNotStarted
	}
	s.draining.Store(true)
	return s.stopEngine()
}

// ErrNoSuchLoop is Exec's answer for a loop that has not started.
var ErrNoSuchLoop = errors.New("engine: no such event loop (loops start with their first connection)")

// Exec runs f on event loop i (0 to Loops-1), after every task queued for
// it before. f must not block for long: every connection of the loop waits
// while it runs (tests use that to hold a loop back).
func (s *Server) Exec(i int, f func()) error {
	s.mu.RLock()
	var l *loop
	if i >= 0 && i < len(s.byIndex) {
		l = s.byIndex[i]
	}
	s.mu.RUnlock()
	if l == nil {
		return ErrNoSuchLoop
	}
	return l.exec(f)
}
