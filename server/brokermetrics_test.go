package server

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-ws/herald/broker"
)

// fakeBroker answers every call with the configured result.
type fakeBroker struct {
	broker.Broker // nil: calls not overridden panic
	res           broker.PublishResult
	err           error
	ready         error
	reconnects    int64
}

func (f *fakeBroker) Publish(context.Context, string, []byte, broker.PublishOptions) (broker.PublishResult, error) {
	return f.res, f.err
}
func (f *fakeBroker) Recover(context.Context, string, uint64, bool) (broker.Recovery, error) {
	return broker.Recovery{}, f.err
}
func (f *fakeBroker) Subscribe(string) error   { return f.err }
func (f *fakeBroker) Unsubscribe(string) error { return f.err }
func (f *fakeBroker) Ready() error             { return f.ready }

type reconnectingBroker struct{ *fakeBroker }

func (r reconnectingBroker) Reconnects() int64 { return r.reconnects }

func gather(t *testing.T, m *meteredBroker, name string, labels ...string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m.Collectors()...)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, s := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range s.GetLabel() {
					found = found || (lp.GetName() == labels[i] && lp.GetValue() == labels[i+1])
				}
				if !found {
					continue next
				}
			}
			switch {
			case s.Counter != nil:
				return s.GetCounter().GetValue()
			case s.Gauge != nil:
				return s.GetGauge().GetValue()
			case s.Histogram != nil:
				return float64(s.GetHistogram().GetSampleCount())
			}
		}
	}
	t.Fatalf("%s%v not exported", name, labels)
	return 0
}

func TestMeteredBrokerPublishResults(t *testing.T) {
	for _, tc := range []struct {
		res  broker.PublishResult
		err  error
		want string
	}{
		{broker.PublishResult{Offset: 1}, nil, "accepted"},
		{broker.PublishResult{Offset: 1, Duplicate: true}, nil, "duplicate"},
		{broker.PublishResult{}, broker.ErrUnavailable, "failed"},
		{broker.PublishResult{}, broker.ErrClosed, "failed"},
		{broker.PublishResult{}, context.DeadlineExceeded, "failed"},
		{broker.PublishResult{}, broker.ErrUnknownOutcome, "unknown"},
		{broker.PublishResult{}, fmt.Errorf("natsbroker: publish %q: %w", "c", broker.ErrUnknownOutcome), "unknown"},
	} {
		t.Run(fmt.Sprint(tc.want, " ", tc.err), func(t *testing.T) {
			f := &fakeBroker{res: tc.res, err: tc.err}
			m := newMeteredBroker(f)
			res, err := m.Publish(context.Background(), "c", []byte("1"), broker.PublishOptions{})
			if res != tc.res || !errors.Is(err, tc.err) {
				t.Fatalf("Publish returned %v %v, want the broker's %v %v", res, err, tc.res, tc.err)
			}
			for _, r := range []string{"accepted", "duplicate", "failed", "unknown"} {
				want := 0.0
				if r == tc.want {
					want = 1
				}
				if got := gather(t, m, "herald_broker_publishes_total", "result", r); got != want {
					t.Errorf("result %s: %v, want %v", r, got, want)
				}
			}
			if got := gather(t, m, "herald_broker_request_duration_seconds", "op", "publish"); got != 1 {
				t.Errorf("%v publish durations observed, want 1", got)
			}
		})
	}
}

func TestMeteredBrokerOtherCalls(t *testing.T) {
	f := &fakeBroker{}
	m := newMeteredBroker(f)
	ctx := context.Background()
	_, _ = m.Recover(ctx, "c", 0, true)
	_ = m.Subscribe("c")
	_ = m.Unsubscribe("c")
	f.err = broker.ErrUnavailable
	_, _ = m.Recover(ctx, "c", 0, true)
	_ = m.Subscribe("c")
	for _, tc := range []struct {
		op             string
		calls, errored float64
	}{{"recover", 2, 1}, {"subscribe", 2, 1}, {"unsubscribe", 1, 0}, {"publish", 0, -1}} {
		if got := gather(t, m, "herald_broker_request_duration_seconds", "op", tc.op); got != tc.calls {
			t.Errorf("%s: %v durations, want %v", tc.op, got, tc.calls)
		}
		if tc.errored >= 0 {
			if got := gather(t, m, "herald_broker_errors_total", "op", tc.op); got != tc.errored {
				t.Errorf("%s: %v errors, want %v", tc.op, got, tc.errored)
			}
		}
	}
}

func TestMeteredBrokerUpAndReconnects(t *testing.T) {
	f := &fakeBroker{}
	m := newMeteredBroker(f)
	if got := gather(t, m, "herald_broker_up"); got != 1 {
		t.Errorf("ready broker: up %v", got)
	}
	f.ready = broker.ErrUnavailable
	if got := gather(t, m, "herald_broker_up"); got != 0 {
		t.Errorf("unready broker: up %v", got)
	}
	if got := gather(t, m, "herald_broker_reconnects_total"); got != 0 {
		t.Errorf("broker without Reconnects: %v", got)
	}
	r := reconnectingBroker{&fakeBroker{reconnects: 7}}
	if got := gather(t, newMeteredBroker(r), "herald_broker_reconnects_total"); got != 7 {
		t.Errorf("Reconnects 7 exported as %v", got)
	}
}
