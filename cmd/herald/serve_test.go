package main

import (
	"flag"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func parseServe(t *testing.T, args []string) (*serveOptions, error) {
	t.Helper()
	fs, o := newServeFlags()
	fs.SetOutput(io.Discard)
	src, err := parseFlags(fs, args)
	if err != nil {
		return nil, err
	}
	return o, o.validate(src)
}

func TestServeDefaults(t *testing.T) {
	o, err := parseServe(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.addr != "127.0.0.1:8080" || o.maxMessageSize != 1<<20 || o.writeBufferLimit != 1<<20 || o.maxInboundBuffer != 256<<20 ||
		o.handshakeTimeout != 5*time.Second || o.idleTimeout != time.Minute || o.pingInterval != 25*time.Second ||
		o.echo || o.compression || !o.tcpNoDelay || o.logLevel != slog.LevelInfo {
		t.Fatalf("unexpected defaults: %+v", o)
	}
}

func TestEveryFlagReadsItsEnvironmentVariable(t *testing.T) {
	env := map[string]string{
		"HERALD_ADDR":                  "127.0.0.1:9999",
		"HERALD_LOOPS":                 "3",
		"HERALD_MAX_CONNS":             "42",
		"HERALD_MAX_MESSAGE_SIZE":      "64KiB",
		"HERALD_HANDSHAKE_TIMEOUT":     "2s",
		"HERALD_IDLE_TIMEOUT":          "90s",
		"HERALD_PING_INTERVAL":         "10s",
		"HERALD_WRITE_BUFFER_LIMIT":    "2MiB",
		"HERALD_MAX_INBOUND_BUFFER":    "64MiB",
		"HERALD_COMPRESSION":           "true",
		"HERALD_COMPRESSION_MIN_SIZE":  "128",
		"HERALD_ALLOWED_ORIGINS":       "https://a.example, https://*.b.example",
		"HERALD_ECHO":                  "true",
		"HERALD_TCP_NODELAY":           "false",
		"HERALD_REUSEPORT":             "true",
		"HERALD_LOG_LEVEL":             "debug",
		"HERALD_SHUTDOWN_GRACE":        "7s",
		"HERALD_API_ADDR":              "127.0.0.1:9998",
		"HERALD_API_KEY":               "k3y",
		"HERALD_TOKEN_SECRET":          "s3cret",
		"HERALD_CLIENT_PUBLISH":        "true",
		"HERALD_MAX_CHANNELS_PER_CONN": "9",
		"HERALD_PUBLISH_RATE":          "2.5",
		"HERALD_HISTORY_SIZE":          "33",
		"HERALD_HISTORY_TTL":           "90s",
		"HERALD_BROKER":                "nats://127.0.0.1:4222",
		"HERALD_MAX_CHANNELS":          "500",
		"HERALD_NATS_REPLICAS":         "3",
		"HERALD_BROKER_TIMEOUT":        "750ms",
		"HERALD_IDEMPOTENCY_WINDOW":    "30s",
		"HERALD_WORKERS":               "4",
		"HERALD_WORK_QUEUE":            "100",
		"HERALD_MEMORY_LIMIT":          "2GiB",
		"HERALD_API_MAX_BODY":          "64KiB",
		"HERALD_API_READ_TIMEOUT":      "3s",
		"HERALD_API_WRITE_TIMEOUT":     "4s",
		"HERALD_API_IDLE_TIMEOUT":      "5s",
		"HERALD_API_MAX_INFLIGHT":      "6",
		"HERALD_MAX_PUBLISH_CHANNELS":  "7",
		"HERALD_PUBLISH_TIMEOUT":       "2s",
		// The overload policy.
		"HERALD_LOOP_INBOX_PUBLICATIONS": "100",
		"HERALD_LOOP_INBOX_BYTES":        "1MiB",
		"HERALD_OVERLOAD_WAIT":           "250ms",
		"HERALD_CONFLATE_CHANNELS":       "ticker:*,prices",
		"HERALD_UPGRADE_RATE":            "500",
		"HERALD_MAX_CONNS_PER_IP":        "20",
		"HERALD_PRESENCE_CHANNELS":       "room:*,lobby",
		"HERALD_PRESENCE_JOIN_LEAVE":     "true",
		"HERALD_TOKEN_PUBLIC_KEY":        "/etc/herald/keys.pem",
		"HERALD_TOKEN_JWKS":              "/etc/herald/jwks.json",
		"HERALD_REFRESH_GRACE":           "3s",
		"HERALD_AUTO_PERSONAL":           "true",
	}
	fs, _ := newServeFlags()
	fs.VisitAll(func(f *flag.Flag) {
		if _, ok := env[envName(f.Name)]; !ok {
			t.Errorf("flag -%s has no case in this test", f.Name)
		}
	})
	for k, v := range env {
		t.Setenv(k, v)
	}
	o, err := parseServe(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.addr != "127.0.0.1:9999" || o.loops != 3 || o.maxConns != 42 || o.maxMessageSize != 64<<10 ||
		o.handshakeTimeout != 2*time.Second || o.idleTimeout != 90*time.Second || o.pingInterval != 10*time.Second ||
		o.writeBufferLimit != 2<<20 || o.maxInboundBuffer != 64<<20 || !o.compression || o.compressionMinSize != 128 ||
		strings.Join(o.allowedOrigins, "|") != "https://a.example|https://*.b.example" || !o.echo ||
		o.tcpNoDelay || !o.reusePort || o.logLevel != slog.LevelDebug || o.shutdownGrace != 7*time.Second ||
		o.apiAddr != "127.0.0.1:9998" || o.apiKey != "k3y" || o.tokenSecret != "s3cret" || !o.clientPublish ||
		o.maxChannelsPerConn != 9 || o.publishRate != 2.5 || o.historySize != 33 || o.historyTTL != 90*time.Second ||
		o.broker != "nats://127.0.0.1:4222" || o.maxChannels != 500 || o.idempotencyWindow != 30*time.Second ||
		o.natsReplicas != 3 || o.brokerTimeout != 750*time.Millisecond ||
		o.workers != 4 || o.workQueue != 100 || o.memoryLimit != 2<<30 ||
		o.apiOptions != (apiOptions{64 << 10, 3 * time.Second, 4 * time.Second, 5 * time.Second, 6, 7, 2 * time.Second}) ||
		strings.Join(o.presenceChannels, "|") != "room:*|lobby" || !o.presenceJoinLeave ||
		o.tokenOptions != (tokenOptions{"/etc/herald/keys.pem", "/etc/herald/jwks.json", 3 * time.Second, true}) {
		t.Fatalf("environment not applied: %+v", o)
	}
	if ov := o.overloadOptions; ov.inboxPublications != 100 || ov.inboxBytes != 1<<20 || ov.overloadWait != 250*time.Millisecond ||
		strings.Join(ov.conflateChannels, "|") != "ticker:*|prices" || ov.upgradeRate != 500 || ov.maxConnsPerIP != 20 {
		t.Fatalf("overload flags from the environment not applied: %+v", ov)
	}
	// The command line wins over the environment.
	o, err = parseServe(t, []string{"-max-conns", "7"})
	if err != nil {
		t.Fatal(err)
	}
	if o.maxConns != 7 {
		t.Fatalf("max-conns = %d, want the flag's 7", o.maxConns)
	}
}

func TestBadValuesExit2(t *testing.T) {
	cases := []struct {
		args []string
		env  map[string]string
	}{
		{args: []string{"-max-conns", "many"}},
		{args: []string{"-handshake-timeout", "0s"}},
		{args: []string{"-max-message-size", "-5"}},
		{args: []string{"-ping-interval", "2m", "-idle-timeout", "1m"}},
		{args: []string{"-log-level", "loud"}},
		{args: []string{"stray"}},
		{args: []string{"-broker", "redis://x"}},
		{args: []string{"-api-addr", "0.0.0.0:0"}},
		{args: []string{"-presence-channels", "room:*,bad name"}},
		{args: []string{"-presence-channels", "a*b"}},
		{env: map[string]string{"HERALD_MAX_CONNS": "lots"}},
		{env: map[string]string{"HERALD_WRITE_BUFFER_LIMIT": "1.5MiB"}},
		{args: []string{"-loop-inbox-publications", "0"}},
		{args: []string{"-loop-inbox-bytes", "10"}},
		{args: []string{"-overload-wait", "0s"}},
		{args: []string{"-overload-wait", "20s"}}, // not shorter than -api-write-timeout
		{args: []string{"-conflate-channels", "bad channel*"}},
		{args: []string{"-upgrade-rate", "-1"}},
		{args: []string{"-max-conns-per-ip", "-3"}},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " ")+fmtEnv(c.env), func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			if code := runServe(c.args); code != 2 {
				t.Fatalf("exit code %d, want 2", code)
			}
		})
	}
}

func fmtEnv(env map[string]string) string {
	var b strings.Builder
	for k, v := range env {
		b.WriteString(k + "=" + v)
	}
	return b.String()
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]int64{"1048576": 1 << 20, "1MiB": 1 << 20, "64k": 64 << 10, "1MB": 1_000_000, "512": 512, "2 KiB": 2048} {
		var b byteSize
		if err := b.Set(in); err != nil || int64(b) != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, b, err, want)
		}
	}
	for _, in := range []string{"", "x", "1.5MiB", "-1", "10XB"} {
		var b byteSize
		if err := b.Set(in); err == nil {
			t.Errorf("Set(%q) accepted", in)
		}
	}
}

func TestServeAPIFlags(t *testing.T) {
	o, err := parseServe(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := (apiOptions{1 << 20, 10 * time.Second, 15 * time.Second, time.Minute, 1024, 1000, 5 * time.Second}); o.apiOptions != want {
		t.Fatalf("API defaults %+v, want %+v", o.apiOptions, want)
	}
	so := o.nodeOptions(slog.Default())
	if so.APIMaxBody != 1<<20 || so.APIReadTimeout != 10*time.Second || so.APIWriteTimeout != 15*time.Second ||
		so.APIIdleTimeout != time.Minute || so.APIMaxInflight != 1024 || so.MaxPublishChannels != 1000 || so.PublishTimeout != 5*time.Second {
		t.Fatalf("API flags not passed to server.Options: %+v", so)
	}
	for _, args := range [][]string{
		{"-api-max-body", "0"},
		{"-api-read-timeout", "0s"},
		{"-api-write-timeout", "-1s"},
		{"-api-idle-timeout", "0s"},
		{"-api-max-inflight", "0"},
		{"-max-publish-channels", "0"},
		{"-publish-timeout", "0s"},
		{"-publish-timeout", "15s"},
		{"-publish-timeout", "3s", "-api-write-timeout", "2s"},
	} {
		if _, err := parseServe(t, args); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
	if _, err := parseServe(t, []string{"-publish-timeout", "1s", "-api-write-timeout", "2s"}); err != nil {
		t.Errorf("publish timeout under the write timeout refused: %v", err)
	}
}
