package testutil

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/herald-ws/herald/broker"
	"github.com/herald-ws/herald/server"
)

// This file imports package server, so server's own tests that use it must
// be external tests (package server_test).

// NodeOptions are the settings push tests vary: the engine settings of
// Options (zero values take its test defaults; Routes is ignored, the node
// sets its own) plus the node's push settings.
type NodeOptions struct {
	Options
	Echo               bool // serve /echo as well
	NoAPI              bool // no API listener (by default one listens on 127.0.0.1:0)
	APIKey             string
	TokenSecret        string
	Tokens             server.TokenOptions // key files, refresh grace, auto-personal
	ClientPublish      bool
	MaxChannelsPerConn int
	PublishRate        float64
	// HistorySize is the publications kept per channel: 0 takes the test
	// default of 1,000, a negative value keeps none.
	HistorySize int
	HistoryTTL  time.Duration
	Broker      broker.Broker
	MaxChannels int
	Workers     int // worker pool size (0: default)
	WorkQueue   int // worker pool queue (0: default)
	// PresenceChannels and PresenceJoinLeave are server.Options'.
	PresenceChannels  []string
	PresenceJoinLeave bool
}

// ServerOptions turns o into server.Options listening on 127.0.0.1:0.
func (o NodeOptions) ServerOptions() server.Options {
	hist := o.HistorySize
	switch {
	case hist == 0:
		hist = 1000
	case hist < 0:
		hist = 0
	}
	ec := o.Config()
	apiAddr := "127.0.0.1:0"
	if o.NoAPI {
		apiAddr = ""
	}
	return server.Options{
		Engine:             ec,
		Echo:               o.Echo,
		APIAddr:            apiAddr,
		APIKey:             o.APIKey,
		TokenSecret:        o.TokenSecret,
		Tokens:             o.Tokens,
		ClientPublish:      o.ClientPublish,
		MaxChannelsPerConn: o.MaxChannelsPerConn,
		PublishRate:        o.PublishRate,
		HistorySize:        hist,
		HistoryTTL:         o.HistoryTTL,
		Broker:             o.Broker,
		MaxChannels:        o.MaxChannels,
		Workers:            o.Workers,
		WorkQueue:          o.WorkQueue,
		PresenceChannels:   o.PresenceChannels,
		PresenceJoinLeave:  o.PresenceJoinLeave,
		Logger:             ec.Logger,
	}
}

// finished holds the nodes a test already shut down itself (ShutdownNode),
// which the cleanup must not stop again.
var finished sync.Map // *server.Node -> struct{}

// StartNode starts a Herald node with o and stops it (without the close
// handshake) when the test ends, unless the test shut it down with
// ShutdownNode.
func StartNode(tb testing.TB, o NodeOptions) *server.Node {
	tb.Helper()
	n, err := server.New(o.ServerOptions())
	if err != nil {
		tb.Fatalf("server.New: %v", err)
	}
	if err := n.Start(); err != nil {
		tb.Fatalf("node start: %v", err)
	}
	tb.Cleanup(func() {
		if _, done := finished.LoadAndDelete(n); !done {
			n.Stop()
		}
	})
	return n
}

// ShutdownNode runs n.Shutdown and marks n so that StartNode's cleanup does
// not stop it a second time. Safe from any goroutine.
func ShutdownNode(ctx context.Context, n *server.Node, grace time.Duration) error {
	finished.Store(n, struct{}{})
	return n.Shutdown(ctx, grace)
}

// WSURL returns ws://addr/ws?query for n's client listener ("" query: none).
func WSURL(n *server.Node, query string) string {
	u := "ws://" + n.Addr().String() + "/ws"
	if query != "" {
		u += "?" + query
	}
	return u
}

// APIURL returns http://api-addr/path for n's API listener.
func APIURL(n *server.Node, path string) string {
	return "http://" + n.APIAddr().String() + path
}

// APIClient is the HTTP client the API helpers use.
var APIClient = &http.Client{
	Timeout:   20 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 16},
}

// APIRequest sends one request to n's API with an optional bearer key
// ("" sends no Authorization header) and returns the status and body.
// body may be nil, a []byte or string sent verbatim, or a value encoded as
// JSON. Safe from any goroutine.
func APIRequest(n *server.Node, method, path, key string, body any) (int, []byte, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = bytes.NewReader([]byte(b))
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, APIURL(n, path), rd)
	if err != nil {
		return 0, nil, err
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := APIClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, out, err
}

// PublishKey publishes data (raw JSON when a json.RawMessage, []byte or
// string; otherwise encoded) to channel through POST /api/publish with the
// API key key and returns the offset. Safe from any goroutine.
func PublishKey(n *server.Node, key, channel string, data any) (uint64, error) {
	raw, err := rawJSON(data)
	if err != nil {
		return 0, err
	}
	body := []byte(`{"channel":` + strconv.Quote(channel) + `,"data":`)
	body = append(append(body, raw...), '}')
	status, out, err := APIRequest(n, http.MethodPost, "/api/publish", key, body)
	if err != nil {
		return 0, err
	}
	if status != http.StatusOK {
		return 0, fmt.Errorf("publish to %s: HTTP %d: %s", channel, status, out)
	}
	var r struct {
		Offset *uint64 `json:"offset"`
	}
	if err := json.Unmarshal(out, &r); err != nil || r.Offset == nil {
		return 0, fmt.Errorf("publish to %s: reply %q: %v", channel, out, err)
	}
	return *r.Offset, nil
}

// Publish publishes data to channel through the API (no key) and returns
// the offset; it fails the test on any error. Test goroutine only.
func Publish(tb testing.TB, n *server.Node, channel string, data any) uint64 {
	tb.Helper()
	off, err := PublishKey(n, "", channel, data)
	if err != nil {
		tb.Fatal(err)
	}
	return off
}

// Stats fetches GET /api/stats (with key, "" for none). Test goroutine only.
func Stats(tb testing.TB, n *server.Node, key string) map[string]int64 {
	tb.Helper()
	status, body, err := APIRequest(n, http.MethodGet, "/api/stats", key, nil)
	if err != nil || status != http.StatusOK {
		tb.Fatalf("GET /api/stats: %d %s %v", status, body, err)
	}
	var m map[string]int64
	if err := json.Unmarshal(body, &m); err != nil {
		tb.Fatalf("GET /api/stats: %q: %v", body, err)
	}
	return m
}

func rawJSON(data any) ([]byte, error) {
	switch d := data.(type) {
	case json.RawMessage:
		return d, nil
	case []byte:
		return d, nil
	case string:
		return []byte(d), nil
	}
	return json.Marshal(data)
}

// Msg is one JSON frame from the server. Decoding rejects fields it does not
// list, so a frame with an unexpected field fails the test.
type Msg struct {
	Op        string          `json:"op"`
	ID        json.RawMessage `json:"id,omitempty"`
	Channel   string          `json:"channel,omitempty"`
	Offset    uint64          `json:"offset,omitempty"`
	Data      json.RawMessage `json:"data,omitempty"`
	Code      string          `json:"code,omitempty"`
	Message   string          `json:"message,omitempty"`
	Recovered *bool           `json:"recovered,omitempty"`
	Duplicate bool            `json:"duplicate,omitempty"` // publish ack of a repeated idempotency_key
	// User and Conn are a presence join's or leave's member.
	User string `json:"user,omitempty"`
	Conn string `json:"conn,omitempty"`
	// Raw is the frame's payload as received.
	Raw []byte `json:"-"`
}

func (m Msg) String() string { return string(m.Raw) }

// CloseError is what Next returns when the server sent a close frame.
type CloseError struct {
	Code   ws.StatusCode
	Reason string
}

func (e *CloseError) Error() string { return fmt.Sprintf("close frame %d %q", e.Code, e.Reason) }

// ErrBinary is returned by Next for a binary message (the push protocol
// only sends text).
var ErrBinary = errors.New("testutil: binary message from the server")

// WSClient is a push-protocol client over a gobwas/ws connection. The
// error-returning methods (Next, SendJSON, WriteFrame, SendClose) may be
// called from any single goroutine; the methods that fail the test (Send,
// Expect*, Subscribe) only from the test's goroutine.
type WSClient struct {
	tb   testing.TB
	Conn net.Conn
	br   *bufio.Reader
	// Timeout bounds each Expect; default 10 s.
	Timeout time.Duration
}

// DialWS connects to n's /ws with query (for example "token=..."), and
// header (may be nil), and closes the connection when the test ends.
func DialWS(tb testing.TB, n *server.Node, query string, header http.Header) *WSClient {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := DialWSContext(ctx, WSURL(n, query), header, nil)
	if err != nil {
		tb.Fatalf("dial %s: %v", WSURL(n, query), err)
	}
	c.tb = tb
	tb.Cleanup(func() { _ = c.Conn.Close() })
	return c
}

// DialWSContext connects to url without a testing.TB (for goroutines and
// soak tests); netDial, when not nil, opens the TCP connection. The caller
// closes c.Conn.
func DialWSContext(ctx context.Context, url string, header http.Header, netDial func(ctx context.Context, network, addr string) (net.Conn, error)) (*WSClient, error) {
	d := ws.Dialer{Timeout: 10 * time.Second, NetDial: netDial}
	if header != nil {
		d.Header = ws.HandshakeHeaderHTTP(header)
	}
	conn, br, _, err := d.Dial(ctx, url)
	if err != nil {
		return nil, err
	}
	if br == nil {
		br = bufio.NewReaderSize(conn, 4096)
	}
	return &WSClient{Conn: conn, br: br}, nil
}

// Upgrade sends a WebSocket upgrade request for target (path and query) to
// n's client listener by hand and returns the raw HTTP response, so tests
// can see the status of a refused upgrade. A 101 connection is closed.
func Upgrade(tb testing.TB, n *server.Node, target string, header http.Header) (status int, body string) {
	tb.Helper()
	c, err := net.DialTimeout("tcp", n.Addr().String(), 5*time.Second)
	if err != nil {
		tb.Fatalf("dial: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	var key [16]byte
	_, _ = rand.Read(key[:])
	var b bytes.Buffer
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n", target, n.Addr())
	fmt.Fprintf(&b, "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n", base64.StdEncoding.EncodeToString(key[:]))
	for k, vs := range header {
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	b.WriteString("\r\n")
	if _, err := c.Write(b.Bytes()); err != nil {
		tb.Fatalf("write upgrade request: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		tb.Fatalf("read upgrade response: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return resp.StatusCode, ""
	}
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

// SendJSON writes v (a []byte or string verbatim, anything else encoded)
// as one masked text frame.
func (c *WSClient) SendJSON(v any) error {
	p, err := rawJSON(v)
	if err != nil {
		return err
	}
	return c.WriteFrame(ws.OpText, p)
}

// WriteFrame writes one masked frame.
func (c *WSClient) WriteFrame(op ws.OpCode, payload []byte) error {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return wsutil.WriteClientMessage(c.Conn, op, payload)
}

// SendClose sends a close frame with code.
func (c *WSClient) SendClose(code ws.StatusCode) error {
	return c.WriteFrame(ws.OpClose, ws.NewCloseFrameBody(code, ""))
}

// Next reads the next text message within timeout and decodes it. A close
// frame comes back as a *CloseError; a timeout before any byte of a frame
// arrived leaves the connection usable (a net.Error with Timeout()). Pings
// are answered.
func (c *WSClient) Next(timeout time.Duration) (Msg, error) {
	p, err := c.NextRaw(timeout)
	if err != nil {
		return Msg{Raw: p}, err
	}
	return DecodeMsg(p)
}

// NextRaw is Next without the JSON decoding: the text message's payload.
func (c *WSClient) NextRaw(timeout time.Duration) ([]byte, error) {
	for {
		_ = c.Conn.SetReadDeadline(time.Now().Add(timeout))
		// Peek first so that a timeout consumes nothing and the stream
		// stays in sync; once a frame started, give the rest time.
		if _, err := c.br.Peek(1); err != nil {
			return nil, err
		}
		_ = c.Conn.SetReadDeadline(time.Now().Add(max(timeout, 10*time.Second)))
		h, err := ws.ReadHeader(c.br)
		if err != nil {
			return nil, err
		}
		p := make([]byte, h.Length)
		if _, err := io.ReadFull(c.br, p); err != nil {
			return nil, err
		}
		if h.Masked {
			return nil, errors.New("testutil: masked frame from the server")
		}
		switch h.OpCode {
		case ws.OpPing:
			if err := c.WriteFrame(ws.OpPong, p); err != nil {
				return nil, err
			}
			continue
		case ws.OpPong:
			continue
		case ws.OpClose:
			code, reason := ws.ParseCloseFrameData(p)
			return nil, &CloseError{Code: code, Reason: reason}
		case ws.OpBinary:
			return p, ErrBinary
		}
		if !h.Fin || h.OpCode != ws.OpText {
			return nil, fmt.Errorf("testutil: unexpected frame (op %v fin %v)", h.OpCode, h.Fin)
		}
		return p, nil
	}
}

// DecodeMsg decodes one server frame strictly.
func DecodeMsg(p []byte) (Msg, error) {
	var m Msg
	dec := json.NewDecoder(bytes.NewReader(p))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return Msg{Raw: p}, fmt.Errorf("testutil: frame %q: %w", p, err)
	}
	if dec.More() {
		return Msg{Raw: p}, fmt.Errorf("testutil: frame %q: trailing data", p)
	}
	m.Raw = p
	return m, nil
}

func (c *WSClient) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return 10 * time.Second
}

// Send writes v as a text frame or fails the test.
func (c *WSClient) Send(v any) {
	c.tb.Helper()
	if err := c.SendJSON(v); err != nil {
		c.tb.Fatalf("send: %v", err)
	}
}

// Read returns the next message or fails the test.
func (c *WSClient) Read() Msg {
	c.tb.Helper()
	m, err := c.Next(c.timeout())
	if err != nil {
		c.tb.Fatalf("read: %v", err)
	}
	return m
}

// Expect reads the next message and fails the test unless its op is op.
func (c *WSClient) Expect(op string) Msg {
	c.tb.Helper()
	m := c.Read()
	if m.Op != op {
		c.tb.Fatalf("got %s, want op %q", m.Raw, op)
	}
	return m
}

// idText is the JSON of a request id; nil means no id.
func idText(id any) string {
	if id == nil {
		return ""
	}
	b, _ := json.Marshal(id)
	return string(b)
}

// ExpectAck expects {"op":"ack"} with id (nil: none) and returns it.
func (c *WSClient) ExpectAck(id any) Msg {
	c.tb.Helper()
	m := c.Expect("ack")
	if string(m.ID) != idText(id) {
		c.tb.Fatalf("ack %s: id %s, want %s", m.Raw, m.ID, idText(id))
	}
	return m
}

// ExpectError expects {"op":"error","code":code,"message":...} with id
// (nil: none); the message must not be empty.
func (c *WSClient) ExpectError(id any, code string) Msg {
	c.tb.Helper()
	m := c.Expect("error")
	if string(m.ID) != idText(id) || m.Code != code || m.Message == "" {
		c.tb.Fatalf("got %s, want error %q with id %s and a message", m.Raw, code, idText(id))
	}
	return m
}

// ExpectMessage expects a message on channel and returns it.
func (c *WSClient) ExpectMessage(channel string) Msg {
	c.tb.Helper()
	m := c.Expect("message")
	if m.Channel != channel || m.Offset == 0 || len(m.Data) == 0 {
		c.tb.Fatalf("got %s, want a message on %q with offset and data", m.Raw, channel)
	}
	return m
}

// ExpectClose reads until a close frame and returns its code; messages
// before it are skipped.
func (c *WSClient) ExpectClose() ws.StatusCode {
	c.tb.Helper()
	for {
		_, err := c.Next(c.timeout())
		var ce *CloseError
		if errors.As(err, &ce) {
			return ce.Code
		}
		if err != nil {
			c.tb.Fatalf("waiting for a close frame: %v", err)
		}
	}
}

// Subscribe subscribes to channel with id and returns the ack's offset.
func (c *WSClient) Subscribe(channel string, id int) uint64 {
	c.tb.Helper()
	c.Send(fmt.Sprintf(`{"op":"subscribe","channel":%q,"id":%d}`, channel, id))
	m := c.ExpectAck(id)
	if m.Offset == 0 {
		c.tb.Fatalf("subscribe ack %s has no offset", m.Raw)
	}
	return m.Offset
}
