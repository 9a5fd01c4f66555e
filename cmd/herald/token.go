package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/herald-ws/herald/auth"
)

// runToken prints a signed client token.
func runToken(args []string) int {
	var (
		secret, sub, channels string
		publish               bool
		ttl                   time.Duration
	)
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.StringVar(&secret, "secret", "", "HS256 secret, the server's -token-secret (required)")
	fs.StringVar(&sub, "sub", "", "user id; the token may subscribe to user:<sub> (required)")
	fs.StringVar(&channels, "channels", "", "comma-separated channel patterns the token allows ('*' suffix wildcard); empty allows every public channel")
	fs.BoolVar(&publish, "publish", false, "allow the client to publish to the channels it may subscribe to")
	fs.DurationVar(&ttl, "ttl", time.Hour, "validity")
	if err := parseFlags(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "herald token:", err)
		return 2
	}
	if secret == "" || sub == "" || ttl <= 0 {
		fmt.Fprintln(os.Stderr, "herald token: -secret and -sub are required and -ttl must be positive")
		return 2
	}
	var list []string
	for _, c := range strings.Split(channels, ",") {
		if c = strings.TrimSpace(c); c != "" {
			list = append(list, c)
		}
	}
	tok, err := auth.Mint(secret, sub, list, publish, ttl)
	if err != nil {
		fmt.Fprintln(os.Stderr, "herald token:", err)
		return 1
	}
	fmt.Println(tok)
	return 0
}
