package pubcheck

import (
	"encoding/json"
	"errors"
	"unicode/utf8"
)

// MaxIdempotencyKey is the longest idempotency key, in bytes.
const MaxIdempotencyKey = 128

// Errors, each naming the rule that was broken.
var (
	ErrKeyInvalid  = errors.New("idempotency key must be 1-128 printable ASCII characters")
	ErrDataUTF8    = errors.New(`"data" contains invalid UTF-8`)
	ErrDataInvalid = errors.New(`"data" must be a single JSON value`)
)

// IdempotencyKey reports whether k may be used as an idempotency key:
// 1-128 bytes, each printable ASCII (space through tilde).
func IdempotencyKey(k string) error {
	if len(k) == 0 || len(k) > MaxIdempotencyKey {
		return ErrKeyInvalid
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e {
			return ErrKeyInvalid
		}
	}
	return nil
}

// Data reports whether data may be published: one JSON value, valid UTF-8
// throughout. encoding/json keeps a RawMessage's bytes as they came, so a
// string holding invalid UTF-8 passes the decoder; every subscriber would
// then get a text frame that RFC 6455 clients must fail with 1007.
func Data(data []byte) error {
	if !utf8.Valid(data) {
		return ErrDataUTF8
	}
	if !json.Valid(data) {
		return ErrDataInvalid
	}
	return nil
}
