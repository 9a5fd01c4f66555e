package main

import (
	"flag"
	"net"
	"regexp"
	"strings"
	"testing"
)

// TestServeBadValueIsOneLine runs the binary with one bad value at a time,
// on the command line or in the environment: each prints exactly one line
// naming what to fix, and exits 2. The old code printed the flag package's
// error followed by the 56-line usage, said "parse error" for a duration
// without a unit, named four flags in one message, and asked for an API
// key when -api-addr was not an address at all.
func TestServeBadValueIsOneLine(t *testing.T) {
	cases := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{args: []string{"-idle-timeout", "30"}, want: `herald serve: -idle-timeout: "30" needs a unit, e.g. 30s`},
		{args: []string{"-ping-interval", "2.5"}, want: `herald serve: -ping-interval: "2.5" needs a unit, e.g. 2.5s`},
		{args: []string{"-handshake-timeout", "soon"}, want: `herald serve: -handshake-timeout: "soon" is not a duration (e.g. 30s, 1m30s, 250ms)`},
		{args: []string{"-max-conns", "many"}, want: `herald serve: -max-conns: "many" is not a whole number`},
		{args: []string{"-publish-rate", "fast"}, want: `herald serve: -publish-rate: "fast" is not a number`},
		{args: []string{"-compression=maybe"}, want: `herald serve: -compression: "maybe" is not true or false`},
		{args: []string{"-log-level", "loud"}, want: `herald serve: -log-level: "loud" is not a log level (debug, info, warn or error)`},
		{args: []string{"-max-message-size", "1.5MiB"}, want: `herald serve: -max-message-size: "1.5MiB" is not a byte size (e.g. 1048576, 64KiB, 1MiB, 1MB)`},
		{args: []string{"-no-such-flag"}, want: `herald serve: unknown flag -no-such-flag; run 'herald serve -h' for the flags`},
		{args: []string{"-addr"}, want: `herald serve: -addr needs a value; run 'herald serve -h' for the flags`},
		{args: []string{"stray"}, want: `herald serve: unexpected argument "stray" (flags start with -; run 'herald serve -h' for them)`},
		{args: []string{"-api-addr", "foo"}, want: `herald serve: -api-addr: "foo" is not host:port (e.g. 127.0.0.1:8080, or :8080 for every interface)`},
		{args: []string{"-addr", "127.0.0.1:http"}, want: `herald serve: -addr: "127.0.0.1:http" has no valid port (a number from 0 to 65535)`},
		{args: []string{"-addr", "127.0.0.1:70000"}, want: `herald serve: -addr: "127.0.0.1:70000" has no valid port (a number from 0 to 65535)`},
		{args: []string{"-addr", "bad host:80"}, want: `herald serve: -addr: "bad host:80": "bad host" is neither an IP address nor a host name`},
		{args: []string{"-handshake-timeout", "0s"}, want: `herald serve: -handshake-timeout must be more than 0, not 0s`},
		{args: []string{"-max-message-size", "0"}, want: `herald serve: -max-message-size must be more than 0`},
		{args: []string{"-write-buffer-limit", "0"}, want: `herald serve: -write-buffer-limit must be more than 0`},
		{args: []string{"-loops", "-1"}, want: `herald serve: -loops must be 0 (GOMAXPROCS) or more, not -1`},
		{args: []string{"-max-conns", "-1"}, want: `herald serve: -max-conns must be 0 (no limit) or more, not -1`},
		{args: []string{"-idle-timeout", "-1s"}, want: `herald serve: -idle-timeout must not be negative, not -1s`},
		{args: []string{"-shutdown-grace", "-1s"}, want: `herald serve: -shutdown-grace must not be negative, not -1s`},
		{args: []string{"-history-ttl", "-1s"}, want: `herald serve: -history-ttl must not be negative, not -1s`},
		{args: []string{"-max-channels-per-conn", "-1"}, want: `herald serve: -max-channels-per-conn must be 0 (no limit) or more, not -1`},
		{args: []string{"-history-size", "-1"}, want: `herald serve: -history-size must be 0 (no history) or more, not -1`},
		{args: []string{"-nats-replicas", "2"}, want: `herald serve: -nats-replicas must be 1, 3 or 5 (a majority must store each publish, so an even count adds no availability), not 2`},
		{args: []string{"-broker-timeout", "0s"}, want: `herald serve: -broker-timeout must be more than 0, not 0s`},
		{args: []string{"-publish-rate", "-1"}, want: `herald serve: -publish-rate must be 0 (no limit) or more, not -1`},
		{args: []string{"-ping-interval", "2m", "-idle-timeout", "1m"}, want: `herald serve: -ping-interval (2m0s) must be shorter than -idle-timeout (1m0s), or clients that only listen are dropped as idle`},
		{args: []string{"-broker", "redis://x"}, want: `herald serve: -broker must be memory or nats://host:port[,...], not "redis://x"`},
		{args: []string{"-api-addr", "0.0.0.0:0"}, want: `herald serve: -api-addr 0.0.0.0:0 is not a loopback address: set -api-key as well, or anyone who can reach it may publish`},
		{args: []string{"-api-addr", ":8081"}, want: `herald serve: -api-addr :8081 is not a loopback address: set -api-key as well, or anyone who can reach it may publish`},
		// The environment: the same checks, naming the variable.
		{env: map[string]string{"HERALD_IDLE_TIMEOUT": "30"}, want: `herald serve: HERALD_IDLE_TIMEOUT (-idle-timeout): "30" needs a unit, e.g. 30s`},
		{env: map[string]string{"HERALD_MAX_CONNS": "lots"}, want: `herald serve: HERALD_MAX_CONNS (-max-conns): "lots" is not a whole number`},
		{env: map[string]string{"HERALD_WRITE_BUFFER_LIMIT": "1.5MiB"}, want: `herald serve: HERALD_WRITE_BUFFER_LIMIT (-write-buffer-limit): "1.5MiB" is not a byte size (e.g. 1048576, 64KiB, 1MiB, 1MB)`},
		{env: map[string]string{"HERALD_API_ADDR": "foo"}, want: `herald serve: HERALD_API_ADDR: "foo" is not host:port (e.g. 127.0.0.1:8080, or :8080 for every interface)`},
		{env: map[string]string{"HERALD_HISTORY_SIZE": "-3"}, want: `herald serve: HERALD_HISTORY_SIZE must be 0 (no history) or more, not -3`},
		// A valid environment value does not hide a bad flag, which is
		// named as a flag.
		{args: []string{"-loops", "-2"}, env: map[string]string{"HERALD_LOOPS": "4"}, want: `herald serve: -loops must be 0 (GOMAXPROCS) or more, not -2`},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " ")+fmtEnv(c.env), func(t *testing.T) {
			_, stderr, code := runHerald(t, c.env, append([]string{"serve"}, c.args...)...)
			if code != 2 {
				t.Errorf("exit code %d, want 2", code)
			}
			if got := strings.TrimSuffix(stderr, "\n"); got != c.want {
				t.Errorf("stderr:\n%s\nwant exactly one line:\n%s", stderr, c.want)
			}
		})
	}
}

// TestValidateNamesOnlyTheBadFlag sets every numeric or duration flag to
// a bad value alone and checks that the one message names that flag and
// no other (the old code named four flags in one message), and that
// several bad flags give one message each.
func TestValidateNamesOnlyTheBadFlag(t *testing.T) {
	bad := map[string]string{
		"loops": "-1", "max-conns": "-1", "max-message-size": "0", "handshake-timeout": "0s",
		"idle-timeout": "-1s", "ping-interval": "-1s", "shutdown-grace": "-1s", "history-ttl": "-1s",
		"write-buffer-limit": "0", "max-channels-per-conn": "-1", "history-size": "-1", "publish-rate": "-1",
		"broker": "redis://x", "addr": "nope", "api-addr": "nope",
	}
	fs, _ := newServeFlags()
	var all []string
	fs.VisitAll(func(f *flag.Flag) { all = append(all, f.Name) })
	for name, v := range bad {
		_, err := parseServe(t, []string{"-" + name, v})
		if err == nil {
			t.Errorf("-%s %s accepted", name, v)
			continue
		}
		msg := err.Error()
		if strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "-"+name+" ") && !strings.HasPrefix(msg, "-"+name+":") {
			t.Errorf("-%s %s: %q is not one message starting with the flag", name, v, msg)
		}
		for _, other := range all {
			if other != name && regexp.MustCompile(`(^|[^a-z-])-`+regexp.QuoteMeta(other)+`($|[^a-z-])`).MatchString(msg) {
				t.Errorf("-%s %s: message %q also names -%s", name, v, msg, other)
			}
		}
	}
	_, err := parseServe(t, []string{"-loops", "-1", "-max-conns", "-1", "-history-size", "-1"})
	if err == nil || strings.Count(err.Error(), "\n") != 2 {
		t.Fatalf("three bad flags: %v, want three messages", err)
	}
}

// TestListenerErrorNamesItsAddress: a port that is taken makes herald
// serve exit 1 with one line naming the listener and the address (the old
// code logged "server: client listener: bind: address already in use").
func TestListenerErrorNamesItsAddress(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-addr", addr, "-api-addr", "127.0.0.1:0"}, "herald serve: server: client listener " + addr + ": "},
		{[]string{"-addr", "127.0.0.1:0", "-api-addr", addr}, "herald serve: server: API listener: listen tcp " + addr + ": "},
	} {
		_, stderr, code := runHerald(t, nil, append([]string{"serve", "-log-level", "error"}, c.args...)...)
		if code != 1 {
			t.Errorf("%v: exit code %d, want 1", c.args, code)
		}
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		last := lines[len(lines)-1]
		if !strings.HasPrefix(last, c.want) || !strings.Contains(last, "address already in use") {
			t.Errorf("%v: last line of stderr %q, want %q... address already in use", c.args, last, c.want)
		}
	}
}

// TestServeHelp: -h prints every flag and exits 0.
func TestServeHelp(t *testing.T) {
	_, stderr, code := runHerald(t, nil, "serve", "-h")
	if code != 0 {
		t.Fatalf("exit code %d", code)
	}
	fs, _ := newServeFlags()
	fs.VisitAll(func(f *flag.Flag) {
		if !strings.Contains(stderr, "  -"+f.Name+" ") && !strings.Contains(stderr, "  -"+f.Name+"\n") {
			t.Errorf("-h does not list -%s", f.Name)
		}
	})
}
