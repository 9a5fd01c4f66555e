package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-ws/herald/internal/testutil"
	"github.com/herald-ws/herald/server"
)

// sseMsg decodes a message event's data, which must be the /ws message JSON
// and match the event's id.
func sseMsg(t testing.TB, ev testutil.Event) testutil.Msg {
	t.Helper()
	if ev.Event != "message" {
		t.Fatalf("event %q (%s), want message", ev.Event, ev.Data)
	}
	m, err := testutil.DecodeMsg([]byte(ev.Data))
	if err != nil || m.Op != "message" {
		t.Fatalf("message data %q: %v", ev.Data, err)
	}
	return m
}

// sseAck is a "subscribed" event's data.
type sseAck struct {
	Op        string `json:"op"`
	Channel   string `json:"channel"`
	Offset    uint64 `json:"offset"`
	Recovered *bool  `json:"recovered"`
}

func expectSubscribed(t testing.TB, c *testutil.SSEClient, channel string) sseAck {
	t.Helper()
	ev := c.Expect(t, "subscribed")
	var a sseAck
	if err := json.Unmarshal([]byte(ev.Data), &a); err != nil || a.Op != "ack" || a.Channel != channel {
		t.Fatalf("subscribed event %q for %s: %v", ev.Data, channel, err)
	}
	return a
}

func TestSSEStreamsPublicationsAsEvents(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{})
	c := testutil.OpenSSE(t, n, "/sse?channel=news", nil)
	if ct := c.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	if cc := c.Header.Get("Cache-Control"); cc != "no-cache" {
		t.Fatalf("Cache-Control %q", cc)
	}
	if a := expectSubscribed(t, c, "news"); a.Recovered != nil {
		t.Fatalf("ack %+v: recovered without since", a)
	}
	// Data with newlines (JSON whitespace) must come back as the same value.
	datas := []string{`{"a":1}`, "{\n  \"b\": [1,\n 2]\r\n}", `"x"`}
	for _, d := range datas {
		off := testutil.Publish(t, n, "news", d)
		ev, err := c.NextEvent(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		m := sseMsg(t, ev)
		if ev.ID != fmt.Sprintf("news:%d", off) || m.Offset != off || m.Channel != "news" {
			t.Fatalf("event id %q, message %s, want offset %d", ev.ID, ev.Data, off)
		}
		if !jsonEqual(m.Data, []byte(d)) {
			t.Fatalf("data %s, want %s", m.Data, d)
		}
	}
}

func TestSSERefusesLikeWS(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{TokenSecret: secret, MaxChannelsPerConn: 2})
	onlyA := mint(t, secret, "42", []string{"a"}, false, time.Hour)
	other := mint(t, "other-secret", "42", nil, false, time.Hour)
	for _, tc := range []struct {
		name   string
		target string
		header http.Header
		want   int
	}{
		{"no token", "/sse?channel=a", nil, 401},
		{"bad signature", "/sse?channel=a&token=" + url.QueryEscape(other), nil, 401},
		{"expired", "/sse?channel=a&token=" + mint(t, secret, "42", nil, false, -time.Minute), nil, 401},
		{"bad bearer wins over a good query token", "/sse?channel=a&token=" + onlyA, http.Header{"Authorization": {"Bearer " + other}}, 401},
		{"forbidden channel", "/sse?channel=b&token=" + onlyA, nil, 403},
		{"forbidden among allowed", "/sse?channel=a&channel=b", http.Header{"Authorization": {"Bearer " + onlyA}}, 403},
		{"no channel", "/sse?token=" + onlyA, nil, 400},
		{"invalid channel", "/sse?channel=a%20b&token=" + onlyA, nil, 400},
		{"too many channels", "/sse?channel=a&channel=a:1&channel=a:2&token=" + mint(t, secret, "42", []string{"a*"}, false, time.Hour), nil, 400},
		{"bad since", "/sse?channel=a&since=a:x&token=" + onlyA, nil, 400},
		{"bad Last-Event-ID", "/sse?channel=a&token=" + onlyA, http.Header{"Last-Event-ID": {"nonsense"}}, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, status, body := testutil.SSERequest(t, n, tc.target, tc.header)
			if c != nil || status != tc.want {
				t.Fatalf("status %d (%q), want %d", status, body, tc.want)
			}
			// The same token is refused by /ws the same way at the upgrade.
			if tc.want == 401 {
				ws := strings.Replace(tc.target, "/sse", "/ws", 1)
				if st, _ := testutil.Upgrade(t, n, ws, tc.header); st != 401 {
					t.Fatalf("/ws answered %d, /sse 401", st)
				}
			}
		})
	}
	c := testutil.OpenSSE(t, n, "/sse?channel=a", http.Header{"Authorization": {"Bearer " + onlyA}})
	expectSubscribed(t, c, "a")
}

func TestSSECORSFollowsAllowedOrigins(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{Options: testutil.Options{AllowedOrigins: []string{"https://app.example"}}})
	c := testutil.OpenSSE(t, n, "/sse?channel=a", http.Header{"Origin": {"https://app.example"}})
	if got := c.Header.Get("Access-Control-Allow-Origin"); got != "https://app.example" {
		t.Fatalf("Access-Control-Allow-Origin %q", got)
	}
	if _, status, _ := testutil.SSERequest(t, n, "/sse?channel=a", http.Header{"Origin": {"https://evil.example"}}); status != 403 {
		t.Fatalf("foreign origin: status %d, want 403", status)
	}
}

func TestSSEHeartbeats(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{Options: testutil.Options{PingInterval: 100 * time.Millisecond, IdleTimeout: time.Second}})
	c := testutil.OpenSSE(t, n, "/sse?channel=a", nil)
	expectSubscribed(t, c, "a")
	// Several heartbeats, well past the idle timeout: a stream whose
	// client never speaks is not idle while its socket takes bytes.
	beats := 0
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		ev, err := c.Next(time.Second)
		if err != nil {
			t.Fatalf("after %d heartbeats: %v", beats, err)
		}
		if ev.Comment == "heartbeat" {
			beats++
		}
	}
	if beats < 5 {
		t.Fatalf("%d heartbeats in 3 s at a 100 ms interval", beats)
	}
}

// Recovery with Last-Event-ID while publishing continues: the client drops
// its connection every few events and resumes from the last id it saw; the
// events it gets over all connections are every offset once, in order, on
// each of its channels.
func TestSSERecoversWithLastEventIDWhilePublishing(t *testing.T) {
	t.Parallel()
	for _, channels := range [][]string{{"solo"}, {"r1", "r2", "r3"}} {
		t.Run(strings.Join(channels, "+"), func(t *testing.T) {
			t.Parallel()
			n := testutil.StartNode(t, testutil.NodeOptions{})
			const total = 300
			q := "/sse?channel=" + strings.Join(channels, "&channel=")
			c := testutil.OpenSSE(t, n, q, nil)
			for range channels {
				c.Expect(t, "subscribed")
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			pubDone := make(chan error, 1)
			var mu sync.Mutex
			published := map[string][]uint64{}
			go func() {
				for i := 0; i < total; i++ {
					for _, ch := range channels {
						off, err := testutil.PublishKey(n, "", ch, i)
						if err != nil {
							pubDone <- err
							return
						}
						mu.Lock()
						published[ch] = append(published[ch], off)
						mu.Unlock()
					}
					if ctx.Err() != nil {
						break
					}
				}
				pubDone <- nil
			}()
			received := map[string][]uint64{}
			got, reconnects := 0, 0
			for got < total*len(channels) {
				ev, err := c.NextEvent(10 * time.Second)
				if err != nil {
					t.Fatalf("after %d events: %v", got, err)
				}
				if ev.Event == "subscribed" {
					a := sseAckOf(t, ev)
					if a.Recovered == nil || !*a.Recovered {
						t.Fatalf("resubscribe %s not recovered", ev.Data)
					}
					continue
				}
				m := sseMsg(t, ev)
				if r := received[m.Channel]; len(r) > 0 && m.Offset <= r[len(r)-1] {
					t.Fatalf("channel %s: offset %d after %d (id %q)", m.Channel, m.Offset, r[len(r)-1], ev.ID)
				}
				received[m.Channel] = append(received[m.Channel], m.Offset)
				got++
				if got%37 == 0 {
					last := c.LastID
					c.Conn.Close()
					c = testutil.OpenSSE(t, n, q, http.Header{"Last-Event-ID": {last}})
					reconnects++
				}
			}
			if err := <-pubDone; err != nil {
				t.Fatal(err)
			}
			for _, ch := range channels {
				if fmt.Sprint(received[ch]) != fmt.Sprint(published[ch]) {
					t.Fatalf("channel %s: received %d offsets, published %d, or not the same", ch, len(received[ch]), len(published[ch]))
				}
			}
			if reconnects == 0 {
				t.Fatal("never reconnected")
			}
		})
	}
}

func sseAckOf(t testing.TB, ev testutil.Event) sseAck {
	t.Helper()
	var a sseAck
	if err := json.Unmarshal([]byte(ev.Data), &a); err != nil {
		t.Fatalf("ack %q: %v", ev.Data, err)
	}
	return a
}

func TestSSESinceAndRecoveredFalse(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{HistorySize: 10})
	var offs []uint64
	for i := 1; i <= 30; i++ {
		offs = append(offs, testutil.Publish(t, n, "h", i))
	}
	// Within the history: exactly the publications after since.
	c := testutil.OpenSSE(t, n, fmt.Sprintf("/sse?channel=h&since=%d", offs[24]), nil)
	if a := expectSubscribed(t, c, "h"); a.Recovered == nil || !*a.Recovered || a.Offset != offs[29] {
		t.Fatalf("ack %+v: want recovered at %d", a, offs[29])
	}
	for _, want := range offs[25:] {
		ev, err := c.NextEvent(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if m := sseMsg(t, ev); m.Offset != want {
			t.Fatalf("offset %d, want %d", m.Offset, want)
		}
	}
	off := testutil.Publish(t, n, "h", `"live"`)
	if ev, _ := c.NextEvent(5 * time.Second); sseMsg(t, ev).Offset != off {
		t.Fatalf("live event %q", ev.Data)
	}
	// Past the history: recovered false, then what the history holds.
	c = testutil.OpenSSE(t, n, fmt.Sprintf("/sse?channel=h&since=h:%d", offs[2]), nil)
	if a := expectSubscribed(t, c, "h"); a.Recovered == nil || *a.Recovered {
		t.Fatalf("ack %+v: want recovered false", a)
	}
	// Above the top (a reset store): recovered false, positioned at the top.
	c = testutil.OpenSSE(t, n, "/sse?channel=h", http.Header{"Last-Event-ID": {fmt.Sprintf("h:%d", off+1000)}})
	if a := expectSubscribed(t, c, "h"); a.Recovered == nil || *a.Recovered || a.Offset != off {
		t.Fatalf("ack %+v: want recovered false at %d", a, off)
	}
	off = testutil.Publish(t, n, "h", `"after"`)
	if ev, _ := c.NextEvent(5 * time.Second); sseMsg(t, ev).Offset != off {
		t.Fatalf("event after a reset position %q", ev.Data)
	}
}

// Shutdown ends every stream (a FIN after what was queued), so clients
// reconnect elsewhere.
func TestSSEShutdownEndsTheStream(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{})
	var cs []*testutil.SSEClient
	for range 20 {
		c := testutil.OpenSSE(t, n, "/sse?channel=s", nil)
		expectSubscribed(t, c, "s")
		cs = append(cs, c)
	}
	off := testutil.Publish(t, n, "s", `"last"`)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- testutil.ShutdownNode(ctx, n, 200*time.Millisecond)
	}()
	for i, c := range cs {
		ev, err := c.NextEvent(5 * time.Second)
		if err != nil || sseMsg(t, ev).Offset != off {
			t.Fatalf("client %d: %q %v, want the last publication", i, ev.Data, err)
		}
		if _, err := c.NextEvent(5 * time.Second); !errors.Is(err, io.EOF) {
			t.Fatalf("client %d: %v, want the stream to end", i, err)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

// A client that never reads its stream is closed as a slow consumer once
// its unsent bytes pass the write-buffer limit, and the others still get
// everything.
func TestSSESlowConsumerIsClosed(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{Options: testutil.Options{WriteBufferLimit: 256 << 10}})
	stuck := testutil.OpenSSE(t, n, "/sse?channel=big", nil)
	reader := testutil.OpenSSE(t, n, "/sse?channel=big", nil)
	expectSubscribed(t, reader, "big")
	payload := `"` + strings.Repeat("x", 64<<10) + `"`
	const total = 160 // 10 MB: far past the socket buffers plus the limit
	read := make(chan []uint64, 1)
	go func() { read <- readOffsets(reader, total) }()
	var offs []uint64
	for range total {
		offs = append(offs, testutil.Publish(t, n, "big", payload))
	}
	if got := <-read; fmt.Sprint(got) != fmt.Sprint(offs) {
		t.Fatalf("the reading stream got %d of %d publications, or out of order", len(got), total)
	}
	deadline := time.Now().Add(5 * time.Second)
	for testutil.Stats(t, n, "")["slow_consumer_closes"] < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the stream that never reads was not closed as a slow consumer")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Its connection ends: what it can still read stops at an EOF.
	_ = stuck.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, stuck.Conn); err != nil {
		t.Fatalf("stuck stream: %v, want EOF", err)
	}
}

// Every publication reaches each of 1,000 streams exactly once and in
// order.
func TestSSEFanOutToAThousandStreams(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{})
	const clients, total = 1000, 50
	cs := make([]*testutil.SSEClient, clients)
	for i := range cs {
		cs[i] = testutil.OpenSSE(t, n, "/sse?channel=fan&channel=side", nil)
	}
	got := make([][]uint64, clients)
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = readOffsets(c, total)
		}()
	}
	// Wait until every stream is subscribed before publishing: a
	// publication before a subscribe is not the stream's.
	waitSubscriptions(t, n, 2*clients)
	var offs []uint64
	for i := 0; i < total; i++ {
		offs = append(offs, testutil.Publish(t, n, "fan", i))
	}
	wg.Wait()
	want := fmt.Sprint(offs)
	for i := range got {
		if fmt.Sprint(got[i]) != want {
			t.Fatalf("stream %d got %v, want %v", i, got[i], offs)
		}
	}
}

// readOffsets reads c until it has total message events (or the stream
// fails) and returns their offsets in the order they came.
func readOffsets(c *testutil.SSEClient, total int) []uint64 {
	var offs []uint64
	for len(offs) < total {
		ev, err := c.NextEvent(20 * time.Second)
		if err != nil {
			return offs
		}
		if ev.Event != "message" {
			continue
		}
		m, err := testutil.DecodeMsg([]byte(ev.Data))
		if err != nil {
			return offs
		}
		offs = append(offs, m.Offset)
	}
	return offs
}

func waitSubscriptions(t testing.TB, n *server.Node, want int64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for n.Hub().Stats().Subscriptions < want {
		if time.Now().After(deadline) {
			t.Fatalf("%d subscriptions, want %d", n.Hub().Stats().Subscriptions, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A CORS preflight for /sse or /poll from an allowed origin is answered
// 204 with the headers a page may send, and the connection then serves
// the GET; a foreign origin gets 403.
func TestStreamPreflight(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{Options: testutil.Options{AllowedOrigins: []string{"https://app.example"}}})
	for _, path := range []string{"/sse", "/poll"} {
		c, err := net.Dial("tcp", n.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		br := bufio.NewReader(c)
		fmt.Fprintf(c, "OPTIONS %s?channel=a HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example\r\nAccess-Control-Request-Headers: authorization\r\n\r\n", path)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" ||
			!strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
			t.Fatalf("%s preflight: %d %v", path, resp.StatusCode, resp.Header)
		}
		fmt.Fprintf(c, "GET %s?channel=a&timeout=0 HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example\r\n\r\n", path)
		if resp, err = http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s after the preflight: %v %v", path, resp, err)
		}
	}
	c, err := net.Dial("tcp", n.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "OPTIONS /sse?channel=a HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.example\r\n\r\n")
	if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil || resp.StatusCode != 403 {
		t.Fatalf("foreign preflight: %v %v", resp, err)
	}
	if st, _ := testutil.Upgrade(t, n, "/ws", nil); st != 101 {
		t.Fatalf("/ws upgrade still works: %d", st)
	}
}
