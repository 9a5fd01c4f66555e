package main

import (
	"crypto"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/herald-ws/herald/auth"
)

// minSecretLen is the shortest HS256 secret herald token accepts without a
// warning: 32 bytes, the size of the SHA-256 output (RFC 7518 section 3.2).
const minSecretLen = 32

// checkPattern reports why a -channels entry is not one the server would
// accept: a channel name (auth.ValidChannel), or a prefix of one followed by
// '*', or '*' alone (every public channel).
func checkPattern(p string) error {
	name, wildcard := strings.CutSuffix(p, "*")
	if wildcard && name == "" {
		return nil
	}
	if strings.Contains(name, "*") {
		return fmt.Errorf("%q: '*' may only end a pattern", p)
	}
	if wildcard {
		// The prefix must leave room for at least one more byte of name.
		if !auth.ValidChannel(name) || len(name) > 254 {
			return fmt.Errorf("%q: the prefix before '*' must be 1-254 bytes of [A-Za-z0-9:_.-]", p)
		}
		return nil
	}
	if !auth.ValidChannel(name) {
		return fmt.Errorf("%q is not a channel name the server accepts (1-255 bytes of [A-Za-z0-9:_.-])", p)
	}
	return nil
}

// runToken prints a signed client token.
func runToken(args []string) int {
	var (
		secret, sub, channels string
		subs, privateKey, kid string
		publish               bool
		ttl                   time.Duration
	)
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.StringVar(&secret, "secret", "", "HS256 secret, the server's -token-secret (required)")
	fs.StringVar(&sub, "sub", "", "user id; the token may subscribe to user:<sub> (required)")
	fs.StringVar(&channels, "channels", "", "comma-separated channel patterns the token allows ('*' suffix wildcard); empty allows every public channel")
	fs.BoolVar(&publish, "publish", false, "allow the client to publish to the channels it may subscribe to")
	fs.DurationVar(&ttl, "ttl", time.Hour, "validity")
	fs.StringVar(&subs, "subs", "", "comma-separated channels the connection is subscribed to on connect (the subs claim)")
	fs.StringVar(&privateKey, "private-key", "", "PEM private key (RSA 2048+ or EC P-256) to sign RS256 or ES256 instead of HS256 with -secret")
	fs.StringVar(&kid, "kid", "", "key id written in the token's header (with -private-key), for a server with -token-jwks")
	if _, err := parseFlags(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "herald token:", err)
		return 2
	}
	var problems []string
	switch {
	case secret == "" && privateKey == "":
		problems = append(problems, "-secret is required (the server's -token-secret), or -private-key")
	case secret != "" && privateKey != "":
		problems = append(problems, "give -secret or -private-key, not both")
	case kid != "" && privateKey == "":
		problems = append(problems, "-kid needs -private-key")
	}
	if sub == "" {
		problems = append(problems, "-sub is required (the user id)")
	}
	if ttl <= 0 {
		problems = append(problems, fmt.Sprintf("-ttl must be more than 0, not %v", ttl))
	}
	var list []string
	for _, c := range strings.Split(channels, ",") {
		if c = strings.TrimSpace(c); c == "" {
			continue
		}
		if err := checkPattern(c); err != nil {
			problems = append(problems, "-channels: "+err.Error())
			continue
		}
		list = append(list, c)
	}
	var subList []string
	for _, c := range strings.Split(subs, ",") {
		if c = strings.TrimSpace(c); c == "" {
			continue
		}
		if !auth.ValidChannel(c) {
			problems = append(problems, fmt.Sprintf("-subs: %q is not a channel name the server accepts (1-255 bytes of [A-Za-z0-9:_.-])", c))
			continue
		}
		subList = append(subList, c)
	}
	var signer crypto.Signer
	if privateKey != "" {
		b, err := os.ReadFile(privateKey)
		if err == nil {
			signer, err = auth.ParsePrivateKey(b)
		}
		if err != nil {
			problems = append(problems, "-private-key: "+err.Error())
		}
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(os.Stderr, "herald token:", p)
		}
		return 2
	}
	if signer == nil && len(secret) < minSecretLen {
		fmt.Fprintf(os.Stderr, "herald token: warning: the secret is %d bytes; use at least %d random bytes (e.g. openssl rand -base64 32), or tokens can be forged by guessing it\n", len(secret), minSecretLen)
	}
	if !auth.ValidChannel(auth.UserChannelPrefix + sub) {
		fmt.Fprintf(os.Stderr, "herald token: warning: the personal channel %q is not a valid channel name (1-255 bytes of [A-Za-z0-9:_.-]), so this token cannot subscribe to it\n", auth.UserChannelPrefix+sub)
	}
	now := time.Now()
	c := auth.Claims{Channels: list, Publish: publish, Subs: subList, RegisteredClaims: jwt.RegisteredClaims{
		Subject: sub, IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(ttl))}}
	var tok string
	var err error
	if signer != nil {
		tok, err = auth.MintSigned(signer, kid, c)
	} else {
		tok, err = auth.MintClaims(secret, c)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "herald token:", err)
		return 1
	}
	fmt.Println(tok)
	return 0
}
