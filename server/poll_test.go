package server_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/herald-ws/herald/internal/testutil"
	"github.com/herald-ws/herald/server"
)

// pollAnswer is /poll's answer.
type pollAnswer struct {
	Messages  []json.RawMessage `json:"messages"`
	Since     map[string]uint64 `json:"since"`
	Recovered bool              `json:"recovered"`
}

// offsets decodes the answer's messages, which must be /ws message JSON.
func (a pollAnswer) offsets(t testing.TB, channel string) []uint64 {
	t.Helper()
	var out []uint64
	for _, raw := range a.Messages {
		m, err := testutil.DecodeMsg(raw)
		if err != nil || m.Op != "message" {
			t.Fatalf("message %s: %v", raw, err)
		}
		if channel == "" || m.Channel == channel {
			out = append(out, m.Offset)
		}
	}
	return out
}

// pollClient's timeout is a safety net only (no test asserts timing): on a
// machine loaded by other work a thousand polls can take long.
var pollClient = &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 1100, MaxConnsPerHost: 1100}}

// poll sends one GET /poll?query and decodes a 200 answer; another status
// comes back with its body.
func poll(n *server.Node, query string, header http.Header) (pollAnswer, int, string, error) {
	req, err := http.NewRequest("GET", "http://"+n.Addr().String()+"/poll?"+query, nil)
	if err != nil {
		return pollAnswer{}, 0, "", err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := pollClient.Do(req)
	if err != nil {
		return pollAnswer{}, 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return pollAnswer{}, 0, "", err
	}
	if resp.StatusCode != 200 {
		return pollAnswer{}, resp.StatusCode, string(body), nil
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		return pollAnswer{}, 0, "", fmt.Errorf("Content-Type %q", ct)
	}
	var a pollAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		return pollAnswer{}, 0, "", fmt.Errorf("answer %s: %w", body, err)
	}
	return a, 200, "", nil
}

func mustPoll(t testing.TB, n *server.Node, query string) pollAnswer {
	t.Helper()
	a, status, body, err := poll(n, query, nil)
	if err != nil || status != 200 {
		t.Fatalf("poll %s: %d %q %v", query, status, body, err)
	}
	return a
}

func TestPollAnswersAtOnceWithWhatFollowsSince(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{})
	var offs []uint64
	for i := range 5 {
		offs = append(offs, testutil.Publish(t, n, "p", i))
	}
	start := time.Now()
	a := mustPoll(t, n, fmt.Sprintf("channel=p&since=%d&timeout=20s", offs[1]))
	if time.Since(start) > 10*time.Second {
		t.Fatal("a poll with publications waiting was held")
	}
	if got := a.offsets(t, "p"); fmt.Sprint(got) != fmt.Sprint(offs[2:]) || a.Since["p"] != offs[4] || !a.Recovered {
		t.Fatalf("answer %+v (offsets %v), want %v since %d recovered", a, got, offs[2:], offs[4])
	}
	// timeout=0 answers at once even with nothing new, positioned at the top.
	a = mustPoll(t, n, "channel=p&channel=q&timeout=0")
	if len(a.Messages) != 0 || a.Since["p"] != offs[4] {
		t.Fatalf("empty answer %+v", a)
	}
	if _, ok := a.Since["q"]; !ok {
		t.Fatalf("answer %+v has no position on the empty channel", a)
	}
}

func TestPollHoldsUntilAPublicationOrTheTimeout(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{})
	top := testutil.Publish(t, n, "h", 0)
	got := make(chan pollAnswer, 1)
	go func() {
		a, _, _, _ := poll(n, fmt.Sprintf("channel=h&since=h:%d&timeout=20s", top), nil)
		got <- a
	}()
	waitSubscriptions(t, n, 1)
	select {
	case a := <-got:
		t.Fatalf("answered before any publication: %+v", a)
	case <-time.After(200 * time.Millisecond):
	}
	off := testutil.Publish(t, n, "h", `"wake"`)
	select {
	case a := <-got:
		if o := a.offsets(t, "h"); len(o) != 1 || o[0] != off || a.Since["h"] != off {
			t.Fatalf("answer %+v, want the one publication %d", a, off)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the held poll was not answered by a publication")
	}
	waitSubscriptions(t, n, 0) // the answered poll holds nothing
	// The timeout, checked by the engine's sweep: an empty answer, with
	// the position unchanged.
	start := time.Now()
	a := mustPoll(t, n, fmt.Sprintf("channel=h&since=%d&timeout=1s", off))
	if el := time.Since(start); el < time.Second || len(a.Messages) != 0 || a.Since["h"] != off {
		t.Fatalf("after %v: %+v, want an empty answer after the 1 s timeout", el, a)
	}
}

// Consecutive polls reuse one connection (keep-alive), checked both with
// Go's client and by hand on one socket.
func TestPollKeepAlive(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{})
	reused := 0
	client := &http.Client{Transport: &http.Transport{}}
	for i := range 4 {
		off := testutil.Publish(t, n, "k", i)
		trace := &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) {
			if ci.Reused {
				reused++
			}
		}}
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://%s/poll?channel=k&since=%d&timeout=0", n.Addr(), off-1), nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if reused != 3 {
		t.Fatalf("%d of 3 later polls reused the connection", reused)
	}
	c, err := net.Dial("tcp", n.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for i := range 3 {
		fmt.Fprintf(c, "GET /poll?channel=k&timeout=0 HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("poll %d on one connection: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("poll %d: %d", i, resp.StatusCode)
		}
	}
	// The same connection may then upgrade to WebSocket-free SSE.
	fmt.Fprintf(c, "GET /sse?channel=k HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("sse after polls on one connection: %v", err)
	}
}

// A connection kept open after an answer that sends no next request
// within the handshake timeout is closed without a response: a 408 there
// would be read as the answer to a request the client sent at that moment.
func TestPollIdleKeepAliveClosesSilently(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{Options: testutil.Options{HandshakeTimeout: 300 * time.Millisecond}})
	c, err := net.Dial("tcp", n.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	fmt.Fprintf(c, "GET /poll?channel=i&timeout=0 HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	rest, err := io.ReadAll(br)
	if err != nil || len(rest) != 0 {
		t.Fatalf("idle kept-alive connection: read %q, %v; want a silent close", rest, err)
	}
}

func TestPollRecoveredFalseAndRefusals(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{HistorySize: 5, TokenSecret: secret,
		Options: testutil.Options{AllowedOrigins: []string{"https://app.example"}}})
	tok := url.QueryEscape(mint(t, secret, "7", []string{"r"}, false, time.Hour))
	var offs []uint64
	for i := range 12 {
		offs = append(offs, testutil.Publish(t, n, "r", i))
	}
	a := mustPoll(t, n, fmt.Sprintf("channel=r&since=%d&timeout=0&token=%s", offs[0], tok))
	if a.Recovered || a.Since["r"] != offs[11] {
		t.Fatalf("past the history: %+v, want recovered false positioned at %d", a, offs[11])
	}
	for _, tc := range []struct {
		query  string
		header http.Header
		want   int
	}{
		{"channel=r", nil, 401},
		{"channel=r&token=junk", nil, 401},
		{"channel=s&token=" + tok, nil, 403},
		{"token=" + tok, nil, 400},
		{"channel=r&timeout=forever&token=" + tok, nil, 400},
		{"channel=r&timeout=1h&token=" + tok, nil, 400},
		{"channel=r&token=" + tok, http.Header{"Origin": {"https://evil.example"}}, 403},
	} {
		if _, status, body, err := poll(n, tc.query, tc.header); err != nil || status != tc.want {
			t.Fatalf("%s: %d %q %v, want %d", tc.query, status, body, err, tc.want)
		}
	}
	req, _ := http.NewRequest("GET", fmt.Sprintf("http://%s/poll?channel=r&timeout=0&token=%s", n.Addr(), tok), nil)
	req.Header.Set("Origin", "https://app.example")
	resp, err := pollClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "https://app.example" {
		t.Fatalf("Access-Control-Allow-Origin %q", got)
	}
}

// 1,000 clients poll in a loop, each from the since of its previous
// answer, while publications go on: each gets every publication exactly
// once and in order.
func TestPollDeliversEveryPublicationOnceToAThousandClients(t *testing.T) {
	t.Parallel()
	// Go's client may dial a connection it then leaves unused for a
	// while; on a loaded machine that can pass a short handshake timeout
	// (and its 408 race a request), which is not what this test is about.
	n := testutil.StartNode(t, testutil.NodeOptions{Options: testutil.Options{HandshakeTimeout: time.Minute}})
	const clients, total = 1000, 30
	first := testutil.Publish(t, n, "lp", `"start"`)
	var mu sync.Mutex
	var published []uint64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range total {
			off, err := testutil.PublishKey(n, "", "lp", i)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			published = append(published, off)
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	}()
	got := make([][]uint64, clients)
	errs := make([]error, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			since := first
			for len(got[i]) < total {
				a, status, body, err := poll(n, fmt.Sprintf("channel=lp&since=%d&timeout=10s", since), nil)
				if err != nil || status != 200 {
					errs[i] = fmt.Errorf("poll: %d %q %v", status, body, err)
					return
				}
				for _, raw := range a.Messages {
					m, _ := testutil.DecodeMsg(raw)
					got[i] = append(got[i], m.Offset)
				}
				if !a.Recovered {
					errs[i] = fmt.Errorf("not recovered from %d", since)
					return
				}
				since = a.Since["lp"]
			}
		}()
	}
	wg.Wait()
	<-done
	want := fmt.Sprint(published)
	for i := range got {
		if errs[i] != nil {
			t.Fatalf("client %d: %v", i, errs[i])
		}
		if fmt.Sprint(got[i]) != want {
			t.Fatalf("client %d got %v, want %v", i, got[i], published)
		}
	}
}
