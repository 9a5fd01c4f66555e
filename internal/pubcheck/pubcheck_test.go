package pubcheck

import (
	"errors"
	"strings"
	"testing"
)

func TestIdempotencyKey(t *testing.T) {
	for _, c := range []struct {
		key string
		ok  bool
	}{
		{"a", true},
		{"order-42:retry_1", true},
		{" !~", true},
		{strings.Repeat("k", 128), true},
		{"", false},
		{strings.Repeat("k", 129), false},
		{"tab\there", false},
		{"new\nline", false},
		{"nul\x00", false},
		{"del\x7f", false},
		{"café", false},
		{"\xff", false},
	} {
		err := IdempotencyKey(c.key)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrKeyInvalid)) {
			t.Errorf("IdempotencyKey(%q) = %v, want ok=%v", c.key, err, c.ok)
		}
	}
	// Every single byte: exactly 0x20-0x7e pass.
	for b := 0; b < 256; b++ {
		err := IdempotencyKey(string([]byte{byte(b)}))
		if want := b >= 0x20 && b <= 0x7e; (err == nil) != want {
			t.Errorf("key byte %#x: %v, want ok=%v", b, err, want)
		}
	}
}

func TestData(t *testing.T) {
	for _, c := range []struct {
		data string
		want error
	}{
		{`1`, nil},
		{`"héllo ✓"`, nil},
		{`{"a":[1,2,{"b":null}]}`, nil},
		{` "spaced" `, nil},
		{`"\ud800"`, nil}, // an escaped lone surrogate is valid JSON and ASCII on the wire
		{"\"\xff\"", ErrDataUTF8},
		{"\"\xc3\"", ErrDataUTF8},                        // truncated sequence
		{"\"\xed\xa0\x80\"", ErrDataUTF8},                // raw surrogate
		{"\"\xc0\xaf\"", ErrDataUTF8},                    // overlong
		{"{\"k\xfe\":1}", ErrDataUTF8},                   // in a key
		{"[1,\"ok\",\"\xf4\x90\x80\x80\"]", ErrDataUTF8}, // past U+10FFFF
		{``, ErrDataInvalid},
		{`1 2`, ErrDataInvalid},
		{`{"a":1`, ErrDataInvalid},
		{`nope`, ErrDataInvalid},
	} {
		if err := Data([]byte(c.data)); !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Errorf("Data(%q) = %v, want %v", c.data, err, c.want)
		}
	}
}
