package codec

import (
	"bufio"
	"bytes"
	"compress/flate"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// Every fuzz target takes the input and a cut: the network may split the
// bytes anywhere, so each target feeds b[:k] and then the rest and checks
// the result is what b delivered at once gives.

func cutAt(b []byte, cut uint16) int { return int(cut) % (len(b) + 1) }

// fuzzDecoderConfigs are the decoders every input goes through: the zero
// value, and one with compression negotiated and a limit that keeps zip
// bombs small.
var fuzzDecoderConfigs = []Decoder{{}, {Compression: true, MaxMessageSize: 64 << 10}}

func FuzzDecoder(f *testing.F) {
	for _, s := range decoderSeeds() {
		f.Add(s.b, s.cut)
	}
	f.Fuzz(func(t *testing.T, b []byte, cut uint16) {
		k := cutAt(b, cut)
		for _, cfg := range fuzzDecoderConfigs {
			want, wantErr := decodeAll(t, cfg, b, whole)
			got, err := decodeAll(t, cfg, b, cuts(k))
			if err != wantErr || !equalRecs(got, want) {
				t.Fatalf("cfg %+v, split at %d:\n got %v, %v\nwant %v, %v", cfg, k, got, err, want, wantErr)
			}
			if len(b) <= 512 {
				got, err = decodeAll(t, cfg, b, oneByte)
				if err != wantErr || !equalRecs(got, want) {
					t.Fatalf("cfg %+v, byte by byte:\n got %v, %v\nwant %v, %v", cfg, got, err, want, wantErr)
				}
			}
			if wantErr != nil {
				var pe *ProtocolError
				if !errors.As(wantErr, &pe) || CloseCode(wantErr) == ws.StatusInternalServerError {
					t.Fatalf("error %v is not a protocol error", wantErr)
				}
			}
			for _, ev := range want {
				checkEvent(t, cfg, ev)
			}
		}
	})
}

// checkEvent asserts what every event the decoder delivers must satisfy.
func checkEvent(t *testing.T, cfg Decoder, ev rec) {
	t.Helper()
	switch ev.Kind {
	case EventMessage:
		if ev.Op != ws.OpText && ev.Op != ws.OpBinary {
			t.Fatalf("message with opcode %d", ev.Op)
		}
		if ev.Op == ws.OpText && !utf8.ValidString(ev.Payload) {
			t.Fatalf("text message with invalid UTF-8: %v", ev)
		}
		if cfg.MaxMessageSize > 0 && int64(len(ev.Payload)) > cfg.MaxMessageSize {
			t.Fatalf("message of %d bytes over the limit", len(ev.Payload))
		}
	case EventPing, EventPong:
		if len(ev.Payload) > 125 {
			t.Fatalf("control payload of %d bytes", len(ev.Payload))
		}
	case EventClose:
		if ev.Code == ws.StatusNoStatusRcvd {
			if ev.Payload != "" {
				t.Fatalf("close without code but with reason %q", ev.Payload)
			}
		} else if !ValidCloseCode(ev.Code) || len(ev.Payload) > 123 || !utf8.ValidString(ev.Payload) {
			t.Fatalf("bad close event %v", ev)
		}
	default:
		t.Fatalf("event kind %d", ev.Kind)
	}
}

func FuzzParseRequest(f *testing.F) {
	for _, s := range requestSeeds() {
		f.Add(s.b, s.cut)
	}
	f.Fuzz(func(t *testing.T, b []byte, cut uint16) {
		k := cutAt(b, cut)
		opt := ParseOptions{Compression: true}
		var whole Request
		wn, werr := ParseRequest(b, 0, &whole, opt)
		if werr != nil {
			var he *HTTPError
			if wn != 0 || !errors.As(werr, &he) {
				t.Fatalf("error %v with n %d", werr, wn)
			}
		}
		if wn != 0 && (wn < 4 || wn > len(b) || wn > MaxHeaderBytes || !bytes.Equal(b[wn-4:wn], crlfcrlf)) {
			t.Fatalf("n %d does not end a header block", wn)
		}
		if wn == 0 && werr == nil && (len(b) > MaxHeaderBytes || bytes.Contains(b, crlfcrlf)) {
			t.Fatalf("incomplete, but %d bytes with a terminator: %v", len(b), bytes.Contains(b, crlfcrlf))
		}

		// Split: the prefix first, then everything with scanned = k.
		var r Request
		n, err := ParseRequest(b[:k], 0, &r, opt)
		if n == 0 && err == nil {
			n, err = ParseRequest(b, k, &r, opt)
		}
		if n != wn || err != werr {
			t.Fatalf("split at %d: n %d err %v; whole: n %d err %v", k, n, err, wn, werr)
		}
		if wn == 0 || werr != nil {
			return
		}
		if !reflect.DeepEqual(r, whole) {
			t.Fatalf("split at %d: request differs:\n%+v\n%+v", k, r, whole)
		}

		// Whatever Check says, the response is well-formed HTTP.
		var resp []byte
		status := 101
		if err := whole.Check(); err != nil {
			var he *HTTPError
			if !errors.As(err, &he) {
				t.Fatalf("Check: %v", err)
			}
			status = he.Status
			resp = AppendHTTPError(nil, status, "")
		} else {
			resp = AppendAccept(nil, &whole, true)
			if !validKey(whole.Key) || string(whole.Version) != "13" || string(whole.Method) != "GET" || len(whole.Host) == 0 {
				t.Fatalf("Check passed a bad request: %+v", whole)
			}
		}
		hr, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(resp)), nil)
		if err != nil || hr.StatusCode != status {
			t.Fatalf("response %q: %v", resp, err)
		}
		if status == 101 && hr.Header.Get("Sec-WebSocket-Accept") != referenceAccept(string(whole.Key)) {
			t.Fatalf("accept key %q for %q", hr.Header.Get("Sec-WebSocket-Accept"), whole.Key)
		}
	})
}

func FuzzUTF8(f *testing.F) {
	for _, s := range utf8Seeds() {
		f.Add(s.b, s.cut)
	}
	f.Fuzz(func(t *testing.T, b []byte, cut uint16) {
		k := cutAt(b, cut)
		whole := utf8Accept.Feed(b)
		if whole.Complete() != utf8.Valid(b) {
			t.Fatalf("%q: Complete %v, utf8.Valid %v", b, whole.Complete(), utf8.Valid(b))
		}
		if split := utf8Accept.Feed(b[:k]).Feed(b[k:]); split != whole {
			t.Fatalf("%q split at %d: state %d, whole %d", b, k, split, whole)
		}
		reject := firstReject(b)
		if whole.Valid() != (reject < 0) {
			t.Fatalf("%q: Valid %v, first rejected byte %d", b, whole.Valid(), reject)
		}
		if reject >= 0 {
			if !utf8Accept.Feed(b[:reject]).Valid() || utf8Accept.Feed(b[:reject+1]).Valid() {
				t.Fatalf("%q: Valid does not turn false at byte %d", b, reject)
			}
		}
	})
}

// FuzzDeflate checks two directions: b compressed by AppendMessage and sent
// back by a client decodes to b, and compressed by AppendMessageWindow stays
// within the window; and b taken as a compressed payload from a
// client decodes exactly as compress/flate inflates it.
func FuzzDeflate(f *testing.F) {
	for _, s := range deflateSeeds() {
		f.Add(s.b, s.cut)
	}
	f.Fuzz(func(t *testing.T, b []byte, cut uint16) {
		ops := []ws.OpCode{ws.OpBinary}
		if utf8.Valid(b) {
			ops = append(ops, ws.OpText)
		}
		for _, op := range ops {
			frame := maskServerFrame(AppendMessage(nil, op, b, true, 0), testKey)
			cfg := Decoder{Compression: true, MaxMessageSize: int64(max(len(b), 1))}
			got, err := decodeAll(t, cfg, frame, cuts(cutAt(frame, cut)))
			if err != nil || !equalRecs(got, []rec{msg(op, string(b))}) {
				t.Fatalf("round trip of %d bytes: %v, %v", len(b), got, err)
			}
		}

		// The same payload for a negotiated window (8-15 bits, picked by
		// cut): every back-reference stays inside it.
		bits := 8 + int(cut)%8
		c, _ := serverPayload(t, AppendMessageWindow(nil, ws.OpBinary, b, true, 0, bits))
		if d := inflateChecked(t, c, b); d > 1<<bits {
			t.Fatalf("%d bytes, %d-bit window: a back-reference reaches %d bytes", len(b), bits, d)
		}

		const limit = 1 << 20
		frame := cfb(fin|rsv1|byte(ws.OpBinary), b)
		got, err := decodeAll(t, Decoder{Compression: true, MaxMessageSize: limit}, frame, cuts(cutAt(frame, cut)))
		ref := flate.NewReader(io.MultiReader(bytes.NewReader(b), bytes.NewReader(deflateTail), bytes.NewReader(finalBlock)))
		want, refErr := io.ReadAll(io.LimitReader(ref, limit+1))
		switch {
		case len(want) > limit:
			if !errors.Is(err, ErrMessageTooBig) {
				t.Fatalf("inflates past the limit, but err %v", err)
			}
		case refErr != nil:
			if !errors.Is(err, ErrBadCompression) {
				t.Fatalf("compress/flate fails with %v, decoder gives %v, %v", refErr, got, err)
			}
		default:
			if err != nil || !equalRecs(got, []rec{binMsg(string(want))}) {
				t.Fatalf("compress/flate inflates %d bytes, decoder gives %v, %v", len(want), got, err)
			}
		}
	})
}

// Seed corpora. The same seeds are added in code and written to
// testdata/fuzz/<Name>/ by `go test ./codec -run TestWriteFuzzSeeds
// -write-seeds`, so that `go test` without -fuzz runs them either way and the
// files document the starting points.

type seed struct {
	name string
	b    []byte
	cut  uint16
}

func mid(name string, b []byte) seed { return seed{name, b, uint16(len(b) / 2)} }

func decoderSeeds() []seed {
	return []seed{
		mid("rfc-masked-hello", []byte{0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58}),
		mid("fragmented-with-ping", cat(text(0, "Hel"), ping("p"), cont(fin, "lo"))),
		mid("many-frames", cat(text(fin, "one"), bin(fin, "two"), ping("three"), text(0, "fo"), pong("five"), cont(fin, "ur"), closeFrame(closeBody(1000, "six")))),
		mid("close-1000-bye", closeFrame(closeBody(1000, "bye"))),
		mid("close-empty", closeFrame("")),
		mid("close-bad-code", closeFrame(closeBody(1005, ""))),
		mid("length-16bit", bin(fin, strings.Repeat("x", 200))),
		mid("length-64bit", bin(fin, strings.Repeat("y", 65536))),
		mid("length-16bit-non-minimal", withPayload(bits("1000 0010  1 1111110  00000000 01111101"), make([]byte, 125))),
		mid("length-64bit-msb", withPayload(bits("1000 0010  1 1111111  10000000 00000000 00000000 00000000 00000000 00000001 00000000 00000000"), nil)),
		mid("unmasked", []byte{0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f}),
		mid("reserved-opcode", cf(fin|0x3, "")),
		mid("rsv2", text(rsv2|fin, "a")),
		mid("text-multibyte", text(fin, "κόσμε € 𝄞")),
		{"text-split-code-point", cat(text(0, "\xf0\x9d"), cont(fin, "\x84\x9e")), 8},
		mid("text-invalid-utf8", text(fin, "ok\xed\xa0\x80")),
		mid("deflate-hello", cf(rsv1|fin|byte(ws.OpText), "\xf2\x48\xcd\xc9\xc9\x07\x00")),
		mid("deflate-fragmented", cat(cf(rsv1|byte(ws.OpText), "\xf2\x48\xcd"), ping(""), cf(fin, "\xc9\xc9\x07\x00"))),
		mid("deflate-stored", cf(rsv1|fin|byte(ws.OpBinary), "\x00\x05\x00\xfa\xff\x48\x65\x6c\x6c\x6f\x00")),
		mid("deflate-bomb", cfb(rsv1|fin|byte(ws.OpBinary), deflateRaw(make([]byte, 1<<20), flate.BestCompression))),
		mid("continuation-without-start", cont(fin, "x")),
		mid("control-too-long", ping(strings.Repeat("p", 126))),
		{"partial-header", text(fin, "abc")[:3], 1},
	}
}

func requestSeeds() []seed {
	return []seed{
		mid("rfc", []byte(rfcRequest)),
		mid("chrome", []byte(browserRequest)),
		mid("deflate-window-bits", []byte(request("GET / HTTP/1.1", "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10, permessage-deflate; server_max_window_bits=15"))),
		mid("deflate-malformed", []byte(request("GET / HTTP/1.1", "Sec-WebSocket-Extensions: permessage-deflate;;"))),
		mid("connection-list", []byte(request("GET /a?b=c HTTP/1.1", "Connection: keep-alive, Upgrade", "upgrade: WebSocket"))),
		mid("http10", []byte(request("GET / HTTP/1.0"))),
		mid("post", []byte(request("POST / HTTP/1.1"))),
		mid("bad-key", []byte(request("GET / HTTP/1.1", "Sec-WebSocket-Key: MDEyMzQ1Njc4OWFiY2RlZmc="))),
		mid("space-before-colon", []byte(request("GET / HTTP/1.1", "Host : x"))),
		mid("folding", []byte(request("GET / HTTP/1.1", "X-A: a", " b"))),
		{"terminator-split", []byte(rfcRequest), uint16(len(rfcRequest) - 2)},
		{"pipelined-frame", cat([]byte(rfcRequest), text(fin, "hi")), uint16(len(rfcRequest))},
		mid("incomplete", []byte(rfcRequest[:60])),
		mid("http2", []byte(request("GET / HTTP/2.0"))),
		mid("duplicate-host", []byte(plus("Host: other.example.com"))),
		mid("duplicate-key", []byte(plus("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="))),
		mid("content-length", []byte(request("GET / HTTP/1.1", "Content-Length: 5"))),
		mid("transfer-encoding", []byte(request("GET / HTTP/1.1", "Transfer-Encoding: chunked"))),
		mid("ctl-in-value", []byte(request("GET / HTTP/1.1", "X-A: a\x01b"))),
		mid("obs-text", []byte(request("GET / HTTP/1.1", "X-A: caf\xc3\xa9"))),
		mid("target-punctuation", []byte(request("GET /a;b?q={x}|%zz&token=t HTTP/1.1"))),
		mid("lists-across-lines", []byte(plus("Connection: close", "Upgrade: h2c", "Sec-WebSocket-Protocol: chat", "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=9"))),
		mid("deflate-window-9", []byte(request("GET / HTTP/1.1", "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=9; client_max_window_bits=10"))),
	}
}

func utf8Seeds() []seed {
	return []seed{
		mid("ascii", []byte("The quick brown fox jumps over the lazy dog")),
		mid("multibyte", []byte("κόσμε € 𝄞 \U0010FFFF \uFFFD")),
		mid("overlong", []byte("\xc0\xaf \xe0\x80\xaf \xf0\x80\x80\xaf")),
		mid("surrogate", []byte("ab\xed\xa0\x80cd")),
		mid("beyond-max", []byte("\xf4\x90\x80\x80")),
		{"truncated", []byte("€\xe2\x82"), 4},
		{"split-inside-rune", []byte("a𝄞b"), 3},
		mid("ascii-then-bad", []byte("12345678\x80")),
	}
}

func deflateSeeds() []seed {
	return []seed{
		mid("empty", nil),
		mid("hello", []byte("Hello")),
		mid("rfc7692-hello", []byte("\xf2\x48\xcd\xc9\xc9\x07\x00")),
		mid("rfc7692-stored", []byte("\x00\x05\x00\xfa\xff\x48\x65\x6c\x6c\x6f\x00")),
		mid("rfc7692-two-blocks", []byte("\xf2\x48\x05\x00\x00\x00\xff\xff\xca\xc9\xc9\x07\x00")),
		mid("json", deflatePayloads["json"][:200]),
		mid("compressed-json", deflateRaw(deflatePayloads["json"], flate.BestSpeed)),
		mid("reserved-block", []byte{0xff, 0xff, 0xff}),
		mid("random", binaryOf(64, 1)),
		{"periodic-past-256", periodic(3000, 257, 1), 0},
		{"periodic-1000-window-9", periodic(5000, 1000, 2), 1},
	}
}

var writeSeeds = flag.Bool("write-seeds", false, "rewrite the seed corpora in testdata/fuzz")

// TestWriteFuzzSeeds writes the seeds above as `go test fuzz v1` files.
func TestWriteFuzzSeeds(t *testing.T) {
	if !*writeSeeds {
		t.Skip("run with -write-seeds to rewrite testdata/fuzz")
	}
	for name, seeds := range map[string][]seed{
		"FuzzDecoder":      decoderSeeds(),
		"FuzzParseRequest": requestSeeds(),
		"FuzzUTF8":         utf8Seeds(),
		"FuzzDeflate":      deflateSeeds(),
	} {
		dir := filepath.Join("testdata", "fuzz", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, s := range seeds {
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\nuint16(%d)\n", s.b, s.cut)
			if err := os.WriteFile(filepath.Join(dir, "seed-"+s.name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
