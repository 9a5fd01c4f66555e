package conformance_test

import (
	"testing"
	"time"
	"unicode/utf8"

	"github.com/herald-ws/herald/internal/testutil"
	"github.com/herald-ws/herald/internal/wstest"
)

// validUTF8 are text payloads a server must accept (Autobahn 6.2, 6.5,
// 6.22 and the boundaries of every encoded length).
var validUTF8 = []struct{ name, s string }{
	{"empty", ""},
	{"6.2 Hello-µ@ßöäüàá-UTF-8!!", "Hello-\u00b5@\u00df\u00f6\u00e4\u00fc\u00e0\u00e1-UTF-8!!"},
	{"6.5 kosme", "\u03ba\u1f79\u03c3\u03bc\u03b5"},
	{"U+0000", "\x00"},
	{"U+007F", "\x7f"},
	{"U+0080", "\xc2\x80"},
	{"U+07FF", "\xdf\xbf"},
	{"U+0800", "\xe0\xa0\x80"},
	{"U+D7FF", "\xed\x9f\xbf"},
	{"U+E000", "\xee\x80\x80"},
	{"U+FFFD", "\xef\xbf\xbd"},
	{"U+FFFE", "\xef\xbf\xbe"},
	{"U+FFFF", "\xef\xbf\xbf"},
	{"U+10000", "\xf0\x90\x80\x80"},
	{"U+10FFFF", "\xf4\x8f\xbf\xbf"},
	{"emoji", "\U0001F600 \U0001F44D\U0001F3FD"},
	{"mixed scripts", "Herald: \u65e5\u672c\u8a9e, \u0627\u0644\u0639\u0631\u0628\u064a\u0629, \u0939\u093f\u0928\u094d\u0926\u0940"},
}

// invalidUTF8 are text payloads a server must fail with 1007 (Autobahn
// 6.3, 6.6, 6.8-6.21).
var invalidUTF8 = []struct{ name, s string }{
	{"6.3 kosme-edited surrogate", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"},
	{"overlong / 2 bytes", "\xc0\xaf"},
	{"overlong / 3 bytes", "\xe0\x80\xaf"},
	{"overlong / 4 bytes", "\xf0\x80\x80\xaf"},
	{"overlong NUL", "\xc0\x80"},
	{"overlong max 2 bytes", "\xc1\xbf"},
	{"overlong max 3 bytes", "\xe0\x9f\xbf"},
	{"overlong max 4 bytes", "\xf0\x8f\xbf\xbf"},
	{"surrogate D800", "\xed\xa0\x80"},
	{"surrogate DBFF", "\xed\xaf\xbf"},
	{"surrogate DC00", "\xed\xb0\x80"},
	{"surrogate DFFF", "\xed\xbf\xbf"},
	{"surrogate pair D800 DC00", "\xed\xa0\x80\xed\xb0\x80"},
	{"U+110000", "\xf4\x90\x80\x80"},
	{"F5 lead", "\xf5\x80\x80\x80"},
	{"5-byte form", "\xf8\x88\x80\x80\x80"},
	{"6-byte form", "\xfc\x84\x80\x80\x80\x80"},
	{"FE", "\xfe"},
	{"FF", "\xff"},
	{"lone continuation 80", "\x80"},
	{"lone continuation BF", "\xbf"},
	{"continuations 80 BF 80", "\x80\xbf\x80"},
	{"continuation after ASCII", "abc\x80def"},
	{"truncated 2-byte", "\xc2"},
	{"truncated 3-byte", "\xe2\x82"},
	{"truncated 4-byte", "\xf0\x9f\x98"},
	{"truncated in the middle", "a\xe2\x82b"},
	{"6.3 valid text then a truncated sequence", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce"},
	{"lead byte then ASCII", "\xc3("},
}

// TestUTF8 mirrors Autobahn 6.x: valid text is echoed however it is cut
// into fragments and writes; invalid text fails the connection with 1007,
// and as soon as the bad byte arrives.
func TestUTF8(t *testing.T) {
	t.Parallel()
	addr := start(t, testutil.Options{})
	var cases []scenario
	for _, v := range validUTF8 {
		cases = append(cases,
			scenario{name: "valid " + v.name, do: do(send(text(v.s)), wantText(v.s))},
			scenario{name: "valid " + v.name + ", a fragment per byte",
				do: do(send(wstest.Fragments(wstest.OpText, 0, []byte(v.s), 1)), wantText(v.s))},
		)
	}
	for _, v := range invalidUTF8 {
		if utf8.ValidString(v.s) {
			t.Fatalf("case %q is valid UTF-8", v.name)
		}
		cases = append(cases,
			scenario{name: "invalid " + v.name, do: do(send(text(v.s))), close: closeInvalidUTF},
			scenario{name: "invalid " + v.name + ", a fragment per byte",
				do: do(send(wstest.Fragments(wstest.OpText, 0, []byte(v.s), 1))), close: closeInvalidUTF},
			scenario{name: "invalid " + v.name + ", after an echo",
				do: do(send(text("before"), text(v.s), ping([]byte("after"))), wantText("before")), close: closeInvalidUTF},
		)
	}
	// Binary messages carry any bytes.
	for _, v := range invalidUTF8[:5] {
		cases = append(cases, scenario{name: "binary may hold " + v.name, do: do(send(binary([]byte(v.s))), want(wstest.OpBinary, []byte(v.s)))})
	}

	// Fail fast: the close must arrive while the message is unfinished, so
	// the rest of it is never sent.
	kosmeEdited := "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"
	// partial is the start of one text frame whose header announces
	// declared bytes: only payload follows it.
	partial := func(payload string, declared int) []byte {
		return frame(true, 0, wstest.OpText, []byte(payload), wstest.DeclaredLen(uint64(declared)))
	}
	cases = append(cases,
		scenario{name: "6.4.1 invalid byte in the first fragment, rest never sent", close: closeInvalidUTF,
			do: do(send(frame(false, 0, wstest.OpText, []byte(kosmeEdited))))},
		scenario{name: "6.4.2 invalid sequence across two fragments, last never sent", close: closeInvalidUTF,
			do: do(send(frame(false, 0, wstest.OpText, []byte("\xce\xba\xe1\xbd\xb9\xf4"))),
				send(cont(false, "\x90\x80\x80")))},
		scenario{name: "6.4.3 invalid byte in the first half of one frame, rest never sent", close: closeInvalidUTF,
			// The header announces 1000 bytes; only 20 follow.
			do: do(send(partial("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edite", 1000)))},
		scenario{name: "6.4.4 invalid byte arriving bytewise inside one frame", close: closeInvalidUTF,
			do: do(sendChunked(1, 100*time.Microsecond, partial("\xce\xba\xe1\xbd\xb9\xff", 1000)))},
		scenario{name: "6.4.x valid prefix, 64 KiB frame, bad byte in the first 1 KiB", close: closeInvalidUTF,
			do: do(send(partial(string(textOf(1000))+"\xc0", 64<<10)))},
		scenario{name: "valid fragments, message ends inside a code point", close: closeInvalidUTF,
			do: do(send(frame(false, 0, wstest.OpText, []byte("ab\xe2")), cont(false, "\x82"), cont(true, "")))},
	)
	run(t, addr, cases)

	// Valid text split at every byte position: as two fragments, and as
	// one frame delivered in two writes.
	t.Run("6.2 valid text split at every byte", func(t *testing.T) {
		t.Parallel()
		msg := "Hello-\u00b5@\u00df\u00f6\u00e4\u00fc\u00e0\u00e1-UTF-8!! \u03ba\u1f79\u03c3\u03bc\u03b5 \U0001F600\U0010FFFF"
		c := wstest.Dial(t, addr, "/echo", nil)
		for k := 0; k <= len(msg); k++ {
			c.Write(append(frame(false, 0, wstest.OpText, []byte(msg[:k])), cont(true, msg[k:])...))
			c.ExpectMessage(wstest.OpText, []byte(msg))
		}
		for k := 1; k < len(msg); k++ {
			f := text(msg)
			cut := len(f) - len(msg) + k
			c.Write(f[:cut])
			time.Sleep(200 * time.Microsecond)
			c.Write(f[cut:])
			c.ExpectMessage(wstest.OpText, []byte(msg))
		}
		for k := 1; k <= 4; k++ {
			c.Write(wstest.Fragments(wstest.OpText, 0, []byte(msg), k))
			c.ExpectMessage(wstest.OpText, []byte(msg))
		}
	})
}
