package loadtest

import (
	"strings"
	"testing"
	"time"
)

// TestPushOverSSEAndPolling runs the push scenario with subscribers on
// /sse and on /poll: the same accounting holds (every publication once at
// each subscriber of its channel, none out of order), and the server
// agrees on the deliveries.
func TestPushOverSSEAndPolling(t *testing.T) {
	for _, transport := range []string{TransportSSE, TransportPoll} {
		t.Run(transport, func(t *testing.T) {
			n := startHerald(t)
			r := runOK(t, Config{
				Scenario: "push",
				URL:      wsURL(n, "/ws"),
				Conns:    30,
				Duration: time.Second,
				Push:     PushConfig{APIURL: apiURL(n), Channels: 3, Rate: 20, Transport: transport},
			})
			p := r.Push
			if p.Subscribers != 30 || p.Publications < 15 || p.PublishErrs != 0 {
				t.Fatalf("%d subscribers, %d publications (%d failed); want 30, >= 15, 0", p.Subscribers, p.Publications, p.PublishErrs)
			}
			want := int64(10 * p.Publications)
			if p.Expected != want || p.Delivered != want || p.Lost != 0 || p.Duplicates != 0 || p.OutOfOrder != 0 {
				t.Fatalf("expected %d delivered %d lost %d dup %d ooo %d; want %d, %d, 0, 0, 0", p.Expected, p.Delivered, p.Lost, p.Duplicates, p.OutOfOrder, want, want)
			}
			if p.Latency.Count != want {
				t.Fatalf("latency count %d, want %d", p.Latency.Count, want)
			}
		})
	}
}

func TestTransportNeedsPushOnPlainHTTP(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Scenario: "push", URL: "ws://127.0.0.1:1/ws", Conns: 1, Duration: time.Second, Push: PushConfig{APIURL: "http://127.0.0.1:2", Transport: "smoke"}}, "want ws, sse or poll"},
		{Config{Scenario: "churn", URL: "ws://127.0.0.1:1/ws", Conns: 1, Duration: time.Second, Churn: ChurnConfig{Rate: 1}, Push: PushConfig{Transport: "sse"}}, "needs -scenario push"},
		{Config{Scenario: "push", URL: "wss://127.0.0.1:1/ws", Conns: 1, Duration: time.Second, Push: PushConfig{APIURL: "https://127.0.0.1:2", Transport: "poll"}}, "needs ws:// URLs"},
	} {
		err := tc.cfg.defaults()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.cfg.Push, err, tc.want)
		}
	}
}
