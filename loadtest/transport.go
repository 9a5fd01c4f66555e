package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// The push scenario's transports (PushConfig.Transport): subscribers on
// /ws, on Server-Sent Events (/sse, read by the client's event loops like
// /ws) or on long polls (/poll, one poll after another on a kept-alive
// connection, each read by a goroutine of its own: a poll is a blocking
// request and reply). The -url's path is replaced by /sse or /poll.
const (
	TransportWS   = "ws"
	TransportSSE  = "sse"
	TransportPoll = "poll"
)

// checkTransport validates the push transport of c.
func (c *Config) checkTransport() error {
	switch c.Push.Transport {
	case "":
		c.Push.Transport = TransportWS
		return nil
	case TransportWS:
		return nil
	case TransportSSE, TransportPoll:
	default:
		return fmt.Errorf("loadtest: -transport %q: want ws, sse or poll", c.Push.Transport)
	}
	if c.Scenario != "push" || c.Push.BroadcastURL != "" {
		return fmt.Errorf("loadtest: -transport %s needs -scenario push against Herald (no -broadcast-url)", c.Push.Transport)
	}
	for _, u := range c.urls {
		if u.Scheme != "ws" {
			return fmt.Errorf("loadtest: -transport %s needs ws:// URLs (plain HTTP), not %s", c.Push.Transport, u)
		}
	}
	return nil
}

// streams reports whether the push transport is plain HTTP (no upgrade).
func (c *Config) streams() bool {
	return c.Push.Transport == TransportSSE || c.Push.Transport == TransportPoll
}

// dialPlain opens a TCP connection for a plain HTTP transport.
func dialPlain(ctx context.Context, u *url.URL, src net.IP, timeout time.Duration) (*conn, error) {
	d := net.Dialer{Timeout: timeout}
	if src != nil {
		d.LocalAddr = &net.TCPAddr{IP: src}
	}
	nc, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, err
	}
	return &conn{Conn: nc}, nil
}

// streamRequest writes GET path?channel=channel&query to c.
func streamRequest(c *conn, host, path, channel, query string) error {
	target := path + "?channel=" + url.QueryEscape(channel)
	if query != "" {
		target += "&" + query
	}
	_, err := io.WriteString(c, "GET "+target+" HTTP/1.1\r\nHost: "+host+"\r\n\r\n")
	return err
}

// subscribeSSE opens c's event stream on channel and waits for its
// "subscribed" event. Like subscribe, it reads no further: what follows
// stays in the socket for the event loop that takes the connection over.
func subscribeSSE(c *conn, host, channel string) error {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	defer func() { _ = c.SetDeadline(time.Time{}) }()
	if err := streamRequest(c, host, "/sse", channel, ""); err != nil {
		return err
	}
	// One byte at a time up to the ack: a buffered reader could take
	// events that follow it.
	var got []byte
	one := make([]byte, 1)
	for !bytes.Contains(got, []byte("event: subscribed\n")) || !bytes.HasSuffix(got, []byte("\n\n")) {
		if _, err := c.Read(one); err != nil {
			return err
		}
		got = append(got, one[0])
		if len(got) > 16<<10 {
			return fmt.Errorf("no subscribed event in %d bytes", len(got))
		}
		if len(got) == 12 && !bytes.HasPrefix(got, []byte("HTTP/1.1 200")) {
			return fmt.Errorf("sse refused: %q", got)
		}
		if bytes.HasSuffix(got, []byte("event: subscribe_error\n")) {
			return fmt.Errorf("sse subscribe failed")
		}
	}
	return nil
}

// nextEvent returns the data of the first complete event in b (its lines
// joined) and the bytes up to its end; n == 0 while no event is complete.
// Comments and events without data come back with nil data. data aliases
// b when the event has one data line.
func nextEvent(b []byte) (data []byte, n int) {
	end := bytes.Index(b, []byte("\n\n"))
	if end < 0 {
		return nil, 0
	}
	block := b[:end+1]
	for len(block) > 0 {
		i := bytes.IndexByte(block, '\n')
		line := block[:i]
		block = block[i+1:]
		if d, ok := bytes.CutPrefix(line, []byte("data: ")); ok {
			if data == nil {
				data = d
			} else {
				data = append(append(append([]byte(nil), data...), '\n'), d...)
			}
		}
	}
	return data, end + 2
}

// pollAnswer is /poll's answer.
type pollAnswer struct {
	Messages []json.RawMessage `json:"messages"`
	Since    map[string]uint64 `json:"since"`
}

// poll sends one poll on c and reads its answer.
func poll(c *conn, br *bufio.Reader, host, channel string, since *uint64, timeout time.Duration) (pollAnswer, error) {
	q := "timeout=" + strconv.Itoa(int(timeout/time.Second))
	if since != nil {
		q += "&since=" + strconv.FormatUint(*since, 10)
	}
	if err := streamRequest(c, host, "/poll", channel, q); err != nil {
		return pollAnswer{}, err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return pollAnswer{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return pollAnswer{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return pollAnswer{}, fmt.Errorf("poll: HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(body))
	}
	var a pollAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		return pollAnswer{}, fmt.Errorf("poll answer: %w", err)
	}
	return a, nil
}

// pollHold is how long the server may hold each poll of a run.
const pollHold = 20 * time.Second

// startPolling hands a connection whose first poll (timeout 0, the
// position) is done to a goroutine that polls from that position until
// the run stops. s is nil for a connection that is not measured.
func (pp *pushPart) startPolling(c *conn, s *subscriber, host, channel string, since uint64) {
	pp.smu.Lock()
	defer pp.smu.Unlock()
	if pp.wssStopping {
		_ = c.Close()
		pp.m.open.Add(-1)
		return
	}
	pp.live[c] = struct{}{}
	pp.readers.Add(1)
	go func() {
		defer pp.readers.Done()
		defer func() {
			pp.smu.Lock()
			delete(pp.live, c)
			pp.smu.Unlock()
			_ = c.Close()
			pp.m.open.Add(-1)
		}()
		br := bufio.NewReaderSize(c, 16<<10)
		for {
			a, err := poll(c, br, host, channel, &since, pollHold)
			if err != nil {
				if !pp.stopping.Load() && pp.p != nil {
					pp.p.errs.add("read", err)
				}
				return
			}
			now := time.Now().UnixNano()
			if s != nil {
				var t tally
				for _, m := range a.Messages {
					pp.onMessage(s, m, now, &t)
				}
				pp.flush(&t)
			}
			if pos, ok := a.Since[channel]; ok {
				since = pos
			}
		}
	}()
}
