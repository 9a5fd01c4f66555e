package auth

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Claims are the token claims Herald reads.
type Claims struct {
	// omitzero, not omitempty: an empty, non-nil list (no public channel)
	// must survive Mint; omitempty dropped it, so it came back as nil (any
	// public channel).
	Channels []string `json:"channels,omitzero"`
	Publish  bool     `json:"publish,omitempty"`
	// Subs are the channels the connection is subscribed to on connect,
	// each checked as a subscribe would be.
	Subs []string `json:"subs,omitempty"`
	jwt.RegisteredClaims
}

// Identity is who a connection is and what it may do.
type Identity struct {
	User      string   // empty for anonymous connections
	Patterns  []string // nil: any public channel
	Publish   bool
	Anonymous bool
}

// Grant is everything a verified token says: the Identity a connection
// keeps, and what matters only at moments (exp, the subs claim), kept
// apart so that the Identity every connection holds stays small.
type Grant struct {
	Identity
	Subs    []string  // channels to subscribe to on connect (the subs claim)
	Expires time.Time // exp
}

// Errors.
var (
	ErrNoToken      = errors.New("auth: missing token")
	ErrInvalidToken = errors.New("auth: invalid token")
	ErrNoSubject    = errors.New("auth: token has no sub")
)

// Verifier checks tokens: HS256 with a shared secret, RS256 and ES256
// with public keys from a PEM file or a JWKS file (see Config). Safe for
// concurrent use.
type Verifier struct {
	cfg    Config
	secret []byte // nil: no HS256
	static []any  // keys of Config.PublicKeyFile
	parser *jwt.Parser
	// jwks is the current load of Config.JWKSFile; checked is when the
	// file was last looked at (unix nanoseconds).
	jwks     atomic.Pointer[keySet]
	checked  atomic.Int64
	reloadMu sync.Mutex // serialises reloads, which are rare
}

// NewVerifier returns a Verifier for one HS256 secret.
func NewVerifier(secret string) *Verifier {
	return &Verifier{
		cfg:    Config{Secret: secret},
		secret: []byte(secret),
		parser: newParser([]string{"HS256"}),
	}
}

// Verify parses token and returns the identity it grants.
func (v *Verifier) Verify(token string) (Identity, error) {
	g, err := v.VerifyGrant(token)
	return g.Identity, err
}

// VerifyGrant parses token and returns all it grants.
func (v *Verifier) VerifyGrant(token string) (Grant, error) {
	if token == "" {
		return Grant{}, ErrNoToken
	}
	var c Claims
	if _, err := v.parser.ParseWithClaims(token, &c, v.keyFunc); err != nil {
		return Grant{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	if c.Subject == "" {
		return Grant{}, ErrNoSubject
	}
	g := Grant{Identity: Identity{User: c.Subject, Patterns: c.Channels, Publish: c.Publish}, Subs: c.Subs}
	if c.ExpiresAt != nil {
		g.Expires = c.ExpiresAt.Time
	}
	return g, nil
}

// Mint signs a token for user, valid for ttl, limited to channels (nil: any
// public channel) and allowed to publish when publish is true.
func Mint(secret, user string, channels []string, publish bool, ttl time.Duration) (string, error) {
	now := time.Now()
	c := Claims{
		Channels: channels,
		Publish:  publish,
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   user,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
	}
	return MintClaims(secret, c)
}

// MintClaims signs c with the HS256 secret.
func MintClaims(secret string, c Claims) (string, error) {
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(secret))
}

// ValidChannel reports whether name is 1-255 bytes of [A-Za-z0-9:_.-].
func ValidChannel(name string) bool {
	if len(name) == 0 || len(name) > 255 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == ':', c == '_', c == '.', c == '-':
		default:
			return false
		}
	}
	return true
}

// UserChannelPrefix starts a personal channel: user:42 belongs to user 42.
const UserChannelPrefix = "user:"

// CanSubscribe reports whether id may subscribe to channel (assumed valid).
// A personal channel is open only to its own user; a public channel to
// anyone whose patterns (if the token has any) match it.
func (id Identity) CanSubscribe(channel string) bool {
	if owner, ok := strings.CutPrefix(channel, UserChannelPrefix); ok {
		return !id.Anonymous && id.User != "" && owner == id.User
	}
	if id.Patterns == nil {
		return true
	}
	return MatchAny(id.Patterns, channel)
}

// CanPublish reports whether id may publish to channel from a client
// connection: it needs the publish permission and the right to subscribe.
func (id Identity) CanPublish(channel string) bool {
	return id.Publish && id.CanSubscribe(channel)
}

// MatchAny reports whether channel matches one of the patterns; a pattern
// ending in '*' matches every channel with that prefix.
func MatchAny(patterns []string, channel string) bool {
	for _, p := range patterns {
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			if strings.HasPrefix(channel, prefix) {
				return true
			}
		} else if p == channel {
			return true
		}
	}
	return false
}
