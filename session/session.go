package session

import (
	"bytes"
	"time"

	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"

	"github.com/herald-ws/herald/codec"
)

// Conn is what a Session needs from its connection. gnet.Conn satisfies it;
// all methods are called on the connection's event loop only.
type Conn interface {
	// Peek returns the buffered inbound bytes; n <= 0 means all of them.
	Peek(n int) ([]byte, error)
	// Discard drops the first n buffered bytes; like gnet's, it may treat
	// n <= 0 as all of them, so callers pass only n > 0.
	Discard(n int) (int, error)
	// Write writes p to the socket without blocking and returns how many
	// bytes the kernel took; taking fewer than len(p) is not an error, and
	// the Conn must keep none of p. gnet.Conn's Write buffers the rest
	// where nobody can drop it, so the engine replaces it with
	// Loop.WriteConn. See Flush.
	Write(p []byte) (int, error)
	// Close closes the connection asynchronously; safe from any goroutine.
	Close() error
	// Fd is the socket, for shutdown(2) of the write side after a
	// lingering close frame.
	Fd() int
}

// Handler is the application behind a route. Its methods run on the
// session's event loop and must not block; payload slices are valid only
// until the method returns.
type Handler interface {
	// Authorize runs during the upgrade, after the request passed RFC 6455
	// checks and before the 101 response. A non-zero status refuses the
	// upgrade with that HTTP status and body.
	Authorize(s *Session, r *codec.Request) (status int, body string)
	OnOpen(s *Session)
	OnMessage(s *Session, op ws.OpCode, payload []byte)
	OnClose(s *Session, reason CloseReason)
}

// Config holds the settings every session of a server shares. It must not
// change after the server starts.
type Config struct {
	Routes           map[string]Handler // request path -> handler
	AllowedOrigins   []string           // empty: any origin; "*" suffix wildcards allowed
	MaxMessageSize   int64
	WriteBufferLimit int // unsent outbound bytes past which a session is closed with 1008
	// MaxInboundBuffer bounds, server-wide, the inbound bytes sessions
	// hold between reads: messages being reassembled and unconsumed
	// request or frame-header bytes. The session whose read would pass it
	// is closed with 1008. Zero: no limit.
	MaxInboundBuffer   int64
	Compression        bool
	CompressionMinSize int
	HandshakeTimeout   time.Duration
	IdleTimeout        time.Duration
	PingInterval       time.Duration
	CloseTimeout       time.Duration
}

// State is where a session is in its life.
type State uint8

// Session states.
const (
	StateHandshake State = iota // waiting for a complete upgrade request
	StateOpen                   // messages flow both ways
	StateClosing                // we sent a close frame and wait for the peer's
	StateClosed                 // the engine must drop the connection
)

// Loop is the state shared by the sessions of one event loop: their scratch
// output buffer and counters. Only that loop's goroutine touches it, except
// Exec, which any goroutine may call.
type Loop struct {
	Config *Config
	Stats  *Stats
	// App is the application's per-loop state (the hub's subscription
	// index); only the loop's goroutine touches it.
	App any
	// WaitWritable asks that s.OnWritable run on this loop once s's socket
	// can take more bytes; sessions call it each time the kernel refused
	// part of a write. An error means the session cannot wait and is
	// dropped. Nil: nobody calls OnWritable (tests drive it themselves).
	WaitWritable func(s *Session) error
	// WriteConn, when set, replaces Conn.Write for every session of the
	// loop, with the same contract.
	WriteConn func(c Conn, p []byte) (int, error)
	exec      func(func()) error
	out       []byte // frames queued by the session being served, written by Flush
	// httpEnd is how many leading bytes of out are an HTTP response rather
	// than frames; a backlog cut inside them must still send all of them.
	httpEnd int
	req     codec.Request // the upgrade request being parsed
	// routes are Config.Routes' handlers; a session keeps the index of its
	// own, one byte instead of an interface value.
	routes     []Handler
	stream     []StreamHandler // by route: the route's StreamHandler, nil for a WebSocket route
	routeIndex map[string]uint8
	tickers    []Ticker // routes[i] as a Ticker, or nil
	// gatherMsgs and gatherWrites count, since the last Gathered, the
	// messages corked sessions gathered and the writes that sent them.
	gatherMsgs, gatherWrites int64
}

// Gathered reports the messages corked sessions of the loop gathered and
// the writes that sent them since the last call, and adds the messages to
// Stats.MessagesOut (one atomic add for a whole fan-out). Loop goroutine
// only.
func (l *Loop) Gathered() (messages, writes int64) {
	messages, writes = l.gatherMsgs, l.gatherWrites
	l.gatherMsgs, l.gatherWrites = 0, 0
	if messages > 0 {
		l.Stats.MessagesOut.Add(messages)
	}
	return messages, writes
}

// NewLoop returns the shared state for one event loop. exec must run a
// function on that loop's goroutine, later and without blocking the caller.
// cfg.Routes may hold at most 255 routes; NewLoop panics past that.
func NewLoop(cfg *Config, stats *Stats, exec func(func()) error) *Loop {
	if len(cfg.Routes) > 255 {
		panic("session: more than 255 routes")
	}
	l := &Loop{Config: cfg, Stats: stats, exec: exec, routeIndex: make(map[string]uint8, len(cfg.Routes))}
	for path, h := range cfg.Routes {
		l.routeIndex[path] = uint8(len(l.routes))
		l.routes = append(l.routes, h)
		t, _ := h.(Ticker)
		l.tickers = append(l.tickers, t)
		sh, _ := h.(StreamHandler)
		l.stream = append(l.stream, sh)
	}
	return l
}

// writeConn writes p to the socket (see Conn.Write).
func (s *Session) writeConn(p []byte) (int, error) {
	if w := s.loop.WriteConn; w != nil {
		return w(s.conn, p)
	}
	return s.conn.Write(p)
}

// handler is the session's route handler; the session must have one.
func (s *Session) handler() Handler { return s.loop.routes[s.route-1] }

// StreamHandler is the StreamHandler of the session's route: nil before
// the request is routed, after OnClose and for a WebSocket route. A
// stream's state can find its handler here instead of keeping a pointer
// to it in every connection.
func (s *Session) StreamHandler() StreamHandler {
	if s.route == 0 {
		return nil
	}
	return s.loop.stream[s.route-1]
}

// Exec runs f on the loop's goroutine. It is safe for concurrent use and
// fails once the engine is shutting down.
func (l *Loop) Exec(f func()) error { return l.exec(f) }

// scratchKeep bounds the scratch buffer a loop keeps between flushes, so one
// large echo does not pin megabytes for the loop's lifetime.
const scratchKeep = 256 << 10

func (l *Loop) resetOut() {
	if cap(l.out) > scratchKeep {
		l.out = nil
	} else {
		l.out = l.out[:0]
	}
	l.httpEnd = 0
}

// Session is one connection's protocol state. It is small because an idle
// server holds one per open connection: buffers (a message being
// reassembled, bytes the kernel has not taken yet) are borrowed from pools
// only while they are needed.
type Session struct {
	conn Conn
	loop *Loop
	// Value is the application's per-connection data (for example the push
	// layer's subscriptions). Only the session's loop may touch it.
	Value    any
	backlog  *backlog // bytes the kernel has not taken yet; nil when there are none
	lastSeen int64    // unix nanoseconds of the last inbound bytes (or of the close frame we sent)
	dec      codec.Decoder
	inHeld   uint32 // inbound bytes counted against Config.MaxInboundBuffer
	// Slot is the engine's: the session's index in its loop's list. The
	// session never reads it; it lives here to fill what would be padding.
	Slot     int32
	leftover uint16 // inbound bytes the last read left unconsumed (already counted); during the upgrade, how far the request was searched
	code     uint16 // close code sent
	state    State
	reason   CloseReason
	route    uint8 // 1 + index of the handler in the loop's routes; 0 before the upgrade and after OnClose
	flags    flags // also the negotiated deflate window (see windowShift)
}

// flags are a session's yes/no facts, one bit each.
type flags uint8

const (
	pingSent flags = 1 << iota // a ping is outstanding since the last inbound bytes
	opened                     // reached StateOpen, so the handler must hear OnClose
	// lingering: the session sent its last close frame without waiting for
	// an answer (a violation, a slow consumer); it discards input until the
	// peer closes or the close timeout passes.
	lingering
	finSent // write side shut down after the lingering close frame
	// corked: Send and SendFrame gather into the session's own buffer
	// until Uncork (see Cork); bit 7, above the window bits.
	corked flags = 1 << 7
)

// The negotiated server_max_window_bits (8-15) lives in flags' upper bits
// as 15-bits (so the zero value means the full window), so that a Session stays within its 112-byte size class: an
// idle server holds one per connection.
const (
	windowShift       = 4
	windowMask  flags = 7 << windowShift
)

func (s *Session) setWindow(bits int) {
	bits = min(max(bits, 8), 15)
	s.flags = s.flags&^windowMask | flags(15-bits)<<windowShift
}

func (s *Session) is(f flags) bool { return s.flags&f != 0 }

// Init prepares s for a newly accepted connection.
func (s *Session) Init(c Conn, l *Loop, now time.Time) {
	*s = Session{conn: c, loop: l, lastSeen: now.UnixNano()}
	s.dec.MaxMessageSize = l.Config.MaxMessageSize
}

// Loop returns the event loop state the session belongs to; use its Exec to
// get back onto the session's goroutine from elsewhere.
func (s *Session) Loop() *Loop { return s.loop }

// Conn returns the connection the session serves.
func (s *Session) Conn() Conn { return s.conn }

// State reports the session's state.
func (s *Session) State() State { return s.state }

// Deflate reports whether permessage-deflate was negotiated, so a fan-out
// can pick the compressed encoding of a shared frame.
func (s *Session) Deflate() bool { return s.dec.Compression }

// DeflateWindowBits is the negotiated server_max_window_bits (8-15, 15 when
// the client set no limit); meaningful only when Deflate.
func (s *Session) DeflateWindowBits() int { return 15 - int(s.flags&windowMask>>windowShift) }

// CloseReason reports why the session ended (zero while it is open).
func (s *Session) CloseReason() CloseReason { return s.reason }

// CloseCode reports the code of the close frame the session sent (zero if
// it sent none).
func (s *Session) CloseCode() ws.StatusCode { return ws.StatusCode(s.code) }

// Backlog reports how many outbound bytes the kernel has not taken yet
// (bytes gathered while corked and not yet offered to it count too).
func (s *Session) Backlog() int {
	if s.backlog == nil {
		return 0
	}
	return len(s.backlog.b) - s.backlog.off
}

// Behind reports whether the kernel refused part of what the session last
// wrote and the session is waiting for its socket to drain: a subscriber
// that is not keeping up.
func (s *Session) Behind() bool { return s.backlog != nil && !s.backlog.gathering }

// HandleTraffic consumes every complete request, frame and message the
// connection has buffered, answers them, flushes the replies with one write
// and discards the consumed bytes. It returns true when the engine must close
// the connection.
func (s *Session) HandleTraffic(now time.Time) (drop bool) {
	in, _ := s.conn.Peek(-1)
	if len(in) == 0 {
		return s.state == StateClosed
	}
	// Bytes left unconsumed by the previous read (a partial header or
	// control frame, an incomplete upgrade) were counted then.
	prev := int(s.leftover)
	s.loop.Stats.BytesIn.Add(int64(len(in) - prev))
	s.leftover = 0
	if s.is(lingering) {
		_, _ = s.conn.Discard(len(in))
		s.syncInbound()
		s.shutdownWrite()
		return false
	}
	if s.state != StateHandshake && s.Stream() {
		return s.streamTraffic(in)
	}
	// The handshake timeout runs from accept, not from the last byte, or
	// a client trickling its upgrade would never time out (slowloris).
	if s.state == StateOpen {
		s.lastSeen = now.UnixNano()
	}
	s.flags &^= pingSent

	consumed := 0
	if s.state == StateHandshake {
		// The request bytes left from the previous read were searched
		// for its end already.
		n := s.upgrade(in, min(prev, codec.MaxHeaderBytes+4))
		if n == 0 && s.state == StateHandshake {
			s.leftover = uint16(min(len(in), 0xffff))
			if s.syncInbound() {
				s.Flush()
				return true
			}
			return false // request incomplete; leave it buffered
		}
		consumed = n
		if s.Stream() {
			consumed = len(in) // a stream session reads nothing after its request
			if s.state == StateOpen {
				s.lastSeen = now.UnixNano() // its heartbeat clock starts
			}
		}
	}
	var messages int64
	for (s.state == StateOpen || s.state == StateClosing) && !s.Stream() {
		ev, n, err := s.dec.Next(in[consumed:])
		consumed += n
		if err != nil {
			s.fail(err)
			break
		}
		if ev.Kind == codec.EventNone {
			break
		}
		if ev.Kind == codec.EventMessage {
			messages++
		}
		s.handle(ev)
	}
	if messages > 0 {
		s.loop.Stats.MessagesIn.Add(messages)
	}
	if s.state == StateClosed || s.is(lingering) {
		consumed = len(in) // whatever follows a close or a violation is never read
	}
	// gnet's Discard treats n <= 0 as "discard everything", so a read that
	// completed nothing (a partial frame header, say) must not call it, or
	// the buffered prefix is lost and the next bytes are misparsed.
	if consumed > 0 {
		_, _ = s.conn.Discard(consumed)
	}
	s.leftover = uint16(min(len(in)-consumed, 0xffff))
	s.syncInbound()
	ok := s.Flush()
	if ok && s.is(lingering) {
		// A violation found in this read: its close frame was just
		// written, so send the FIN now rather than at the next sweep (up to
		// a quarter of the close timeout later) if the kernel took it all.
		s.shutdownWrite()
	}
	return !ok || s.state == StateClosed
}

// syncInbound brings the server-wide count of held inbound bytes up to date
// with what the session holds now. When the session's growth takes the
// count past Config.MaxInboundBuffer, the session is closed with 1008 (and
// lingers, like a violation) and syncInbound reports true.
func (s *Session) syncInbound() (overBudget bool) {
	held := s.dec.Buffered() + int(s.leftover)
	if s.state == StateClosed {
		held = 0 // the engine drops the connection and its buffers with it
	}
	delta := int64(held) - int64(s.inHeld)
	if delta == 0 {
		return false
	}
	s.inHeld = uint32(min(held, 1<<32-1))
	total := s.loop.Stats.InboundBuffered.Add(delta)
	limit := s.loop.Config.MaxInboundBuffer
	if delta < 0 || limit <= 0 || total <= limit {
		return false
	}
	s.loop.Stats.InboundBudgetCloses.Add(1)
	if s.state == StateHandshake {
		s.reject(503, "server inbound buffer full")
	} else {
		s.closeNow(CloseInboundBudget, ws.StatusPolicyViolation, "inbound buffer budget exceeded")
	}
	return true
}

func (s *Session) handle(ev codec.Event) {
	switch ev.Kind {
	case codec.EventMessage:
		if s.state == StateOpen {
			s.handler().OnMessage(s, ev.OpCode, ev.Payload)
		}
	case codec.EventPing:
		if s.state == StateOpen {
			s.loop.out = codec.AppendFrame(s.loop.out, ws.OpPong, ev.Payload)
		}
	case codec.EventPong:
		// Any inbound bytes already reset the idle clock.
	case codec.EventClose:
		if s.state == StateOpen {
			code := ev.CloseCode
			if code == ws.StatusNoStatusRcvd {
				code = ws.StatusNormalClosure
			}
			s.queueClose(code, "")
		}
		s.finish(ClosePeer)
	}
}

// upgrade parses the upgrade request at the start of in and queues the 101
// response or an HTTP error. It returns the request's length, or 0 while it
// is incomplete.
func (s *Session) upgrade(in []byte, scanned int) int {
	cfg := s.loop.Config
	// The loop's scratch request: a local one would escape to the heap
	// through Authorize, one allocation per upgrade.
	req := &s.loop.req
	*req = codec.Request{}
	n, err := codec.ParseRequest(in, scanned, req, codec.ParseOptions{Compression: cfg.Compression, WindowBits: true})
	if err != nil {
		s.reject(statusOf(err), "")
		return len(in)
	}
	if n == 0 {
		return 0
	}
	if bytes.Equal(req.Method, []byte("OPTIONS")) {
		if route, ok := s.loop.routeIndex[string(req.Path)]; ok && s.loop.stream[route] != nil {
			s.preflight(req)
			return n
		}
	}
	if !bytes.Equal(req.Method, []byte("GET")) {
		s.reject(405, "")
		return n
	}
	route, ok := s.loop.routeIndex[string(req.Path)]
	if !ok {
		s.reject(404, "")
		return n
	}
	if sh := s.loop.stream[route]; sh != nil {
		s.openStream(req, route, sh)
		return n
	}
	h := s.loop.routes[route]
	if err := req.Check(); err != nil {
		s.reject(statusOf(err), "")
		return n
	}
	if !originAllowed(cfg.AllowedOrigins, req.Origin) {
		s.reject(403, "origin not allowed")
		return n
	}
	s.route = route + 1
	if status, body := h.Authorize(s, req); status != 0 {
		s.reject(status, body)
		return n
	}
	s.reason = 0 // a kept-alive connection (see EndStream) upgrading
	s.dec.Compression = cfg.Compression && req.Deflate
	s.setWindow(req.DeflateWindowBits())
	s.loop.out = codec.AppendAccept(s.loop.out, req, s.dec.Compression)
	s.loop.httpEnd = len(s.loop.out)
	s.state = StateOpen
	s.loop.Stats.Upgrades.Add(1)
	h.OnOpen(s)
	return n
}

func (s *Session) reject(status int, body string) {
	s.loop.out = codec.AppendHTTPError(s.loop.out, status, body)
	s.loop.httpEnd = len(s.loop.out)
	s.loop.Stats.Refuse(status)
	s.state = StateClosed
	s.reason = CloseHandshakeRejected
}

func statusOf(err error) int {
	if he, ok := err.(*codec.HTTPError); ok {
		return he.Status
	}
	return 400
}

// fail ends the session for a protocol violation: the close frame with the
// violation's code goes out and the connection is dropped without waiting
// for the peer's answer (RFC 6455 section 7.1.7).
//
// Dropping it at once would make the kernel answer the rest of an oversized
// message with a reset, and clients that fail their write (coder/websocket,
// gorilla on large messages) would never read the close code. So the
// session lingers instead: the close frame is followed by a FIN
// (shutdown of the write side) as soon as the kernel has taken it,
// everything the peer still sends is read and thrown away, and the
// connection is dropped when the peer closes or the close timeout passes.
func (s *Session) fail(err error) {
	s.loop.Stats.ProtocolErrors.Add(1)
	if s.state != StateOpen && s.state != StateClosing {
		s.finish(CloseProtocolError)
		return
	}
	if s.state == StateOpen {
		s.queueClose(codec.CloseCode(err), "")
	}
	s.linger(CloseProtocolError)
}

// linger moves the session to StateClosing for good: input is discarded
// from now on and nothing but what is already queued goes out.
func (s *Session) linger(r CloseReason) {
	s.flags |= opened
	if s.reason == 0 {
		s.reason = r
	}
	s.state = StateClosing
	s.flags |= lingering
	s.lastSeen = time.Now().UnixNano()
	s.dec.Reset()
	s.syncInbound()
}

// closeNow sends a close frame ahead of everything still queued: the
// backlog is dropped except the rest of the frame the kernel already has
// part of (so the stream stays well-formed), the close frame follows it,
// then the write side is shut down and the session lingers until the peer
// closes or the close timeout passes. It serves the slow consumer, whose
// close frame would otherwise wait behind the megabytes it cannot read.
func (s *Session) closeNow(r CloseReason, code ws.StatusCode, text string) {
	if s.Stream() {
		s.closeStream(r, true)
		return
	}
	switch s.state {
	case StateClosing:
		s.linger(r) // our close frame is already out; stop reading
		return
	case StateOpen:
	default:
		return
	}
	l := s.loop
	l.resetOut() // only this session's frames can be queued: they are dropped too
	if bl := s.backlog; bl != nil && bl.gathering {
		s.releaseBacklog() // gathered while corked, none of it offered to the kernel yet
	} else if bl != nil {
		bl.b = bl.b[:bl.off+bl.partial]
	}
	s.reason = r
	s.queueClose(code, text)
	s.linger(r)
	if s.write() {
		s.shutdownWrite()
	}
}

// queueClose queues the session's close frame.
func (s *Session) queueClose(code ws.StatusCode, text string) {
	s.code = uint16(code)
	s.loop.out = codec.AppendCloseFrame(s.loop.out, code, text)
}

// shutdownWrite sends FIN once the kernel has taken the lingering close
// frame.
func (s *Session) shutdownWrite() {
	if s.is(finSent) || s.backlog != nil {
		return
	}
	s.flags |= finSent
	_ = unix.Shutdown(s.conn.Fd(), unix.SHUT_WR)
}

// finish marks the session closed. The handler hears of it only from
// OnConnClosed, when the engine has dropped the connection, so that OnClose
// never runs in the middle of a handler's own iteration (a fan-out that
// hits a slow consumer, say).
func (s *Session) finish(r CloseReason) {
	if s.state == StateClosed {
		return
	}
	if s.state == StateOpen || s.state == StateClosing {
		s.flags |= opened
	}
	s.state = StateClosed
	if s.reason == 0 {
		s.reason = r
	}
	s.dec.Reset()
}

// Send queues one message (compressed when permessage-deflate was negotiated
// and the payload is at least the configured minimum size). It is a no-op
// unless the session is open. The caller flushes.
func (s *Session) Send(op ws.OpCode, payload []byte) {
	if s.state != StateOpen {
		return
	}
	cfg := s.loop.Config
	if s.is(corked) {
		if bl := s.gatherRoom(len(payload) + 14); bl != nil {
			bl.b = codec.AppendMessageWindow(bl.b, op, payload, s.dec.Compression, cfg.CompressionMinSize, s.DeflateWindowBits())
			s.gathered(bl)
		}
		return
	}
	s.loop.out = codec.AppendMessageWindow(s.loop.out, op, payload, s.dec.Compression, cfg.CompressionMinSize, s.DeflateWindowBits())
	s.loop.Stats.MessagesOut.Add(1)
}

// SendFrame queues an already encoded frame, for example one publication
// encoded once and written to many sessions. frame is copied; the caller
// keeps ownership. The caller flushes.
func (s *Session) SendFrame(frame []byte) {
	if s.state != StateOpen {
		return
	}
	if s.is(corked) {
		if bl := s.gatherRoom(len(frame)); bl != nil {
			bl.push(frame)
			s.gathered(bl)
		}
		return
	}
	s.loop.out = append(s.loop.out, frame...)
	s.loop.Stats.MessagesOut.Add(1)
}

// GatherLimit bounds what a corked session gathers before it writes: past
// it the gathered bytes go to the kernel at once, so one fan-out drain
// cannot build megabytes per connection.
const GatherLimit = 64 << 10

// Cork makes the session gather what Send and SendFrame queue in a buffer
// of its own, instead of the loop's scratch buffer, until Uncork writes it
// all with one write: a fan-out that queues many publications for many
// sessions of one loop then costs one write per session, not one per
// publication (uWebSockets calls this corking). Cork returns true when it
// corked the session, and the caller must then call Uncork before its task
// returns; false when the session is not open or is already corked.
//
// While corked, the write-buffer limit applies as in Flush to a session
// that is already behind, and a session that has gathered GatherLimit
// bytes writes them at once and goes on gathering.
func (s *Session) Cork() bool {
	if s.state != StateOpen || s.is(corked) {
		return false
	}
	s.flags |= corked
	return true
}

// Uncork ends Cork: what the session gathered goes to the kernel with one
// write, and what the kernel does not take becomes its backlog. A session
// that is behind has gathered behind its backlog, which OnWritable sends.
// ok is as for Flush: false when the peer is gone and the caller must have
// the connection dropped.
func (s *Session) Uncork() (ok bool) {
	if !s.is(corked) {
		return s.state != StateClosed
	}
	s.flags &^= corked
	if bl := s.backlog; bl != nil && bl.gathering {
		if !s.writeGathered(bl) {
			return false
		}
	}
	return s.state != StateClosed
}

// gatherRoom returns the buffer a corked session gathers into, taking one
// from the pool when the session has none; nil when the frame would pass
// the write-buffer limit of a session that is behind, which is then closed
// as a slow consumer (see Flush).
func (s *Session) gatherRoom(n int) *backlog {
	bl := s.backlog
	if bl == nil {
		bl = backlogPool.Get().(*backlog)
		bl.gathering = true
		bl.stream = s.Stream()
		s.backlog = bl
		return bl
	}
	if limit := s.loop.Config.WriteBufferLimit; limit > 0 && !bl.gathering && s.Backlog()+n > limit {
		s.loop.Stats.SlowConsumers.Add(1)
		s.closeNow(CloseSlowConsumer, ws.StatusPolicyViolation, "slow consumer")
		return nil
	}
	return bl
}

// gathered counts a message added to bl and writes bl when it reached
// GatherLimit.
func (s *Session) gathered(bl *backlog) {
	s.loop.gatherMsgs++
	if bl.gathering && len(bl.b) >= GatherLimit {
		s.writeGathered(bl)
	}
}

// writeGathered hands a gathering buffer to the kernel with one write. If
// the kernel takes it all, the buffer goes back to the pool; what it does
// not take stays as the session's backlog, and the engine is asked for
// OnWritable. false: the socket failed and the session is closed.
func (s *Session) writeGathered(bl *backlog) (ok bool) {
	if len(bl.b) == 0 {
		s.releaseBacklog()
		return true
	}
	n, err := s.writeConn(bl.b)
	s.loop.Stats.BytesOut.Add(int64(n))
	s.loop.gatherWrites++
	if err != nil {
		s.releaseBacklog()
		s.finish(ClosePeer)
		return false
	}
	if n == len(bl.b) {
		s.releaseBacklog()
		return true
	}
	bl.gathering = false
	bl.partial = bl.unitEnd(bl.b, 0, n) - n
	bl.off = n
	return s.wait()
}

// Close starts the closing handshake with code and reason: the close frame
// is queued, and the connection is dropped when the peer answers or after
// the close timeout. The caller flushes.
func (s *Session) Close(r CloseReason, reason string) {
	if s.state != StateOpen {
		return
	}
	if s.Stream() {
		s.closeStream(r, false)
		return
	}
	s.reason = r
	s.queueClose(r.code(), reason)
	s.state = StateClosing
	s.lastSeen = time.Now().UnixNano()
}

// Flush hands what the session queued to the kernel with one Write.
// What the kernel does not take becomes the session's backlog (a pooled
// buffer, only while it exists), written by OnWritable as the socket
// drains; later flushes append to it. Herald writes to the socket itself
// rather than through gnet's outbound buffer, because gnet offers no way to
// drop what it holds, and a slow consumer's close frame must not wait
// behind it.
//
// Flush enforces the write-buffer limit: a backlog that would grow past it
// marks a slow consumer, and the session is closed with 1008 "slow
// consumer" at once (see closeNow); the queued bytes are dropped and Flush
// returns true, since the session is still lingering. Flush returns false
// when the socket failed (the peer is gone): the session is closed and the
// caller must have the connection dropped.
func (s *Session) Flush() (ok bool) {
	l := s.loop
	if len(l.out) == 0 {
		return true
	}
	// A connection with nothing pending always gets the write, however
	// large (-max-message-size bounds what it can be); the limit catches
	// connections whose unsent bytes pile up.
	if limit := l.Config.WriteBufferLimit; limit > 0 && s.Behind() && s.Backlog()+len(l.out) > limit && s.state == StateOpen {
		l.Stats.SlowConsumers.Add(1)
		s.closeNow(CloseSlowConsumer, ws.StatusPolicyViolation, "slow consumer")
		return s.state != StateClosed
	}
	return s.write()
}

// write hands the loop's queued bytes to the socket or, behind an existing
// backlog, to the backlog.
func (s *Session) write() (ok bool) {
	l := s.loop
	defer l.resetOut()
	if len(l.out) == 0 {
		return true
	}
	if bl := s.backlog; bl != nil && bl.gathering {
		bl.push(l.out) // corked: goes out with the rest at Uncork
		return true
	} else if bl != nil {
		bl.push(l.out)
		return true
	}
	n, err := s.writeConn(l.out)
	l.Stats.BytesOut.Add(int64(n))
	if err != nil {
		s.finish(ClosePeer)
		return false
	}
	if n == len(l.out) {
		return true
	}
	bl := backlogPool.Get().(*backlog)
	bl.stream = s.Stream()
	bl.partial = bl.unitEnd(l.out, l.httpEnd, n) - n
	bl.push(l.out[n:])
	s.backlog = bl
	return s.wait()
}

// wait asks the engine for OnWritable.
func (s *Session) wait() bool {
	if w := s.loop.WaitWritable; w != nil {
		if err := w(s); err != nil {
			s.finish(ClosePeer)
			return false
		}
	}
	return true
}

// OnWritable writes what the kernel takes of the backlog; the engine calls
// it on the session's loop when the socket can take more bytes. It returns
// true when the engine must drop the connection.
func (s *Session) OnWritable() (drop bool) {
	bl := s.backlog
	if bl == nil {
		return s.state == StateClosed
	}
	n, err := s.writeConn(bl.b[bl.off:])
	s.loop.Stats.BytesOut.Add(int64(n))
	if err != nil {
		s.finish(ClosePeer)
		return true
	}
	if n > 0 && bl.stream {
		s.flags &^= pingSent // the socket drains: not stalled (see streamTick)
	}
	if bl.advance(n) {
		s.releaseBacklog()
		if s.is(lingering) {
			s.shutdownWrite()
		}
		return s.state == StateClosed
	}
	return !s.wait()
}

func (s *Session) releaseBacklog() {
	if bl := s.backlog; bl != nil {
		s.backlog = nil
		bl.release()
	}
}

// Tick enforces the session's deadlines; the engine calls it from a
// periodic sweep on the session's loop. It sends a ping when the peer has
// been silent for the ping interval and returns true when the connection
// must be dropped: an upgrade not finished within the handshake timeout
// (answered with 408), silence past the idle timeout (close 1001), or a
// close frame the peer never answered.
func (s *Session) Tick(now time.Time) (drop bool) {
	cfg := s.loop.Config
	silent := time.Duration(now.UnixNano() - s.lastSeen)
	switch s.state {
	case StateHandshake:
		if cfg.HandshakeTimeout > 0 && silent >= cfg.HandshakeTimeout && s.reason == CloseKeepAlive && s.leftover == 0 {
			s.state = StateClosed
			return true
		}
		if cfg.HandshakeTimeout > 0 && silent >= cfg.HandshakeTimeout {
			s.loop.Stats.HandshakeTimeouts.Add(1)
			s.loop.out = codec.AppendHTTPError(s.loop.out, 408, "")
			s.loop.httpEnd = len(s.loop.out)
			s.state = StateClosed
			s.reason = CloseHandshakeTimeout
			s.Flush()
			return true
		}
	case StateOpen:
		if h := s.streamHandler(); h != nil {
			return s.streamTick(now, h)
		}
		if cfg.IdleTimeout > 0 && silent >= cfg.IdleTimeout {
			s.loop.Stats.IdleTimeouts.Add(1)
			s.reason = CloseIdleTimeout
			s.queueClose(ws.StatusGoingAway, "idle timeout")
			s.Flush()
			s.finish(CloseIdleTimeout)
			return true
		}
		if t := s.ticker(); t != nil {
			t.OnTick(s, now)
			if s.state != StateOpen {
				return s.state == StateClosed
			}
		}
		if cfg.PingInterval > 0 && silent >= cfg.PingInterval && !s.is(pingSent) {
			s.flags |= pingSent
			s.loop.out = codec.AppendFrame(s.loop.out, ws.OpPing, nil)
			return !s.Flush()
		}
	case StateClosing:
		if s.is(lingering) {
			s.shutdownWrite()
		}
		if silent >= cfg.CloseTimeout {
			s.finish(CloseTimeout)
			return true
		}
	case StateClosed:
		return true
	}
	return false
}

// OnConnClosed tells the session its connection is gone (the engine calls it
// from gnet's OnClose, before the socket is closed). It makes one last
// attempt to hand the backlog to the kernel (a close frame, say), releases
// pooled buffers and, if the session was ever open, tells the handler,
// once.
func (s *Session) OnConnClosed() {
	if s.state == StateHandshake && s.reason == CloseKeepAlive {
		s.reason = 0 // the peer hung up a kept-alive connection
	}
	s.finish(ClosePeer)
	if bl := s.backlog; bl != nil {
		n, _ := s.writeConn(bl.b[bl.off:])
		s.loop.Stats.BytesOut.Add(int64(n))
		s.releaseBacklog()
	}
	s.leftover = 0
	s.syncInbound()
	if s.is(opened) && s.route != 0 {
		h := s.handler()
		s.route = 0
		h.OnClose(s, s.reason)
	}
}

// Abort ends the session for reason r, for a handler that found it cannot
// be served: Flush returned false (the session is already closed, r is
// ignored and the connection is dropped), or the handler gave up on it (a
// recovering subscriber too far behind: CloseSlowConsumer). An open session
// gets its close frame at once, ahead of its backlog, and lingers like a
// slow consumer at the write-buffer limit. Must run on the session's loop.
func (s *Session) Abort(r CloseReason) {
	switch s.state {
	case StateOpen:
		text := ""
		if r == CloseSlowConsumer {
			s.loop.Stats.SlowConsumers.Add(1)
			text = "slow consumer"
		}
		s.closeNow(r, r.code(), text)
		if s.state != StateClosed {
			return
		}
	case StateClosing:
		return // the close is under way; the close timeout bounds it
	}
	s.finish(r)
	_ = s.conn.Close()
}

func originAllowed(allowed []string, origin []byte) bool {
	if len(allowed) == 0 {
		return true
	}
	if len(origin) == 0 {
		return true // not a browser; Origin is a browser's promise, not a credential
	}
	for _, a := range allowed {
		if a == "*" || equalFoldString(origin, a) {
			return true
		}
		if n := len(a); n > 0 && a[n-1] == '*' && len(origin) >= n-1 && equalFoldString(origin[:n-1], a[:n-1]) {
			return true
		}
	}
	return false
}

func equalFoldString(b []byte, s string) bool {
	return len(b) == len(s) && bytes.EqualFold(b, []byte(s))
}
