package loadtest

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"flag"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/herald-ws/herald/tlsproxy"
)

// caFile writes f's httptest certificate as a PEM CA file.
func (f *fakePush) caFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ca.pem")
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.srv.Certificate().Raw})
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTLSConfigRules(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := startFakePush(t, &fakePush{tls: true, dropSeq: -1, dupSeq: -1})
	good := f.caFile(t)
	for _, tc := range []struct {
		name string
		url  string
		tls  TLSConfig
		err  string // "" means valid
	}{
		{"ws needs nothing", "ws://127.0.0.1:1/ws", TLSConfig{}, ""},
		{"wss with system roots", "wss://127.0.0.1:1/ws", TLSConfig{}, ""},
		{"wss with a CA file", "wss://localhost:1/ws", TLSConfig{CAFile: good}, ""},
		{"wss insecure", "wss://127.0.0.1:1/ws", TLSConfig{Insecure: true}, ""},
		{"missing CA file", "wss://127.0.0.1:1/ws", TLSConfig{CAFile: filepath.Join(dir, "nope.pem")}, "CA file"},
		{"CA file without a certificate", "wss://127.0.0.1:1/ws", TLSConfig{CAFile: junk}, "no PEM certificate"},
		{"CA file and insecure", "wss://127.0.0.1:1/ws", TLSConfig{CAFile: good, Insecure: true}, "exclude each other"},
		{"https is not a WebSocket URL", "https://127.0.0.1:1/ws", TLSConfig{}, "is not ws://"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{Scenario: "connect", URL: tc.url, Conns: 1, Duration: time.Second, TLS: tc.tls}
			err := c.defaults()
			if tc.err == "" {
				if err != nil {
					t.Fatalf("defaults: %v", err)
				}
				u := c.urls[0]
				tcfg := c.tlsFor(u)
				if u.Scheme == "ws" {
					if tcfg != nil {
						t.Fatal("a ws:// URL got a TLS configuration")
					}
					return
				}
				if tcfg == nil || tcfg.ServerName != u.Hostname() || tcfg.InsecureSkipVerify != tc.tls.Insecure || (tc.tls.CAFile != "") != (tcfg.RootCAs != nil) {
					t.Fatalf("TLS configuration %+v for %s", tcfg, u)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("defaults: %v, want an error containing %q", err, tc.err)
			}
		})
	}
}

func TestAPIURLForWSS(t *testing.T) {
	c := Config{Scenario: "push", URL: "wss://push.example.com/ws,wss://127.0.0.1:8443/ws,ws://127.0.0.1:8080/ws", Conns: 3, Duration: time.Second}
	if err := c.defaults(); err != nil {
		t.Fatal(err)
	}
	if want := "https://push.example.com,https://127.0.0.1:8443,http://127.0.0.1:8081"; c.Push.APIURL != want {
		t.Fatalf("API URLs %q, want %q", c.Push.APIURL, want)
	}
}

// TestReadFrameRejectsHugeLength: a 64-bit length above the bound (here
// one that turns negative as an int) is an error, not a panic or a huge
// allocation.
func TestReadFrameRejectsHugeLength(t *testing.T) {
	for _, l := range []uint64{1 << 63, 1<<63 + 5, maxServerFrame + 1} {
		b := []byte{0x82, 127}
		b = binary.BigEndian.AppendUint64(b, l)
		_, _, err := readFrameFrom(bytes.NewReader(b), nil)
		if !errors.Is(err, errServerFrameTooLarge) {
			t.Errorf("length %d: %v, want errServerFrameTooLarge", l, err)
		}
	}
	// At the bound it reads (and here runs out of input).
	b := binary.BigEndian.AppendUint64([]byte{0x82, 127}, 200)
	b = append(b, make([]byte, 200)...)
	f, _, err := readFrameFrom(bytes.NewReader(b), nil)
	if err != nil || f.OpCode != ws.OpBinary || len(f.Payload) != 200 {
		t.Fatalf("200-byte frame: %v %v %d", err, f.OpCode, len(f.Payload))
	}
}

// TestWSSTrust: wss:// connections verify the server: without the CA (the
// system roots) or with another CA every connection fails on the
// certificate; with -ca-file or -insecure they open.
func TestWSSTrust(t *testing.T) {
	f := startFakePush(t, &fakePush{tls: true, dropSeq: -1, dupSeq: -1})
	// Every httptest server has the same certificate: the other CA is one
	// of tlsproxy's.
	ca, err := tlsproxy.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	other, err := ca.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		tls  TLSConfig
		ok   bool
	}{
		{"system roots", TLSConfig{}, false},
		{"another CA", TLSConfig{CAFile: other.CACert}, false},
		{"the CA", TLSConfig{CAFile: f.caFile(t)}, true},
		{"insecure", TLSConfig{Insecure: true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Run(t.Context(), Config{Scenario: "connect", URL: f.wsURL(), Conns: 3, Duration: 100 * time.Millisecond, Settle: 10 * time.Millisecond, TLS: tc.tls})
			if err != nil {
				t.Fatal(err)
			}
			if tc.ok {
				if r.Opened != 3 || r.Failures != 0 {
					t.Fatalf("opened %d, failed %d (%v); want 3, 0", r.Opened, r.Failures, r.Errors)
				}
				return
			}
			if r.Opened != 0 || r.Failures != 3 || len(r.Errors) == 0 || !strings.Contains(strings.Join(r.Errors, " "), "certificate") {
				t.Fatalf("opened %d, failed %d, errors %v; want 0, 3 and a certificate error", r.Opened, r.Failures, r.Errors)
			}
		})
	}
}

// TestWSSPushAccounting runs push over wss:// (the goroutine-per-connection
// readers) against a server that drops one delivery and duplicates
// another: both are counted exactly, as on ws://; a clean server gives
// zero of each.
func TestWSSPushAccounting(t *testing.T) {
	for _, tc := range []struct {
		name      string
		f         *fakePush
		lost, dup int64
	}{
		{"clean", &fakePush{tls: true, dropSeq: -1, dropSub: -1, dupSeq: -1, dupSub: -1}, 0, 0},
		{"one lost, one duplicated", &fakePush{tls: true, dropSeq: 3, dropSub: 1, dupSeq: 5, dupSub: 2}, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startFakePush(t, tc.f)
			r := runOK(t, Config{
				Scenario: "push",
				URL:      f.wsURL(),
				Conns:    4,
				Duration: 500 * time.Millisecond,
				Push:     PushConfig{Rate: 20}, // API: https:// on the same port, by default
				TLS:      TLSConfig{CAFile: f.caFile(t)},
			})
			p := r.Push
			if p.Subscribers != 4 || p.Publications < 8 || p.PublishErrs != 0 {
				t.Fatalf("%d subscribers, %d publications (%d failed)", p.Subscribers, p.Publications, p.PublishErrs)
			}
			if p.Lost != tc.lost || p.Duplicates != tc.dup || p.OutOfOrder != 0 || p.Expected != 4*int64(p.Publications) {
				t.Fatalf("lost %d dup %d ooo %d expected %d; want %d, %d, 0, %d", p.Lost, p.Duplicates, p.OutOfOrder, p.Expected, tc.lost, tc.dup, 4*p.Publications)
			}
		})
	}
}

// TestWSSChurn churns wss:// connections (closing readers from the
// churner, enrolling new ones) while the stable half is measured.
func TestWSSChurn(t *testing.T) {
	f := startFakePush(t, &fakePush{tls: true, dropSeq: -1, dropSub: -1, dupSeq: -1, dupSub: -1})
	r := runOK(t, Config{
		Scenario: "churn",
		URL:      f.wsURL(),
		Conns:    8,
		Duration: time.Second,
		Push:     PushConfig{Rate: 10},
		Churn:    ChurnConfig{Rate: 20},
		TLS:      TLSConfig{Insecure: true},
	})
	c, p := r.Churn, r.Push
	if c == nil || p == nil {
		t.Fatal("no churn or push result")
	}
	if c.Connects < 10 || c.Failures != 0 || c.Disconnects < 10 {
		t.Fatalf("churn: %d connects, %d disconnects, %d failures", c.Connects, c.Disconnects, c.Failures)
	}
	if p.Subscribers != 4 || p.Lost != 0 || p.Duplicates != 0 || p.Expected != 4*int64(p.Publications) || p.Publications < 5 {
		t.Fatalf("push: %d subscribers, %d publications, expected %d, lost %d, dup %d", p.Subscribers, p.Publications, p.Expected, p.Lost, p.Duplicates)
	}
}

// tlsFront terminates TLS with a tlsproxy certificate and forwards each
// connection to target, like a TLS proxy in front of Herald; it returns
// its address and the CA file to trust.
func tlsFront(t *testing.T, target string) (addr, caFile string) {
	t.Helper()
	ca, err := tlsproxy.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	files, err := ca.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(ca.ServerCertPEM, ca.ServerKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			open = append(open, c, b)
			mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); _, _ = io.Copy(b, c); b.Close() }()
			go func() { defer wg.Done(); _, _ = io.Copy(c, b); c.Close() }()
		}
	}()
	return ln.Addr().String(), files.CACert
}

// TestWSSScenariosAgainstHerald runs every scenario over wss:// (a TLS
// front on a real node): exact counts, as over ws://.
func TestWSSScenariosAgainstHerald(t *testing.T) {
	n := startHerald(t)
	front, ca := tlsFront(t, n.Addr().String())
	trust := TLSConfig{CAFile: ca}
	t.Run("connect", func(t *testing.T) {
		r := runOK(t, Config{Scenario: "connect", URL: "wss://" + front + "/ws", Conns: 20, Duration: 200 * time.Millisecond, Settle: 50 * time.Millisecond, TLS: trust})
		if r.Opened != 20 || r.Failures != 0 {
			t.Fatalf("opened %d, failed %d", r.Opened, r.Failures)
		}
	})
	t.Run("echo", func(t *testing.T) {
		r := runOK(t, Config{Scenario: "echo", URL: "wss://" + front + "/echo", Conns: 4, InFlight: 2, Size: 100, Duration: 500 * time.Millisecond, TLS: trust})
		if r.Opened != 4 || r.Messages == 0 || r.RTT == nil || r.RTT.Count != r.Messages {
			t.Fatalf("opened %d, %d messages, rtt %+v", r.Opened, r.Messages, r.RTT)
		}
	})
	t.Run("push in two processes", func(t *testing.T) {
		before := n.Stats().Deliveries
		r := runOK(t, Config{
			Scenario:   "push",
			URL:        "wss://" + front + "/ws",
			Conns:      20,
			Duration:   time.Second,
			Procs:      2,
			WorkerArgs: workerArgs(),
			Push:       PushConfig{APIURL: apiURL(n), Channels: 2, Rate: 20},
			TLS:        trust,
		})
		p := r.Push
		want := int64(10 * p.Publications)
		if r.Procs != 2 || p.Subscribers != 20 || p.Publications < 15 || p.Expected != want || p.Delivered != want || p.Lost != 0 || p.Duplicates != 0 || p.OutOfOrder != 0 {
			t.Fatalf("procs %d, push %+v; want %d delivered, none lost", r.Procs, p, want)
		}
		if got := n.Stats().Deliveries - before; got != want {
			t.Errorf("server delivered %d, workers counted %d", got, want)
		}
	})
}

func TestRegisterTLSFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want TLSConfig
	}{
		{nil, TLSConfig{}},
		{[]string{"-ca-file", "/tmp/ca.pem"}, TLSConfig{CAFile: "/tmp/ca.pem"}},
		{[]string{"-insecure"}, TLSConfig{Insecure: true}},
	} {
		var c Config
		fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
		c.RegisterTLSFlags(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		if c.TLS != tc.want {
			t.Errorf("%q: %+v, want %+v", tc.args, c.TLS, tc.want)
		}
	}
}
