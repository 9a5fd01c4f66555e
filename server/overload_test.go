package server_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herald-ws/herald/internal/testutil"
	"github.com/herald-ws/herald/server"
)

// TestOverloadedLoopRefusesInsteadOfDropping holds a subscriber's event
// loop back while publishes arrive. The API acknowledges publications until the
// loop's inbox reaches its high-water mark, then answers 503 overloaded
// with Retry-After within -overload-wait (and a client publish on another
// loop is answered unavailable at once). Once the loop runs again the subscriber gets
// exactly the acknowledged publications, in order, and the broker's
// history holds nothing that was refused.
func TestOverloadedLoopRefusesInsteadOfDropping(t *testing.T) {
	const (
		inbox = 32
		wait  = 300 * time.Millisecond
	)
	n := startWith(t, testutil.NodeOptions{Options: testutil.Options{Loops: 2}, ClientPublish: true}, func(o *server.Options) {
		o.InboxPublications = inbox
		o.OverloadWait = wait
		o.PublishRate = 0
	})
	sub := testutil.DialWS(t, n, "", nil)
	sub.Subscribe("c", 1)
	pub := testutil.DialWS(t, n, "", nil)
	// gnet hands connections to its loops in turn: the subscriber's loop
	// (the first one seen, index 0) is held, the publisher's runs.
	if lc := n.Engine().LoopConns(); len(lc) != 2 || lc[0] != 1 || lc[1] != 1 {
		t.Fatalf("connections per loop %v, want one on each", lc)
	}

	release := make(chan struct{})
	held := make(chan struct{})
	if err := n.Engine().Exec(0, func() { close(held); <-release }); err != nil {
		t.Fatal(err)
	}
	<-held
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()

	var acked []uint64
	refused := 0
	for i := 0; i < inbox && refused < 3; i++ {
		start := time.Now()
		code, body := publishRaw(t, n, `{"channel":"c","data":{"i":`+itoa(i)+`}}`)
		took := time.Since(start)
		switch code {
		case http.StatusOK:
			if refused > 0 {
				t.Fatalf("publish %d acknowledged after a refusal while the loop was still held", i)
			}
			var off uint64
			if err := json.Unmarshal(body["offset"], &off); err != nil {
				t.Fatalf("publish %d: %v", i, err)
			}
			acked = append(acked, off)
		case http.StatusServiceUnavailable:
			refused++
			if !strings.Contains(string(body["error"]), "overloaded") {
				t.Fatalf("503 without the reason: %s", body["error"])
			}
			if took < wait || took > wait+5*time.Second {
				t.Fatalf("overloaded answer after %v, want after -overload-wait (%v) and soon after it", took, wait)
			}
		default:
			t.Fatalf("publish %d: status %d %v", i, code, body)
		}
	}
	if refused == 0 || len(acked) != inbox*3/4 {
		t.Fatalf("%d acknowledged and %d refused; want the first %d (3/4 of the inbox) acknowledged, then refusals", len(acked), refused, inbox*3/4)
	}
	// Retry-After is on the answer.
	req, _ := http.NewRequest(http.MethodPost, testutil.APIURL(n, "/api/publish"), strings.NewReader(`{"channel":"c","data":1}`))
	resp, err := testutil.APIClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("overloaded publish: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}

	// A client publish on the other loop is refused at once, not held.
	pub.Send(map[string]any{"op": "publish", "id": 7, "channel": "c", "data": 1})
	e := pub.ExpectError(7, "unavailable")
	if !strings.Contains(e.Message, "overloaded") {
		t.Fatalf("client publish refusal %q does not say overloaded", e.Message)
	}
	released = true
	close(release)

	for i, want := range acked {
		m := sub.ExpectMessage("c")
		if m.Offset != want {
			t.Fatalf("delivery %d has offset %d, want %d (the acknowledged ones, in order)", i, m.Offset, want)
		}
	}
	fence(t, n, sub, "c")
	hist, err := n.Broker().Recover(t.Context(), "c", acked[0]-1, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist.Publications) != len(acked)+1 { // the fence
		t.Fatalf("history holds %d publications, want the %d acknowledged and the fence: a refused publish was stored", len(hist.Publications), len(acked))
	}
	if st := n.Hub().Stats(); st.Refused < 4 || st.Overflows != 0 {
		t.Fatalf("hub stats %+v: want at least 4 refusals and no overflow", st)
	}
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}
