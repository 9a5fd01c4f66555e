package loadtest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestBadURLsAreRefusedBeforeTheRun: a URL the run could not use fails Run
// at once, naming the flag. The old code accepted an -api-url without a
// scheme, and every publication then failed while the run reported
// success.
func TestBadURLsAreRefusedBeforeTheRun(t *testing.T) {
	cases := []struct {
		cfg  Config
		want string
	}{
		{Config{Scenario: "echo", URL: "127.0.0.1:8080/echo"}, `url "127.0.0.1:8080/echo"`},
		{Config{Scenario: "echo", URL: "http://127.0.0.1:8080/echo"}, `url "http://127.0.0.1:8080/echo"`},
		{Config{Scenario: "push", URL: "ws://127.0.0.1:1/ws", Push: PushConfig{APIURL: "127.0.0.1:8081"}}, `-api-url "127.0.0.1:8081" is not a URL with a scheme: write http://127.0.0.1:8081`},
		{Config{Scenario: "push", URL: "ws://127.0.0.1:1/ws", Push: PushConfig{APIURL: "http://127.0.0.1:8081,localhost:8091"}}, `-api-url "localhost:8091" is not a URL with a scheme`},
		{Config{Scenario: "push", URL: "ws://127.0.0.1:1/ws", Push: PushConfig{APIURL: "ws://127.0.0.1:8081"}}, `-api-url "ws://127.0.0.1:8081": the scheme must be http or https, not ws`},
		{Config{Scenario: "push", URL: "ws://127.0.0.1:1/ws", Push: PushConfig{APIURL: "http://"}}, `-api-url "http://" has no host`},
		{Config{Scenario: "churn", URL: "ws://127.0.0.1:1/ws", Churn: ChurnConfig{Rate: 1}, Push: PushConfig{Rate: 1, APIURL: "//127.0.0.1:8081"}}, `-api-url "//127.0.0.1:8081" is not a URL with a scheme: write http://127.0.0.1:8081`},
		{Config{Scenario: "push", URL: "ws://127.0.0.1:1/ws", Push: PushConfig{BroadcastURL: "127.0.0.1:9000/broadcast"}}, `-broadcast-url "127.0.0.1:9000/broadcast" is not a URL with a scheme`},
	}
	for _, c := range cases {
		c.cfg.Conns, c.cfg.Duration = 1, time.Second
		start := time.Now()
		r, err := Run(context.Background(), c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err %v, want one containing %s", c.cfg, err, c.want)
		}
		if r != nil || time.Since(start) > 500*time.Millisecond {
			t.Errorf("%+v: a result or a run (%v) for a config that cannot work", c.cfg, time.Since(start))
		}
	}
	// What is right passes, with http and https, in lists.
	for _, api := range []string{"http://127.0.0.1:8081", "https://api.example:443/base/", "http://a:1, http://b:2"} {
		cfg := Config{Scenario: "push", URL: "ws://127.0.0.1:1/ws", Conns: 1, Duration: time.Second, Push: PushConfig{APIURL: api}}
		if err := cfg.defaults(); err != nil {
			t.Errorf("-api-url %q refused: %v", api, err)
		}
	}
}

// TestErrLogKeepsTheFirstErrorsOfEachKind: a flood of one kind does not
// hide another kind's first errors (the old log kept the first five of
// all), each kind keeps at most three distinct texts, duplicates are
// counted but not repeated, and the number of kinds is bounded.
func TestErrLogKeepsTheFirstErrorsOfEachKind(t *testing.T) {
	var e errLog
	for i := range 100 {
		e.add("connect", fmt.Errorf("dial %d: refused", i%7))
	}
	e.add("publish", errors.New("HTTP 401"))
	e.add("publish", errors.New("HTTP 401"))
	e.add("read", errors.New("reset"))
	for i := range 20 {
		e.add(fmt.Sprintf("kind%d", i), errors.New("x"))
	}
	count, first := e.snapshot()
	if count != 123 {
		t.Errorf("count %d, want 123", count)
	}
	perKind := map[string]int{}
	for _, m := range first {
		perKind[errorKind(m)]++
	}
	if perKind["connect"] != 3 || perKind["publish"] != 1 || perKind["read"] != 1 {
		t.Errorf("kept %v", first)
	}
	if len(perKind) != maxErrorKinds {
		t.Errorf("%d kinds kept, want the bound %d: %v", len(perKind), maxErrorKinds, first)
	}
	if first[0] != "connect: dial 0: refused" || first[3] != "publish: HTTP 401" || first[4] != "read: reset" {
		t.Errorf("order or text lost: %v", first)
	}
	// Merging worker reports applies the same rule.
	merged := mergeErrorTexts([]string{"connect: a", "connect: b"}, []string{"connect: c", "connect: d", "publish: p", "connect: a"})
	if strings.Join(merged, "|") != "connect: a|connect: b|connect: c|publish: p" {
		t.Errorf("merged %v", merged)
	}
}

// TestFailedPublicationsFailTheRun drives the push scenario against a real
// server whose publish API refuses every call, as one with a different API
// key does: the result carries the refusal's text, and the verdict fails
// unless a threshold on publish errors allows them. The old code counted
// the failures, kept no text, and passed.
func TestFailedPublicationsFailTheRun(t *testing.T) {
	n := startHerald(t)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"error":"missing or wrong API key"}`)
	}))
	defer api.Close()
	r, err := Run(context.Background(), Config{
		Scenario: "push", URL: wsURL(n, "/ws"), Conns: 4, Duration: 600 * time.Millisecond,
		Push: PushConfig{APIURL: api.URL, Rate: 20},
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.Push == nil || r.Push.Publications == 0 || r.Push.PublishErrs != r.Push.Publications {
		t.Fatalf("push result %+v: want every publication failed", r.Push)
	}
	want := "publish: POST " + api.URL + `/api/publish: HTTP 401: {"error":"missing or wrong API key"}`
	found := false
	for _, e := range r.Errors {
		found = found || e == want
	}
	if !found {
		t.Errorf("errors %q, want %q", r.Errors, want)
	}
	reasons := r.Verdict(nil)
	if len(reasons) != 1 || !strings.Contains(reasons[0], "publications failed") {
		t.Errorf("verdict %q, want one reason about publications", reasons)
	}
	ths, err := ParseThresholds(fmt.Sprintf("publish_errors<=%d", r.Push.PublishErrs))
	if err != nil {
		t.Fatal(err)
	}
	if reasons := r.Verdict(ths); len(reasons) != 0 {
		t.Errorf("verdict with publish_errors<=%d: %q, want a pass", r.Push.PublishErrs, reasons)
	}
	if r.Params == nil || r.Params.APIURL != api.URL || r.Params.PubRate != 20 || r.Started.IsZero() {
		t.Errorf("params %+v, started %v", r.Params, r.Started)
	}
}

func TestVerdict(t *testing.T) {
	th := func(s string) []Threshold {
		t.Helper()
		ths, err := ParseThresholds(s)
		if err != nil {
			t.Fatal(err)
		}
		return ths
	}
	cases := []struct {
		name string
		r    Result
		ths  []Threshold
		want []string // substrings, one per reason
	}{
		{"clean", Result{Scenario: "connect", Conns: 5, Opened: 5}, nil, nil},
		{"failed connections", Result{Scenario: "connect", Conns: 5, Opened: 3, Failures: 2, ErrorCount: 2}, nil, []string{"2 of 5 connections did not open"}},
		{"failures allowed", Result{Scenario: "connect", Conns: 5, Opened: 3, Failures: 2, ErrorCount: 2}, th("failures<3"), nil},
		{"opened threshold decides", Result{Scenario: "connect", Conns: 5, Opened: 3, Failures: 2, ErrorCount: 2}, th("opened>=3"), nil},
		{"errors threshold decides", Result{Scenario: "connect", Conns: 5, Opened: 3, Failures: 2, ErrorCount: 2}, th("errors<=2"), nil},
		{"failures threshold fails", Result{Scenario: "connect", Conns: 5, Opened: 3, Failures: 2, ErrorCount: 2}, th("failures<2"), []string{"threshold failures<2 does not hold (2)"}},
		{"publish errors", Result{Scenario: "push", Conns: 5, Opened: 5, ErrorCount: 3, Push: &PushResult{Publications: 10, PublishErrs: 3}}, nil, []string{"3 of 10 publications failed"}},
		{"publish errors allowed", Result{Scenario: "push", Conns: 5, Opened: 5, ErrorCount: 3, Push: &PushResult{Publications: 10, PublishErrs: 3}}, th("publish_errors<5"), nil},
		{"publish threshold leaves connections", Result{Scenario: "push", Conns: 5, Opened: 4, Failures: 1, ErrorCount: 4, Push: &PushResult{Publications: 10, PublishErrs: 3}}, th("publish_errors<5"), []string{"1 of 5 connections"}},
		{"read errors", Result{Scenario: "push", Conns: 5, Opened: 5, ErrorCount: 2, Push: &PushResult{Publications: 10}}, nil, []string{"2 errors on open connections"}},
		{"read errors allowed", Result{Scenario: "push", Conns: 5, Opened: 5, ErrorCount: 2, Push: &PushResult{Publications: 10}}, th("errors<3"), nil},
		{"a failing threshold on a clean run", Result{Scenario: "push", Conns: 5, Opened: 5, Push: &PushResult{Publications: 10, Lost: 1}}, th("lost=0"), []string{"threshold lost=0 does not hold (1)"}},
	}
	for _, c := range cases {
		got := c.r.Verdict(c.ths)
		ok := len(got) == len(c.want)
		for i := 0; ok && i < len(got); i++ {
			ok = strings.Contains(got[i], c.want[i])
		}
		if !ok {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
