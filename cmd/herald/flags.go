package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// envName maps a flag name to its environment variable: max-conns ->
// HERALD_MAX_CONNS.
func envName(flagName string) string {
	return "HERALD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// sources says where each flag that was set got its value: "-max-conns"
// for the command line, "HERALD_MAX_CONNS" for the environment. Messages
// about a value name the place the person has to fix.
type sources map[string]string

// of is how a message names flag name: where its value came from, or the
// flag itself when it has its default.
func (s sources) of(name string) string {
	if v, ok := s[name]; ok {
		return v
	}
	return "-" + name
}

// usageError is a mistake in a command's flags or arguments: the command
// prints it and exits 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// parseFlags parses args, then fills every flag not given on the command line
// from its environment variable. A bad value in either place is returned as
// one line naming the flag or the variable, without the flag package's
// usage dump; -h prints the full usage to fs.Output and returns
// flag.ErrHelp.
func parseFlags(fs *flag.FlagSet, args []string) (sources, error) {
	out := fs.Output()
	var bad *badValue
	restore := captureValueErrors(fs, &bad)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	fs.SetOutput(out)
	restore()
	switch {
	case errors.Is(err, flag.ErrHelp):
		printUsage(fs)
		return nil, err
	case bad != nil:
		return nil, &usageError{describeValue("-"+bad.name, bad.value, bad.orig, bad.err)}
	case err != nil:
		return nil, &usageError{rewordParseError(fs.Name(), err)}
	case fs.NArg() > 0:
		return nil, &usageError{fmt.Sprintf("unexpected argument %q (flags start with -; run 'herald %s -h' for them)", fs.Arg(0), fs.Name())}
	}
	src := sources{}
	fs.Visit(func(f *flag.Flag) { src[f.Name] = "-" + f.Name })
	fs.VisitAll(func(f *flag.Flag) {
		if _, given := src[f.Name]; given || err != nil {
			return
		}
		name := envName(f.Name)
		v, ok := os.LookupEnv(name)
		if !ok {
			return
		}
		if e := f.Value.Set(v); e != nil {
			err = &usageError{describeValue(name+" (-"+f.Name+")", v, f.Value, e)}
			return
		}
		src[f.Name] = name
	})
	if err != nil {
		return nil, err
	}
	return src, nil
}

func printUsage(fs *flag.FlagSet) {
	fmt.Fprintf(fs.Output(), "usage: herald %s [flags]\n\nEvery flag also reads HERALD_<NAME> from the environment (-max-conns: HERALD_MAX_CONNS); the command line wins.\n\n", fs.Name())
	fs.PrintDefaults()
}

// badValue is the first value a flag refused during Parse.
type badValue struct {
	name, value string
	orig        flag.Value
	err         error
}

// captureValues wraps every flag's Value so that the first refused value is
// recorded with its flag, for a message better than the flag package's
// "parse error". The returned function puts the original Values back.
func captureValueErrors(fs *flag.FlagSet, bad **badValue) (restore func()) {
	orig := map[string]flag.Value{}
	fs.VisitAll(func(f *flag.Flag) {
		orig[f.Name] = f.Value
		f.Value = &capturingValue{Value: f.Value, name: f.Name, bad: bad}
	})
	return func() {
		fs.VisitAll(func(f *flag.Flag) { f.Value = orig[f.Name] })
	}
}

type capturingValue struct {
	flag.Value
	name string
	bad  **badValue
}

func (c *capturingValue) Set(s string) error {
	err := c.Value.Set(s)
	if err != nil && *c.bad == nil {
		*c.bad = &badValue{name: c.name, value: s, orig: c.Value, err: err}
	}
	return err
}

// IsBoolFlag keeps -flag (without =true) working for boolean flags.
func (c *capturingValue) IsBoolFlag() bool {
	b, ok := c.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// describeValue says in one line why value is not good for the flag or
// variable called name.
func describeValue(name, value string, v flag.Value, err error) string {
	var kind any
	if g, ok := v.(flag.Getter); ok {
		kind = g.Get()
	}
	switch kind.(type) {
	case time.Duration:
		if _, e := strconv.ParseFloat(strings.TrimSpace(value), 64); e == nil {
			return fmt.Sprintf("%s: %q needs a unit, e.g. %ss", name, value, strings.TrimSpace(value))
		}
		return fmt.Sprintf("%s: %q is not a duration (e.g. 30s, 1m30s, 250ms)", name, value)
	case int, int64, uint, uint64:
		return fmt.Sprintf("%s: %q is not a whole number", name, value)
	case float64:
		return fmt.Sprintf("%s: %q is not a number", name, value)
	case bool:
		return fmt.Sprintf("%s: %q is not true or false", name, value)
	case *slog.Level:
		return fmt.Sprintf("%s: %q is not a log level (debug, info, warn or error)", name, value)
	}
	return fmt.Sprintf("%s: %q %v", name, value, err)
}

// rewordParseError turns the flag package's remaining errors (an unknown
// flag, a flag without its value) into one line with a pointer to -h.
func rewordParseError(cmd string, err error) string {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
		msg = "unknown flag " + name
	} else if name, ok := strings.CutPrefix(msg, "flag needs an argument: "); ok {
		msg = name + " needs a value"
	}
	return fmt.Sprintf("%s; run 'herald %s -h' for the flags", msg, cmd)
}

// checkHostPort reports, in a message naming the flag, why addr is not a
// listen address: host:port with a numeric port, the host an IP address,
// a name or empty (every interface).
func checkHostPort(flagName, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s: %q is not host:port (e.g. 127.0.0.1:8080, or :8080 for every interface)", flagName, addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%s: %q has no valid port (a number from 0 to 65535)", flagName, addr)
	}
	if host != "" && net.ParseIP(host) == nil && !validHostName(host) {
		return fmt.Errorf("%s: %q: %q is neither an IP address nor a host name", flagName, addr, host)
	}
	return nil
}

// validHostName reports whether h is a DNS name: dot-separated labels of
// letters, digits and hyphens.
func validHostName(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// byteSize is a flag value that accepts 1048576, 1024KiB, 1MiB, 1MB or 64k.
type byteSize int64

func (b *byteSize) String() string {
	switch n := int64(*b); {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	default:
		return fmt.Sprint(n)
	}
}

func (b *byteSize) Set(s string) error {
	t := strings.TrimSpace(strings.ToLower(s))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"kb", 1000}, {"mb", 1000_000}, {"gb", 1000_000_000}, {"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"b", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	var n int64
	if _, err := fmt.Sscan(t, &n); err != nil || n < 0 || fmt.Sprint(n) != t || n > (1<<62)/mult {
		return errors.New("is not a byte size (e.g. 1048576, 64KiB, 1MiB, 1MB)")
	}
	*b = byteSize(n * mult)
	return nil
}

// listFlag is a comma-separated list.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(s string) error {
	*l = nil
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}
