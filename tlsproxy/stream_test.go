package tlsproxy

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestSSEAndPollThroughDocumentedNginx: the documented nginx.conf carries
// the fallback transports over https://: an SSE stream gets its
// subscribed event and then a publication as it is made (nginx buffers
// nothing), a poll with a position answers with what it missed, and a
// poll held open is answered by the next publication.
func TestSSEAndPollThroughDocumentedNginx(t *testing.T) {
	e := newEnv(t, envOptions{})

	res, err := e.HTTPS.Get(e.proxy.URL("/sse?channel=nginx-sse"))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("GET /sse through nginx: HTTP %d, Content-Type %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	br := bufio.NewReader(res.Body)
	readUntil := func(want string) {
		t.Helper()
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("SSE through nginx ended before %q: %v", want, err)
			}
			if strings.Contains(line, want) {
				return
			}
		}
	}
	readUntil("event: subscribed")
	off := e.publish("nginx-sse", `"live"`)
	readUntil(fmt.Sprintf(`"offset":%d`, off))

	// A poll from a position gets what was published after it.
	o1 := e.publish("nginx-poll", `"first"`)
	msgs := e.poll(fmt.Sprintf("/poll?channel=nginx-poll&since=nginx-poll:%d&timeout=0", o1-1))
	if len(msgs) != 1 || !strings.Contains(msgs[0], `"first"`) {
		t.Fatalf("poll from %d answered %v, want the one publication", o1-1, msgs)
	}
	// A poll held open (its position is the top) is answered by the
	// next publication, through nginx.
	got := make(chan []string, 1)
	go func() { got <- e.poll(fmt.Sprintf("/poll?channel=nginx-poll&since=nginx-poll:%d&timeout=20s", o1)) }()
	time.Sleep(300 * time.Millisecond) // the poll is most likely held by now; since covers it if not
	e.publish("nginx-poll", `"second"`)
	select {
	case msgs := <-got:
		if len(msgs) != 1 || !strings.Contains(msgs[0], `"second"`) {
			t.Fatalf("held poll answered %v, want the second publication", msgs)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the held poll was never answered through nginx")
	}
}

// poll GETs path through the proxy and returns the answer's messages.
func (e *env) poll(path string) []string {
	res, err := e.HTTPS.Get(e.proxy.URL(path))
	if err != nil {
		e.t.Error(err)
		return nil
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if res.StatusCode != http.StatusOK {
		e.t.Errorf("GET %s through nginx: HTTP %d: %s", path, res.StatusCode, raw)
		return nil
	}
	var out struct {
		Messages []json.RawMessage `json:"messages"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		e.t.Errorf("GET %s: %v: %s", path, err, raw)
		return nil
	}
	s := make([]string, len(out.Messages))
	for i, m := range out.Messages {
		s[i] = string(m)
	}
	return s
}
