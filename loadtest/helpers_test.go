package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/herald-ws/herald/internal/testutil"
	"github.com/herald-ws/herald/server"
)

// workerArg makes the test binary a load-generator worker: -procs tests
// re-execute it with this argument instead of `herald loadtest -worker`.
const workerArg = "-loadtest.worker"

func TestMain(m *testing.M) {
	if slices.Contains(os.Args[1:], workerArg) {
		os.Exit(workerMain())
	}
	os.Exit(m.Run())
}

// workerMain is what cmd/herald's worker does, in the test binary.
func workerMain() int {
	out, err := WorkerStdout()
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		return 2
	}
	in := bufio.NewReader(os.Stdin)
	a, err := ReadAssignment(in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		return 2
	}
	watchdog := time.AfterFunc(time.Until(a.Deadline)+5*time.Second, func() { os.Exit(3) })
	defer watchdog.Stop()
	if err := a.Serve(context.Background(), in, out); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		return 1
	}
	return 0
}

// workerArgs is Config.WorkerArgs for -procs tests.
func workerArgs() []string { return []string{os.Args[0], workerArg} }

// startHerald starts a Herald node on 127.0.0.1:0 with /ws, /echo and its
// API, and stops it when the test ends.
func startHerald(t *testing.T) *server.Node {
	t.Helper()
	n, err := server.New(server.Options{
		Engine:      testutil.Options{Loops: 2}.Config(),
		Echo:        true,
		APIAddr:     "127.0.0.1:0",
		HistorySize: 100,
		Logger:      testutil.Options{}.Config().Logger,
	})
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	if err := n.Start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(n.Stop)
	return n
}

func wsURL(n *server.Node, path string) string { return "ws://" + n.Addr().String() + path }

func apiURL(n *server.Node) string { return "http://" + n.APIAddr().String() }

// fakePush speaks just enough of Herald's /ws protocol and publish API to
// misbehave on purpose: it acks subscribes and broadcasts every publication
// with per-channel offsets, except that it skips the publication with
// sequence number dropSeq for the channel's subscriber dropSub, and sends
// the publication dupSeq twice to subscriber dupSub (-1: never).
type fakePush struct {
	dropSeq, dropSub int
	dupSeq, dupSub   int
	tls              bool // serve wss:// and https:// (httptest's certificate)

	mu      sync.Mutex
	subs    map[string][]*fakeSub
	offsets map[string]uint64
	srv     *httptest.Server
}

type fakeSub struct {
	mu   sync.Mutex
	conn net.Conn
}

func (s *fakeSub) send(p []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_ = wsutil.WriteServerText(s.conn, p)
}

func startFakePush(t *testing.T, f *fakePush) *fakePush {
	t.Helper()
	f.subs = map[string][]*fakeSub{}
	f.offsets = map[string]uint64{}
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", f.serveWS)
	mux.HandleFunc("POST /api/publish", f.publish)
	if f.tls {
		f.srv = httptest.NewUnstartedServer(mux)
		// Refused handshakes are what some tests are about.
		f.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
		f.srv.StartTLS()
	} else {
		f.srv = httptest.NewServer(mux)
	}
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakePush) wsURL() string {
	if f.tls {
		return "wss://" + f.srv.Listener.Addr().String() + "/ws"
	}
	return "ws://" + f.srv.Listener.Addr().String() + "/ws"
}
func (f *fakePush) apiURL() string { return f.srv.URL }

func (f *fakePush) serveWS(w http.ResponseWriter, r *http.Request) {
	conn, _, _, err := ws.UpgradeHTTP(r, w)
	if err != nil {
		return
	}
	sub := &fakeSub{conn: conn}
	go func() {
		defer conn.Close()
		for {
			msg, op, err := wsutil.ReadClientData(conn)
			if err != nil {
				return
			}
			if op != ws.OpText {
				continue
			}
			var req struct {
				Op      string          `json:"op"`
				Channel string          `json:"channel"`
				ID      json.RawMessage `json:"id"`
			}
			if json.Unmarshal(msg, &req) != nil || req.Op != "subscribe" {
				continue
			}
			f.mu.Lock()
			f.subs[req.Channel] = append(f.subs[req.Channel], sub)
			off := f.offsets[req.Channel]
			f.mu.Unlock()
			sub.send([]byte(`{"op":"ack","id":` + string(req.ID) + `,"offset":` + strconv.FormatUint(off, 10) + `}`))
		}
	}()
}

func (f *fakePush) publish(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Channel string          `json:"channel"`
		Data    json.RawMessage `json:"data"`
	}
	body, _ := io.ReadAll(r.Body)
	if json.Unmarshal(body, &req) != nil {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	var data struct {
		Seq int `json:"seq"`
	}
	_ = json.Unmarshal(req.Data, &data)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.offsets[req.Channel]++
	off := f.offsets[req.Channel]
	var frame bytes.Buffer
	fmt.Fprintf(&frame, `{"op":"message","channel":%q,"offset":%d,"data":%s}`, req.Channel, off, req.Data)
	for i, s := range f.subs[req.Channel] {
		if data.Seq == f.dropSeq && i == f.dropSub {
			continue
		}
		s.send(frame.Bytes())
		if data.Seq == f.dupSeq && i == f.dupSub {
			s.send(frame.Bytes())
		}
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"offset":%d}`, off)
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runOK runs cfg and fails the test on an error.
func runOK(t *testing.T, cfg Config) *Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := Run(ctx, cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if r.ErrorCount != 0 || len(r.Errors) != 0 {
		t.Fatalf("run reported %d errors: %v", r.ErrorCount, r.Errors)
	}
	return r
}
