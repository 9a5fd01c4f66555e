package engine_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/herald-ws/herald/engine"
	"github.com/herald-ws/herald/internal/testutil"
	"github.com/herald-ws/herald/session"
)

// dial opens a client connection to path with gobwas's blocking client
// helpers (fine in a test; the server side never uses them).
func dial(t *testing.T, srv *engine.Server, path string) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, br, _, err := ws.Dial(ctx, testutil.URL(srv, path))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if br != nil {
		t.Fatalf("server sent bytes before the client spoke")
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func echoOnce(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := wsutil.WriteClientText(c, []byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	got, err := wsutil.ReadServerText(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if string(got) != msg {
		t.Fatalf("echo = %q, want %q", got, msg)
	}
}

// expectEOF asserts the server closes the TCP connection.
func expectEOF(t *testing.T, c net.Conn, within time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(within))
	buf := make([]byte, 4096)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("server did not close the connection within %v", within)
		}
		return // EOF or reset: closed
	}
}

func TestEchoAndStats(t *testing.T) {
	srv := testutil.Start(t, testutil.Options{})
	c := dial(t, srv, "/echo")
	for i := range 10 {
		echoOnce(t, c, strings.Repeat("x", i*100))
	}
	st := srv.Stats()
	if got := st.MessagesIn.Load(); got != 10 {
		t.Errorf("MessagesIn = %d, want 10", got)
	}
	if got := st.MessagesOut.Load(); got != 10 {
		t.Errorf("MessagesOut = %d, want 10", got)
	}
	if got := st.Upgrades.Load(); got != 1 {
		t.Errorf("Upgrades = %d, want 1", got)
	}
	if srv.Conns() != 1 {
		t.Errorf("Conns = %d, want 1", srv.Conns())
	}
}

func TestMaxConnsAnswers503(t *testing.T) {
	srv := testutil.Start(t, testutil.Options{MaxConns: 2})
	dial(t, srv, "/echo")
	dial(t, srv, "/echo")
	c, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if !bytes.HasPrefix(resp, []byte("HTTP/1.1 503 ")) {
		t.Fatalf("third connection got %q, want a 503", resp)
	}
}

// TestHalfHandshakesDoNotStallOthers holds 1,000 connections that send half
// an upgrade request. A normal client still upgrades and echoes while they
// are held, and every one of them is answered with 408 and closed once the
// handshake timeout passes.
func TestHalfHandshakesDoNotStallOthers(t *testing.T) {
	const n = 1000
	timeout := 1500 * time.Millisecond
	srv := testutil.Start(t, testutil.Options{HandshakeTimeout: timeout})
	half := "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	start := time.Now()
	for range n {
		c, err := net.Dial("tcp", srv.Addr().String())
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		if _, err := c.Write([]byte(half)); err != nil {
			t.Fatalf("write: %v", err)
		}
		conns = append(conns, c)
	}
	if time.Since(start) > timeout {
		t.Skipf("machine too slow to open %d connections within the handshake timeout", n)
	}
	// The half-open connections are all still held: a normal client works.
	c := dial(t, srv, "/echo")
	for i := range 100 {
		echoOnce(t, c, strings.Repeat("y", i))
	}
	if got := srv.Stats().HandshakeTimeouts.Load(); got != 0 && time.Since(start) < timeout {
		t.Fatalf("%d handshake timeouts fired early", got)
	}

	for i, hc := range conns {
		_ = hc.SetReadDeadline(time.Now().Add(timeout + 5*time.Second))
		resp, err := io.ReadAll(io.LimitReader(hc, 4096))
		if err != nil && !isReset(err) {
			t.Fatalf("conn %d: %v", i, err)
		}
		if err == nil && !bytes.HasPrefix(resp, []byte("HTTP/1.1 408 ")) {
			t.Fatalf("conn %d got %q, want 408", i, resp)
		}
	}
	if got := srv.Stats().HandshakeTimeouts.Load(); got != n {
		t.Fatalf("HandshakeTimeouts = %d, want %d", got, n)
	}
	echoOnce(t, c, "still here")
}

func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "reset") || errors.Is(err, io.EOF))
}

// TestSlowReaderClosedAtWriteBufferLimit sends echo traffic and never reads
// the replies: the server must close it with 1008, count a slow consumer,
// and its heap must stay bounded however much the client sends.
func TestSlowReaderClosedAtWriteBufferLimit(t *testing.T) {
	const limit = 512 << 10
	srv := testutil.Start(t, testutil.Options{WriteBufferLimit: limit})
	other := dial(t, srv, "/echo")

	raw, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.(*net.TCPConn).SetReadBuffer(4096)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	slow, _, _, err := ws.Dialer{NetDial: func(context.Context, string, string) (net.Conn, error) { return raw, nil }}.Dial(ctx, testutil.URL(srv, "/echo"))
	if err != nil {
		t.Fatalf("upgrade: %v", err)
	}

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	msg := bytes.Repeat([]byte("z"), 64<<10)
	sent := 0
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) && sent < 256<<20 {
		_ = slow.SetWriteDeadline(time.Now().Add(2 * time.Second))
		if err := wsutil.WriteClientBinary(slow, msg); err != nil {
			break // the server closed us
		}
		sent += len(msg)
	}
	waitFor(t, 10*time.Second, func() bool { return srv.Stats().SlowConsumers.Load() == 1 })

	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapInuse) - int64(before.HeapInuse); grew > 64<<20 {
		t.Fatalf("heap grew by %d MiB while a client never read", grew>>20)
	}
	// The well-behaved client is unaffected.
	echoOnce(t, other, "fine")
	t.Logf("client sent %d MiB before being closed", sent>>20)
}

func waitFor(t *testing.T, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestIdleTimeoutAndPing(t *testing.T) {
	srv := testutil.Start(t, testutil.Options{PingInterval: 200 * time.Millisecond, IdleTimeout: 3 * time.Second})
	// A client that answers pings stays open past the idle timeout.
	live := dial(t, srv, "/echo")
	var pings int
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = live.SetReadDeadline(time.Now().Add(4 * time.Second))
		for {
			h, err := ws.ReadHeader(live)
			if err != nil {
				return
			}
			p := make([]byte, h.Length)
			if _, err := io.ReadFull(live, p); err != nil {
				return
			}
			if h.OpCode == ws.OpPing {
				mu.Lock()
				pings++
				mu.Unlock()
				_ = wsutil.WriteClientMessage(live, ws.OpPong, p)
			}
			if h.OpCode == ws.OpClose {
				return
			}
		}
	}()
	// A client that never answers is closed with 1001 after the idle timeout.
	mute := dial(t, srv, "/echo")
	br := bufio.NewReader(mute)
	_ = mute.SetReadDeadline(time.Now().Add(6 * time.Second))
	var code ws.StatusCode
	for {
		h, err := ws.ReadHeader(br)
		if err != nil {
			t.Fatalf("mute client: %v", err)
		}
		p := make([]byte, h.Length)
		if _, err := io.ReadFull(br, p); err != nil {
			t.Fatal(err)
		}
		if h.OpCode == ws.OpClose {
			code, _ = ws.ParseCloseFrameData(p)
			break
		}
	}
	if code != ws.StatusGoingAway {
		t.Fatalf("idle close code = %d, want 1001", code)
	}
	expectEOF(t, mute, 2*time.Second)
	<-done
	mu.Lock()
	defer mu.Unlock()
	if pings < 3 {
		t.Fatalf("live client saw %d pings in 4 s at a 200 ms interval", pings)
	}
	if got := srv.Stats().IdleTimeouts.Load(); got != 1 {
		t.Fatalf("IdleTimeouts = %d, want 1 (the client answering pings must stay open)", got)
	}
}

func TestShutdownSendsGoingAway(t *testing.T) {
	srv, err := engine.New(testutil.Options{CloseTimeout: time.Second}.Config())
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	const n = 20
	conns := make([]net.Conn, n)
	for i := range conns {
		conns[i] = dial(t, srv, "/echo")
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Shutdown(context.Background(), 300*time.Millisecond) }()
	var wg sync.WaitGroup
	codes := make([]ws.StatusCode, n)
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			for {
				h, err := ws.ReadHeader(c)
				if err != nil {
					return
				}
				p := make([]byte, h.Length)
				if _, err := io.ReadFull(c, p); err != nil {
					return
				}
				if h.OpCode == ws.OpClose {
					codes[i], _ = ws.ParseCloseFrameData(p)
					// Answer half of them; the rest are dropped after the close timeout.
					if i%2 == 0 {
						_ = wsutil.WriteClientMessage(c, ws.OpClose, p)
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	for i, code := range codes {
		if code != ws.StatusGoingAway {
			t.Errorf("conn %d close code = %d, want 1001", i, code)
		}
	}
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return")
	}
	if _, err := net.DialTimeout("tcp", srv.Addr().String(), time.Second); err == nil {
		t.Fatal("listener still accepting after Shutdown")
	}
}

func TestUnknownRouteAndNoRoutes(t *testing.T) {
	srv := testutil.Start(t, testutil.Options{Routes: map[string]session.Handler{}})
	c, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte("GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"))
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, _ := io.ReadAll(c)
	if !bytes.HasPrefix(resp, []byte("HTTP/1.1 404 ")) {
		t.Fatalf("got %q, want 404", resp)
	}
}

// TestHandshakeTimeoutRunsFromAccept: a client trickling its upgrade one
// byte at a time (slowloris) is cut off at the handshake timeout, however
// often it sends.
func TestHandshakeTimeoutRunsFromAccept(t *testing.T) {
	srv := testutil.Start(t, testutil.Options{HandshakeTimeout: time.Second})
	c, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	req := "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nX-Pad: " + strings.Repeat("a", 200)
	for i := 0; i < len(req); i++ {
		if _, err := c.Write([]byte{req[i]}); err != nil {
			break // closed by the server
		}
		if time.Since(start) > 5*time.Second {
			t.Fatal("still upgrading after 5 s with a 1 s handshake timeout")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("the trickle was never cut off")
	}
	expectEOF(t, c, 5*time.Second)
	if got := srv.Stats().HandshakeTimeouts.Load(); got != 1 {
		t.Fatalf("HandshakeTimeouts = %d, want 1", got)
	}
}
