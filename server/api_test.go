package server_test

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/herald-ws/herald/internal/testutil"
	"github.com/herald-ws/herald/server"
)

func TestAPIPublishBadBodies(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{})
	c := testutil.DialWS(t, n, "", nil)
	c.Subscribe("ok", 1)
	for _, tc := range []struct {
		name string
		body string
		want int
	}{
		{"empty body", ``, http.StatusBadRequest},
		{"invalid JSON", `{"channel":"ok",`, http.StatusBadRequest},
		{"not an object", `["ok"]`, http.StatusBadRequest},
		{"no data", `{"channel":"ok"}`, http.StatusBadRequest},
		{"no channel", `{"data":1}`, http.StatusBadRequest},
		{"empty channel", `{"channel":"","data":1}`, http.StatusBadRequest},
		{"channel and channels", `{"channel":"ok","channels":["ok"],"data":1}`, http.StatusBadRequest},
		{"empty channels", `{"channels":[],"data":1}`, http.StatusBadRequest},
		{"invalid channel", `{"channel":"bad name","data":1}`, http.StatusBadRequest},
		{"256-byte channel", `{"channel":"` + strings.Repeat("x", 256) + `","data":1}`, http.StatusBadRequest},
		{"unicode channel", `{"channel":"café","data":1}`, http.StatusBadRequest},
		{"one bad among channels", `{"channels":["ok","bad name"],"data":1}`, http.StatusBadRequest},
		{"channel not a string", `{"channel":7,"data":1}`, http.StatusBadRequest},
		{"over 1 MiB", `{"channel":"ok","data":"` + strings.Repeat("z", 1<<20) + `"}`, http.StatusRequestEntityTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body, err := testutil.APIRequest(n, http.MethodPost, "/api/publish", "", tc.body)
			if err != nil {
				t.Fatal(err)
			}
			var reply map[string]string
			if status != tc.want || json.Unmarshal(body, &reply) != nil || len(reply) != 1 || reply["error"] == "" {
				t.Fatalf("got %d %s, want %d {\"error\":...}", status, body, tc.want)
			}
		})
	}
	// None of them published anything, not even to the valid channel of a
	// several-channel request.
	fence(t, n, c, "ok")
	if st := testutil.Stats(t, n, ""); st["publications"] != 1 {
		t.Fatalf("stats %v: want only the fence's publication", st)
	}

	status, body, err := testutil.APIRequest(n, http.MethodPost, "/api/publish", "", `{"channel":"ok","data":{"a":1}}`)
	if err != nil || status != http.StatusOK {
		t.Fatalf("publish: %d %s %v", status, body, err)
	}
	var single map[string]uint64
	if json.Unmarshal(body, &single) != nil || len(single) != 1 || single["offset"] == 0 {
		t.Fatalf("reply %s, want {\"offset\":N}", body)
	}
	wantRaw(t, c.Read(), messageFrame("ok", single["offset"], `{"a":1}`))
}

func TestAPIKey(t *testing.T) {
	t.Parallel()
	const key = "s3cr3t-key"
	n := testutil.StartNode(t, testutil.NodeOptions{APIKey: key})
	c := testutil.DialWS(t, n, "", nil)
	c.Subscribe("keyed", 1)
	pubBody := `{"channel":"keyed","data":"x"}`
	for _, tc := range []struct{ name, header string }{
		{"no header", ""},
		{"wrong key", "Bearer wrong"},
		{"key without Bearer", key},
		{"basic scheme", "Basic " + key},
		{"key prefix", "Bearer " + key[:len(key)-1]},
		{"key with suffix", "Bearer " + key + "x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, r := range []struct{ method, path, body string }{
				{http.MethodPost, "/api/publish", pubBody},
				{http.MethodGet, "/api/stats", ""},
				{http.MethodGet, "/api/nothing", ""},
			} {
				req, _ := http.NewRequest(r.method, testutil.APIURL(n, r.path), strings.NewReader(r.body))
				if tc.header != "" {
					req.Header.Set("Authorization", tc.header)
				}
				resp, err := testutil.APIClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized {
					t.Fatalf("%s %s: %d, want 401", r.method, r.path, resp.StatusCode)
				}
			}
		})
	}
	// The refused publishes delivered nothing: the next message is the
	// keyed publication.
	off, err := testutil.PublishKey(n, key, "keyed", `"with key"`)
	if err != nil {
		t.Fatal(err)
	}
	wantRaw(t, c.Read(), messageFrame("keyed", off, `"with key"`))
	if status, body, err := testutil.APIRequest(n, http.MethodGet, "/api/stats", key, nil); err != nil || status != http.StatusOK {
		t.Fatalf("stats with key: %d %s %v", status, body, err)
	}
	if st := testutil.Stats(t, n, key); st["publications"] != 1 {
		t.Fatalf("stats %v: want exactly the keyed publication", st)
	}
	// Health, readiness and metrics stay open.
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if status, body, err := testutil.APIRequest(n, http.MethodGet, path, "", nil); err != nil || status != http.StatusOK {
			t.Fatalf("GET %s without key: %d %.80s %v", path, status, body, err)
		}
	}
}

func TestAPIKeyRequiredOffLoopback(t *testing.T) {
	t.Parallel()
	base := testutil.NodeOptions{}.ServerOptions()
	base.Logger = slog.New(slog.DiscardHandler)
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0", "192.0.2.1:8081", "example.com:8081"} {
		o := base
		o.APIAddr = addr
		if _, err := server.New(o); !errors.Is(err, server.ErrAPIKeyRequired) {
			t.Errorf("API on %s without a key: err %v, want ErrAPIKeyRequired", addr, err)
		}
		o.APIKey = "k"
		if _, err := server.New(o); err != nil {
			t.Errorf("API on %s with a key: %v", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0", "localhost:0", "127.3.4.5:0"} {
		o := base
		o.APIAddr = addr
		if _, err := server.New(o); err != nil {
			t.Errorf("API on loopback %s without a key: %v", addr, err)
		}
	}
}
