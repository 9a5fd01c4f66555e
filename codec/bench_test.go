package codec

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/gobwas/ws"
)

func BenchmarkParseRequest(b *testing.B) {
	in := []byte(browserRequest)
	opt := ParseOptions{Compression: true}
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	var r Request
	for b.Loop() {
		n, err := ParseRequest(in, 0, &r, opt)
		if n != len(in) || err != nil {
			b.Fatal(n, err)
		}
		if err := r.Check(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendAccept(b *testing.B) {
	var r Request
	if _, err := ParseRequest([]byte(browserRequest), 0, &r, ParseOptions{Compression: true}); err != nil {
		b.Fatal(err)
	}
	dst := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		dst = AppendAccept(dst[:0], &r, true)
	}
}

var benchSizes = []struct {
	name string
	n    int
}{{"16B", 16}, {"1KiB", 1 << 10}, {"64KiB", 64 << 10}}

// jsonOf returns n bytes of ASCII JSON-like text, the traffic Herald carries
// (BenchmarkUTF8 measures multi-byte text).
func jsonOf(n int) []byte {
	return bytes.Repeat(benchJSON, n/len(benchJSON)+1)[:n]
}

// BenchmarkDecode decodes one masked client text frame per iteration. Next
// unmasks in place, so each iteration first copies the pristine frame into
// the work buffer (a memmove, far cheaper than unmasking and validating);
// the reported time includes that copy.
func BenchmarkDecode(b *testing.B) {
	for _, s := range benchSizes {
		b.Run(s.name, func(b *testing.B) {
			frame := cfb(fin|byte(ws.OpText), jsonOf(s.n))
			work := make([]byte, len(frame))
			var d Decoder
			d.MaxMessageSize = 1 << 20
			b.ReportAllocs()
			b.SetBytes(int64(s.n))
			for b.Loop() {
				copy(work, frame)
				ev, n, err := d.Next(work)
				if err != nil || n != len(frame) || len(ev.Payload) != s.n {
					b.Fatal(ev.Kind, n, err)
				}
			}
		})
	}
}

// BenchmarkDecodeSplit is BenchmarkDecode with every frame arriving in two
// reads, so the payload is assembled in the decoder's pooled buffer.
func BenchmarkDecodeSplit(b *testing.B) {
	for _, s := range benchSizes {
		b.Run(s.name, func(b *testing.B) {
			frame := cfb(fin|byte(ws.OpText), jsonOf(s.n))
			work := make([]byte, len(frame))
			half := len(frame) / 2
			var d Decoder
			b.ReportAllocs()
			b.SetBytes(int64(s.n))
			for b.Loop() {
				copy(work, frame)
				_, n1, err := d.Next(work[:half])
				if err != nil {
					b.Fatal(err)
				}
				ev, n2, err := d.Next(work[n1:])
				if err != nil || n1+n2 != len(frame) || len(ev.Payload) != s.n {
					b.Fatal(ev.Kind, n1+n2, err)
				}
			}
		})
	}
}

func BenchmarkEncode(b *testing.B) {
	for _, s := range benchSizes {
		b.Run(s.name, func(b *testing.B) {
			payload := jsonOf(s.n)
			dst := make([]byte, 0, s.n+MaxHeaderSize)
			b.ReportAllocs()
			b.SetBytes(int64(s.n))
			for b.Loop() {
				dst = AppendFrame(dst[:0], ws.OpText, payload)
			}
		})
	}
}

// benchJSON is a 1 KiB push message of the kind Herald sends.
var benchJSON = func() []byte {
	var sb strings.Builder
	sb.WriteString(`{"channel":"prices","updates":[`)
	for i := 0; sb.Len() < 1<<10-40; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"s":"SYM%03d","b":%d.%04d,"a":%d.%04d}`, i, 100+i, i*37%10000, 100+i, i*41%10000)
	}
	sb.WriteString(`]}`)
	s := sb.String()
	return []byte(s + strings.Repeat(" ", 1<<10-len(s)))
}()

func BenchmarkAppendMessageCompressed(b *testing.B) {
	dst := make([]byte, 0, 2<<10)
	b.ReportAllocs()
	b.SetBytes(int64(len(benchJSON)))
	for b.Loop() {
		dst = AppendMessage(dst[:0], ws.OpText, benchJSON, true, 256)
	}
	b.ReportMetric(float64(len(dst)), "wire-bytes")
}

// BenchmarkAppendMessageWindow compresses a 1 KiB and a 64 KiB push
// message for connections with a limited window (chunked) and the full one,
// and reports the compressed size.
func BenchmarkAppendMessageWindow(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10} {
		p := bytes.Repeat(benchJSON, size/len(benchJSON)+1)[:size]
		for _, bits := range []int{8, 9, 12, 15} {
			b.Run(fmt.Sprintf("%dKiB/%dbits", size>>10, bits), func(b *testing.B) {
				dst := make([]byte, 0, 2*size)
				b.ReportAllocs()
				b.SetBytes(int64(size))
				for b.Loop() {
					dst = AppendMessageWindow(dst[:0], ws.OpText, p, true, 0, bits)
				}
				b.ReportMetric(float64(len(dst)), "frame-bytes")
			})
		}
	}
}

func BenchmarkDecodeCompressed(b *testing.B) {
	frame := maskServerFrame(AppendMessage(nil, ws.OpText, benchJSON, true, 0), testKey)
	work := make([]byte, len(frame))
	d := Decoder{Compression: true, MaxMessageSize: 1 << 20}
	b.ReportAllocs()
	b.SetBytes(int64(len(benchJSON)))
	for b.Loop() {
		copy(work, frame)
		ev, _, err := d.Next(work)
		if err != nil || len(ev.Payload) != len(benchJSON) {
			b.Fatal(err)
		}
	}
}

func BenchmarkUTF8(b *testing.B) {
	for _, c := range []struct {
		name string
		p    []byte
	}{
		{"ASCII", []byte(strings.Repeat("The quick brown fox jumps over the lazy dog. ", 24))[:1<<10]},
		{"multibyte", textOf(1 << 10)},
		{"CJK", []byte(strings.Repeat("日本語のテキスト", 43))[:1<<10-1]},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.p)))
			for b.Loop() {
				if !utf8Accept.Feed(c.p).Valid() {
					b.Fatal("invalid")
				}
			}
		})
	}
}

// TestZeroAllocs proves the hot paths allocate nothing once the pools are
// warm: decoding a 1 KiB frame delivered whole and in two reads, decoding a
// compressed one, and encoding.
func TestZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	payload := textOf(1 << 10)
	frame := cfb(fin|byte(ws.OpText), payload)
	work := make([]byte, len(frame))
	var d Decoder
	defer d.Reset()
	decode := func(ends ...int) { // ends: where each read ends, the last at len(frame)
		copy(work, frame)
		off := 0
		var ev Event
		for _, end := range ends {
			e, n, err := d.Next(work[off:end])
			if err != nil {
				t.Fatal(err)
			}
			off += n
			ev = e
		}
		if off != len(frame) || len(ev.Payload) != len(payload) {
			t.Fatalf("decoded %d bytes, payload %d", off, len(ev.Payload))
		}
	}
	if a := testing.AllocsPerRun(200, func() { decode(len(frame)) }); a != 0 {
		t.Errorf("decode 1 KiB whole: %v allocs", a)
	}
	if a := testing.AllocsPerRun(200, func() { decode(len(frame)/2, len(frame)) }); a != 0 {
		t.Errorf("decode 1 KiB in two reads: %v allocs", a)
	}
	if a := testing.AllocsPerRun(200, func() { decode(1, 5, 9, 100, 700, len(frame)) }); a != 0 {
		t.Errorf("decode 1 KiB in six reads: %v allocs", a)
	}

	cframe := maskServerFrame(AppendMessage(nil, ws.OpText, benchJSON, true, 0), testKey)
	cwork := make([]byte, len(cframe))
	cd := Decoder{Compression: true, MaxMessageSize: 1 << 20}
	defer cd.Reset()
	if a := testing.AllocsPerRun(200, func() {
		copy(cwork, cframe)
		if ev, _, err := cd.Next(cwork); err != nil || len(ev.Payload) != len(benchJSON) {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("decode 1 KiB compressed: %v allocs", a)
	}

	dst := make([]byte, 0, 2<<10)
	if a := testing.AllocsPerRun(200, func() { dst = AppendFrame(dst[:0], ws.OpText, payload) }); a != 0 {
		t.Errorf("encode 1 KiB: %v allocs", a)
	}
	if a := testing.AllocsPerRun(200, func() { dst = AppendCloseFrame(dst[:0], 1000, "bye") }); a != 0 {
		t.Errorf("encode close: %v allocs", a)
	}
	if a := testing.AllocsPerRun(200, func() { dst = AppendMessage(dst[:0], ws.OpText, benchJSON, true, 0) }); a != 0 {
		t.Errorf("encode 1 KiB compressed: %v allocs", a)
	}
	var r Request
	in := []byte(browserRequest)
	if a := testing.AllocsPerRun(200, func() {
		if _, err := ParseRequest(in, 0, &r, ParseOptions{Compression: true}); err != nil {
			t.Fatal(err)
		}
		dst = AppendAccept(dst[:0], &r, true)
	}); a != 0 {
		t.Errorf("parse request and accept: %v allocs", a)
	}
}
