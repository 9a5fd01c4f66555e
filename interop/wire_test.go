package interop

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

// The clients under test hide their frames, so these helpers record what
// actually crossed the wire: a fragmented write must really produce several
// frames, and a compressed connection must really set RSV1.

// wireLog records one direction of a connection's bytes.
type wireLog struct {
	mu sync.Mutex
	b  []byte
}

func (l *wireLog) add(p []byte) {
	l.mu.Lock()
	l.b = append(l.b, p...)
	l.mu.Unlock()
}

func (l *wireLog) bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b)
}

// tap is a client connection that records both directions.
type tap struct {
	net.Conn
	sent     wireLog // client to server
	received wireLog // server to client
}

func (c *tap) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.received.add(p[:n])
	return n, err
}

func (c *tap) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.sent.add(p[:n])
	return n, err
}

// tapDialer hands out taps; Go clients use its DialContext.
type tapDialer struct {
	mu    sync.Mutex
	conns []*tap
}

func (d *tapDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var nd net.Dialer
	c, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	t := &tap{Conn: c}
	d.mu.Lock()
	d.conns = append(d.conns, t)
	d.mu.Unlock()
	return t, nil
}

// only returns the one connection the dialer made.
func (d *tapDialer) only(t *testing.T) *tap {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.conns) != 1 {
		t.Fatalf("client dialed %d connections, want 1", len(d.conns))
	}
	return d.conns[0]
}

// frame is one WebSocket frame as seen on the wire, payload unmasked.
type frame struct {
	fin, rsv1, masked bool
	op                byte
	payload           []byte
}

const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xa
)

// httpHead splits stream into the HTTP request or response head (with its
// blank line) and what follows.
func httpHead(stream []byte) (head, rest []byte, err error) {
	i := bytes.Index(stream, []byte("\r\n\r\n"))
	if i < 0 {
		return nil, nil, errors.New("no complete HTTP head on the wire")
	}
	return stream[:i+4], stream[i+4:], nil
}

// parseFrames parses a whole connection direction: the HTTP head, then
// frames. A trailing partial frame is an error, so call it only once the
// exchange being checked is over.
func parseFrames(stream []byte) (head string, frames []frame, err error) {
	h, b, err := httpHead(stream)
	if err != nil {
		return "", nil, err
	}
	for off := 0; off < len(b); {
		if len(b)-off < 2 {
			return "", nil, fmt.Errorf("partial frame header at offset %d", off)
		}
		f := frame{
			fin:    b[off]&0x80 != 0,
			rsv1:   b[off]&0x40 != 0,
			op:     b[off] & 0x0f,
			masked: b[off+1]&0x80 != 0,
		}
		if b[off]&0x30 != 0 {
			return "", nil, fmt.Errorf("frame at offset %d sets RSV2 or RSV3", off)
		}
		hl := 2
		n := uint64(b[off+1] & 0x7f)
		switch n {
		case 126:
			hl += 2
		case 127:
			hl += 8
		}
		if f.masked {
			hl += 4
		}
		if len(b)-off < hl {
			return "", nil, fmt.Errorf("partial frame header at offset %d", off)
		}
		switch n {
		case 126:
			n = uint64(binary.BigEndian.Uint16(b[off+2:]))
		case 127:
			n = binary.BigEndian.Uint64(b[off+2:])
		}
		if uint64(len(b)-off-hl) < n {
			return "", nil, fmt.Errorf("partial frame payload at offset %d: %d of %d bytes", off, len(b)-off-hl, n)
		}
		p := bytes.Clone(b[off+hl : off+hl+int(n)])
		if f.masked {
			key := b[off+hl-4 : off+hl]
			for i := range p {
				p[i] ^= key[i&3]
			}
		}
		f.payload = p
		frames = append(frames, f)
		off += hl + int(n)
	}
	return string(h), frames, nil
}

// wireMessage is a data message as framed on the wire.
type wireMessage struct {
	op     byte
	rsv1   bool // compressed
	frames int
	size   int // payload bytes on the wire (compressed size when rsv1)
}

// wireMessages groups the data frames into messages, skipping control
// frames, and checks the fragmentation rules of RFC 6455 section 5.4 and the
// masking rule of section 5.1 (masked tells which side sent the frames).
func wireMessages(frames []frame, masked bool) ([]wireMessage, error) {
	var out []wireMessage
	var cur *wireMessage
	for i, f := range frames {
		if f.masked != masked {
			return nil, fmt.Errorf("frame %d: masked=%v, want %v", i, f.masked, masked)
		}
		if f.op >= opClose {
			if !f.fin || len(f.payload) > 125 || f.rsv1 {
				return nil, fmt.Errorf("frame %d: malformed control frame (opcode %#x, fin %v, rsv1 %v, %d bytes)", i, f.op, f.fin, f.rsv1, len(f.payload))
			}
			continue
		}
		switch {
		case f.op == opContinuation && cur == nil:
			return nil, fmt.Errorf("frame %d: continuation without a message", i)
		case f.op == opContinuation && f.rsv1:
			return nil, fmt.Errorf("frame %d: RSV1 on a continuation frame", i)
		case f.op != opContinuation && cur != nil:
			return nil, fmt.Errorf("frame %d: new message while one is in progress", i)
		case f.op != opContinuation:
			cur = &wireMessage{op: f.op, rsv1: f.rsv1}
		}
		cur.frames++
		cur.size += len(f.payload)
		if f.fin {
			out = append(out, *cur)
			cur = nil
		}
	}
	if cur != nil {
		return nil, errors.New("last message never finished")
	}
	return out, nil
}

// lastClose returns the code of the last close frame in frames.
func lastClose(frames []frame) (code int, ok bool) {
	for i := len(frames) - 1; i >= 0; i-- {
		if frames[i].op != opClose {
			continue
		}
		if len(frames[i].payload) < 2 {
			return 1005, true
		}
		return int(binary.BigEndian.Uint16(frames[i].payload)), true
	}
	return 0, false
}

// wireReport parses both directions of a finished connection.
type wireReport struct {
	requestHead, responseHead string
	sent, received            []frame // client's frames, server's frames
	sentMsgs, receivedMsgs    []wireMessage
}

func parseConversation(sent, received []byte) (*wireReport, error) {
	var r wireReport
	var err error
	if r.requestHead, r.sent, err = parseFrames(sent); err != nil {
		return nil, fmt.Errorf("client to server: %w", err)
	}
	if r.responseHead, r.received, err = parseFrames(received); err != nil {
		return nil, fmt.Errorf("server to client: %w", err)
	}
	if r.sentMsgs, err = wireMessages(r.sent, true); err != nil {
		return nil, fmt.Errorf("client to server: %w", err)
	}
	if r.receivedMsgs, err = wireMessages(r.received, false); err != nil {
		return nil, fmt.Errorf("server to client: %w", err)
	}
	return &r, nil
}

func (c *tap) report(t *testing.T) *wireReport {
	t.Helper()
	r, err := parseConversation(c.sent.bytes(), c.received.bytes())
	if err != nil {
		t.Fatalf("wire: %v", err)
	}
	return r
}

// maxFrames returns the most frames any message of op used.
func maxFrames(msgs []wireMessage, op byte) int {
	most := 0
	for _, m := range msgs {
		if m.op == op {
			most = max(most, m.frames)
		}
	}
	return most
}

// proxy is a recording TCP relay for clients that cannot be handed a
// net.Conn (Node's ws): it accepts on 127.0.0.1:0 and copies each
// connection to the target, keeping both directions.
type proxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []*proxied
	open   []net.Conn
	closed bool
}

type proxied struct {
	sent, received wireLog
	done           chan struct{} // both directions finished
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy listen: %v", err)
	}
	p := &proxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		pc := &proxied{done: make(chan struct{})}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			_ = c.Close()
			_ = s.Close()
			return
		}
		p.conns = append(p.conns, pc)
		p.open = append(p.open, c, s)
		p.mu.Unlock()
		var halves sync.WaitGroup
		halves.Add(2)
		p.wg.Add(2)
		relay := func(dst, src net.Conn, log *wireLog) {
			defer p.wg.Done()
			defer halves.Done()
			_, _ = io.Copy(io.MultiWriter(dst, writerFunc(log.add)), src)
			// Pass the end of the stream on, as a direct connection would.
			if tc, ok := dst.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
		}
		go relay(s, c, &pc.sent)
		go relay(c, s, &pc.received)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			halves.Wait()
			_ = c.Close()
			_ = s.Close()
			close(pc.done)
		}()
	}
}

// connections returns the relayed connections in accept order.
func (p *proxy) connections() []*proxied {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*proxied(nil), p.conns...)
}

func (p *proxy) close() {
	p.mu.Lock()
	p.closed = true
	for _, c := range p.open {
		_ = c.Close()
	}
	p.mu.Unlock()
	_ = p.ln.Close()
	p.wg.Wait()
}

type writerFunc func([]byte)

func (f writerFunc) Write(p []byte) (int, error) {
	f(p)
	return len(p), nil
}

// Payloads. Each generator is deterministic so a failure reproduces.

// compressible returns n bytes of repetitive JSON-like ASCII.
func compressible(n int) []byte {
	const line = `{"channel":"prices","symbol":"HRLD","bid":101.25,"ask":101.50,"ts":1700000000}` + "\n"
	return []byte(strings.Repeat(line, n/len(line)+1)[:n])
}

// randomBytes returns n bytes that do not compress.
func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 1}))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// randomText returns exactly n bytes of valid UTF-8 that compress poorly:
// random code points of one to four bytes, padded with ASCII at the end.
func randomText(n int, seed uint64) []byte {
	r := rand.New(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 2}))
	ranges := [][2]rune{{0x21, 0x7e}, {0xa1, 0x7ff}, {0x4e00, 0x9fff}, {0x1f300, 0x1f6ff}}
	b := make([]byte, 0, n)
	for len(b) < n {
		rg := ranges[r.IntN(len(ranges))]
		c := rg[0] + rune(r.IntN(int(rg[1]-rg[0]+1)))
		if len(b)+utf8.RuneLen(c) > n {
			c = rune('a' + r.IntN(26))
		}
		b = utf8.AppendRune(b, c)
	}
	return b
}

// payloadKinds are what the compression tests send at each size.
var payloadKinds = []struct {
	name string
	text bool
	gen  func(n int) []byte
}{
	{"text-compressible", true, compressible},
	{"text-incompressible", true, func(n int) []byte { return randomText(n, uint64(n)) }},
	{"binary-compressible", false, compressible},
	{"binary-incompressible", false, func(n int) []byte { return randomBytes(n, uint64(n)) }},
}

// payloadSizes cross every frame length encoding boundary (125/126 and
// 65535/65536) between 10 B and 1 MiB.
var payloadSizes = []int{0, 10, 125, 126, 1000, 65535, 65536, 100_000, 1 << 20}

// sameBytes fails t when got differs from want, naming the first
// difference rather than dumping megabytes.
func sameBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	t.Fatalf("%s: echoed %d bytes, sent %d; first difference at byte %d (got %q, want %q)",
		what, len(got), len(want), i, excerpt(got, i), excerpt(want, i))
}

func excerpt(b []byte, i int) []byte {
	if i >= len(b) {
		return nil
	}
	return b[i:min(len(b), i+16)]
}
