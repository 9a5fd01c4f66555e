package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/herald-ws/herald/broker"
	"github.com/herald-ws/herald/broker/natsbroker"
	"github.com/herald-ws/herald/internal/testutil"
)

// failBound is how long a caller may wait for an answer while NATS is
// unreachable: the broker's default round-trip bound plus scheduling slack
// for a loaded -race run. The old code took 5 s (subscribe) and 10 s (a
// publish whose ack never comes).
const failBound = natsbroker.DefaultTimeout + 700*time.Millisecond

// freePort is a loopback port nothing listens on (yet).
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestNodeStartedWhileNATSDown: a node whose NATS is not there yet serves
// its clients at once, answers subscribes with "unavailable" and API
// publishes with 503 within failBound, and is ready, and subscribes and
// publishes succeed, as soon as NATS listens.
func TestNodeStartedWhileNATSDown(t *testing.T) {
	ns := &natsServer{t: t, port: freePort(t), store: t.TempDir()}
	t.Cleanup(ns.stop)
	b, err := natsbroker.New(natsbroker.Config{URLs: ns.url(), HistorySize: 100, Name: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	n := testutil.StartNode(t, testutil.NodeOptions{Broker: b, HistorySize: 100})
	if n.Ready() == nil {
		t.Fatal("node ready without NATS")
	}
	c := testutil.DialWS(t, n, "", nil)
	for i := range 3 {
		start := time.Now()
		c.Send(map[string]any{"op": "subscribe", "channel": "early", "id": i + 1})
		c.ExpectError(i+1, "unavailable")
		if d := time.Since(start); d > failBound {
			t.Fatalf("subscribe %d answered unavailable after %v, want within %v", i, d, failBound)
		}
		start = time.Now()
		status, body, err := testutil.APIRequest(n, http.MethodPost, "/api/publish", "", map[string]any{"channel": "early", "data": i})
		if err != nil || status != http.StatusServiceUnavailable {
			t.Fatalf("publish without NATS = %d %s %v, want 503", status, body, err)
		}
		if d := time.Since(start); d > failBound {
			t.Fatalf("publish %d answered 503 after %v, want within %v", i, d, failBound)
		}
	}

	ns.start()
	up := time.Now()
	waitReady(t, n, true, 10*time.Second)
	// nats.go retries every 250 ms (plus jitter); the stream is created on
	// the first connect.
	if d := time.Since(up); d > 2*time.Second {
		t.Fatalf("node ready %v after NATS came up, want within 2s", d)
	}
	c.Send(map[string]any{"op": "subscribe", "channel": "early", "id": 10})
	c.ExpectAck(10)
	off := testutil.Publish(t, n, "early", 42)
	if m := c.ExpectMessage("early"); m.Offset != off {
		t.Fatalf("message %s, want offset %d", m.Raw, off)
	}
}

// TestInFlightPublishFailsFast: a publish whose ack does not come fails
// within the broker's bound even when its caller allows much longer, with
// ErrUnknownOutcome (it may be stored), whether NATS goes silent or the
// connection is lost while it waits; the retry with its key is then
// answered from the stream without a duplicate.
func TestInFlightPublishFailsFast(t *testing.T) {
	ns := startNATS(t)
	px := startProxy(t, ns.srv.Addr().String())
	b := startBroker(t, px.url(), natsbroker.Config{}, nil)
	faults := []struct {
		name   string
		during func()
		after  func()
	}{
		{"NATS silent", func() {}, px.release},
		{"connection lost", func() { time.Sleep(100 * time.Millisecond); px.cut() },
			func() { px.release(); px.restore() }},
	}
	for i, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			channel, key := "ff"+string(rune('a'+i)), "k"
			publish(t, b, channel, "before", "")
			px.holdReplies()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			go f.during()
			start := time.Now()
			_, err := b.Publish(ctx, channel, []byte("once"), broker.PublishOptions{IdempotencyKey: key})
			d := time.Since(start)
			if !errors.Is(err, broker.ErrUnknownOutcome) {
				t.Fatalf("publish: %v, want ErrUnknownOutcome", err)
			}
			if d > failBound {
				t.Fatalf("publish failed after %v, want within %v", d, failBound)
			}
			f.after()
			deadline := time.Now().Add(10 * time.Second)
			for b.Ready() != nil && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			first := publish(t, b, channel, "once", key)
			again := publish(t, b, channel, "once", key)
			if !again.Duplicate || again.Offset != first.Offset {
				t.Fatalf("retries %+v then %+v, want the same offset, the second a duplicate", first, again)
			}
		})
	}
}

// TestSubscribeFailsFastWhenNATSSilent: a subscribe whose registration
// NATS does not answer fails with ErrUnavailable within the bound.
func TestSubscribeFailsFastWhenNATSSilent(t *testing.T) {
	ns := startNATS(t)
	px := startProxy(t, ns.srv.Addr().String())
	b := startBroker(t, px.url(), natsbroker.Config{}, nil)
	if err := b.Subscribe("warm"); err != nil {
		t.Fatal(err)
	}
	px.holdReplies()
	defer px.release()
	start := time.Now()
	err := b.Subscribe("silent")
	if d := time.Since(start); d > failBound {
		t.Fatalf("subscribe failed after %v, want within %v", d, failBound)
	}
	if !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("subscribe: %v, want ErrUnavailable", err)
	}
}

// TestSilentNATSIsNoticed: when NATS stops answering without closing the
// connection (a partition), the node declares the connection lost within
// three ping intervals, turns unready, and reconnects once NATS answers
// again. nats.go alone would wait two minutes per ping.
func TestSilentNATSIsNoticed(t *testing.T) {
	ns := startNATS(t)
	px := startProxy(t, ns.srv.Addr().String())
	const ping = 200 * time.Millisecond
	b := startBroker(t, px.url(), natsbroker.Config{PingInterval: ping}, nil)
	if err := b.Ready(); err != nil {
		t.Fatal(err)
	}
	px.holdReplies()
	start := time.Now()
	for b.Ready() == nil {
		if time.Since(start) > 3*ping+2*time.Second {
			t.Fatalf("still ready %v after NATS went silent", time.Since(start))
		}
		time.Sleep(20 * time.Millisecond)
	}
	px.release()
	deadline := time.Now().Add(10 * time.Second)
	for b.Ready() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("not ready again after NATS answered: %v", b.Ready())
		}
		time.Sleep(20 * time.Millisecond)
	}
	publish(t, b, "after-silence", "x", "")
}

// TestAPIPublishToSilentNATSFailsFast: through the HTTP API, a publish
// whose ack NATS holds back is answered 504 (outcome unknown) within the
// broker's bound, not after -publish-timeout (5 s), and the retry with the
// same Idempotency-Key once NATS answers returns the stored offset.
func TestAPIPublishToSilentNATSFailsFast(t *testing.T) {
	ns := startNATS(t)
	px := startProxy(t, ns.srv.Addr().String())
	b, err := natsbroker.New(natsbroker.Config{URLs: px.url(), HistorySize: 100, Name: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	n := testutil.StartNode(t, testutil.NodeOptions{Broker: b, HistorySize: 100})
	waitReady(t, n, true, 10*time.Second)
	body := map[string]any{"channel": "api-silent", "data": 1, "idempotency_key": "once"}
	px.holdReplies()
	start := time.Now()
	status, out, err := testutil.APIRequest(n, http.MethodPost, "/api/publish", "", body)
	d := time.Since(start)
	px.release()
	if err != nil || status != http.StatusGatewayTimeout {
		t.Fatalf("publish with NATS silent = %d %s %v, want 504", status, out, err)
	}
	if d > failBound {
		t.Fatalf("publish answered after %v, want within %v", d, failBound)
	}
	waitReady(t, n, true, 10*time.Second)
	type reply struct {
		Offset    uint64 `json:"offset"`
		Duplicate bool   `json:"duplicate"`
	}
	var first, again reply
	for i, r := range []*reply{&first, &again} {
		status, out, err = testutil.APIRequest(n, http.MethodPost, "/api/publish", "", body)
		if err != nil || status != http.StatusOK || json.Unmarshal(out, r) != nil {
			t.Fatalf("retry %d = %d %s %v, want 200", i, status, out, err)
		}
	}
	if !first.Duplicate || !again.Duplicate || first.Offset != again.Offset {
		t.Fatalf("retries answered %+v and %+v, want both duplicates of the publication the silent NATS stored", first, again)
	}
}
