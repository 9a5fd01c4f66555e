package testutil

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herald-ws/herald/server"
)

// SSEClient is a Server-Sent Events client over a raw TCP connection, so
// tests control when (and whether) it reads. Its methods are for one
// goroutine.
type SSEClient struct {
	Conn   net.Conn
	Header http.Header // the response's header fields
	br     *bufio.Reader
	// LastID is the id of the last event read that carried one, what an
	// EventSource would send back as Last-Event-ID.
	LastID string
}

// Event is one Server-Sent Event, or a comment (Comment set, the rest
// empty).
type Event struct {
	ID      string
	Event   string // "message" when the stream names none
	Data    string // data lines joined with LF
	Comment string
	Retry   string
}

// SSERequest opens GET target (path and query) on n's client listener with
// header and returns the connection after the response head; a status
// other than 200 comes back with the body and a nil client.
func SSERequest(tb testing.TB, n *server.Node, target string, header http.Header) (*SSEClient, int, string) {
	tb.Helper()
	c, status, body, err := DialSSE(n.Addr().String(), target, header)
	if err != nil {
		tb.Fatalf("sse %s: %v", target, err)
	}
	if c != nil {
		tb.Cleanup(func() { c.Conn.Close() })
	}
	return c, status, body
}

// OpenSSE is SSERequest that requires a 200.
func OpenSSE(tb testing.TB, n *server.Node, target string, header http.Header) *SSEClient {
	tb.Helper()
	c, status, body := SSERequest(tb, n, target, header)
	if c == nil {
		tb.Fatalf("sse %s: status %d %q", target, status, body)
	}
	return c
}

// DialSSE is SSERequest for any address, without a testing.TB (safe from
// any goroutine).
func DialSSE(addr, target string, header http.Header) (*SSEClient, int, string, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, 0, "", err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n", target, addr)
	for k, vs := range header {
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	b.WriteString("\r\n")
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(b.Bytes()); err != nil {
		conn.Close()
		return nil, 0, "", err
	}
	br := bufio.NewReaderSize(conn, 16<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, 0, "", err
	}
	_ = conn.SetDeadline(time.Time{})
	if resp.StatusCode != http.StatusOK {
		out, _ := io.ReadAll(resp.Body)
		conn.Close()
		return nil, resp.StatusCode, string(out), nil
	}
	// The stream has no length: it is the rest of the connection, which
	// br already buffers the start of.
	return &SSEClient{Conn: conn, Header: resp.Header, br: br}, resp.StatusCode, "", nil
}

// Next reads the next event or comment, waiting at most timeout; io.EOF
// when the server ended the stream.
func (c *SSEClient) Next(timeout time.Duration) (Event, error) {
	_ = c.Conn.SetReadDeadline(time.Now().Add(timeout))
	var ev Event
	var data []string
	seen := false
	for {
		line, err := c.br.ReadString('\n')
		if err != nil {
			if err == io.EOF && line == "" {
				return Event{}, io.EOF
			}
			return Event{}, err
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			if !seen {
				continue
			}
			ev.Data = strings.Join(data, "\n")
			if ev.Event == "" && ev.Comment == "" && ev.Retry == "" {
				ev.Event = "message"
			}
			if ev.ID != "" {
				c.LastID = ev.ID
			}
			return ev, nil
		}
		seen = true
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "":
			ev.Comment = value
		case "id":
			ev.ID = value
		case "event":
			ev.Event = value
		case "data":
			data = append(data, value)
		case "retry":
			ev.Retry = value
		}
	}
}

// NextEvent reads events, skipping comments and retry hints, until one
// with a name arrives.
func (c *SSEClient) NextEvent(timeout time.Duration) (Event, error) {
	deadline := time.Now().Add(timeout)
	for {
		ev, err := c.Next(time.Until(deadline))
		if err != nil || (ev.Comment == "" && (ev.Retry == "" || ev.Data != "")) {
			return ev, err
		}
	}
}

// Expect reads the next named event and fails unless it is called name.
func (c *SSEClient) Expect(tb testing.TB, name string) Event {
	tb.Helper()
	ev, err := c.NextEvent(10 * time.Second)
	if err != nil {
		tb.Fatalf("waiting for event %q: %v", name, err)
	}
	if ev.Event != name {
		tb.Fatalf("event %q (%s), want %q", ev.Event, ev.Data, name)
	}
	return ev
}
