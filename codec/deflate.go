package codec

import (
	"bytes"
	"compress/flate"
	"io"
	"sync"

	"github.com/gobwas/ws"
	"github.com/valyala/bytebufferpool"
)

// deflateTail is what RFC 7692 section 7.2.1 has the sender strip from the
// end of each compressed message, and the receiver append again.
var deflateTail = []byte{0x00, 0x00, 0xff, 0xff}

// finalBlock is an empty final stored block: appended after the tail it lets
// the inflater reach io.EOF instead of waiting for more input.
var finalBlock = []byte{0x01, 0x00, 0x00, 0xff, 0xff}

// inflater is a pooled decompressor with the reader that feeds it, so that
// inflating a message allocates nothing once the pool is warm.
type inflater struct {
	src  messageReader
	flat io.ReadCloser
}

// messageReader reads a compressed payload followed by the tail and the
// final block without copying them together.
type messageReader struct {
	parts [3][]byte
	i     int
}

func (r *messageReader) Read(p []byte) (int, error) {
	for r.i < len(r.parts) {
		if len(r.parts[r.i]) == 0 {
			r.i++
			continue
		}
		n := copy(p, r.parts[r.i])
		r.parts[r.i] = r.parts[r.i][n:]
		return n, nil
	}
	return 0, io.EOF
}

func (r *messageReader) ReadByte() (byte, error) {
	for r.i < len(r.parts) {
		if len(r.parts[r.i]) == 0 {
			r.i++
			continue
		}
		b := r.parts[r.i][0]
		r.parts[r.i] = r.parts[r.i][1:]
		return b, nil
	}
	return 0, io.EOF
}

func (r *messageReader) reset(payload []byte) {
	r.parts = [3][]byte{payload, deflateTail, finalBlock}
	r.i = 0
}

var inflaterPool = sync.Pool{New: func() any {
	f := new(inflater)
	f.src.reset(nil)
	f.flat = flate.NewReader(&f.src)
	return f
}}

// inflate decompresses one permessage-deflate message into out, refusing to
// produce more than limit bytes (zero: no limit) so that a small compressed
// frame cannot expand into an unbounded allocation.
func inflate(out *bytebufferpool.ByteBuffer, payload []byte, limit int64) error {
	f := inflaterPool.Get().(*inflater)
	defer inflaterPool.Put(f)
	f.src.reset(payload)
	if err := f.flat.(flate.Resetter).Reset(&f.src, nil); err != nil {
		return ErrBadCompression
	}
	// The limit is checked after every read and before the read's error,
	// and no read may go more than one byte past it, so which error a
	// message that is both too big and corrupt gets (1009 or 1007) depends
	// only on its bytes: 1009 when it inflates past the limit before the
	// corruption. Before, it depended on the pooled buffer's capacity.
	for {
		if len(out.B) == cap(out.B) {
			out.B = append(out.B, 0)[:len(out.B)]
		}
		buf := out.B[len(out.B):cap(out.B)]
		if room := limit + 1 - int64(len(out.B)); limit > 0 && int64(len(buf)) > room {
			buf = buf[:room]
		}
		n, err := f.flat.Read(buf)
		out.B = out.B[:len(out.B)+n]
		if limit > 0 && int64(len(out.B)) > limit {
			return ErrMessageTooBig
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return ErrBadCompression
		}
	}
	if limit > 0 && int64(len(out.B)) > limit {
		return ErrMessageTooBig
	}
	return nil
}

// deflater is a pooled compressor writing into a reusable buffer.
type deflater struct {
	out  bytes.Buffer
	flat *flate.Writer
}

var deflaterPool = sync.Pool{New: func() any {
	d := new(deflater)
	// BestSpeed keeps both CPU and the writer's own memory (~40 KiB less
	// than the default level) down; push payloads are small JSON.
	d.flat, _ = flate.NewWriter(&d.out, flate.BestSpeed)
	return d
}}

// AppendMessage appends payload to dst as one unfragmented server frame of
// opcode op. When compress is true and payload is at least minSize bytes, the
// frame is compressed with permessage-deflate (RSV1 set) using a pooled
// compressor, no context takeover and the full 32 KiB window; otherwise it
// is sent as is.
func AppendMessage(dst []byte, op ws.OpCode, payload []byte, compress bool, minSize int) []byte {
	return AppendMessageWindow(dst, op, payload, compress, minSize, MaxWindowBits)
}

// AppendMessageWindow is AppendMessage for a connection that negotiated
// server_max_window_bits=windowBits (Request.DeflateWindowBits): no
// back-reference of the compressed data reaches further than 2^windowBits
// bytes. Values below 8 count as 8 and above 15 as 15.
//
// compress/flate always uses a 32 KiB window, so a payload longer than the
// window is compressed in chunks of 2^windowBits bytes, each by a freshly
// reset compressor ending in a sync flush. The chunks concatenate into one
// valid DEFLATE stream whose back-references all stay inside their chunk.
// zlib raises a raw-deflate window of 8 bits to 9 when compressing, but
// inflates with the 256-byte window a client asked for; 256-byte chunks
// honour both. Each chunk costs its sync flush (4 or 5 bytes) and the
// compressor's restart, so small windows compress large messages less well.
//
// The frame depends on windowBits only through FrameWindowBits, which
// callers sharing one encoded frame among many connections key it by.
func AppendMessageWindow(dst []byte, op ws.OpCode, payload []byte, compress bool, minSize, windowBits int) []byte {
	if !compress || len(payload) < minSize {
		return AppendFrame(dst, op, payload)
	}
	chunk := len(payload) // compress/flate's own window is 2^15
	if w := FrameWindowBits(len(payload), windowBits); w < MaxWindowBits {
		chunk = 1 << w
	}
	d := deflaterPool.Get().(*deflater)
	defer deflaterPool.Put(d)
	d.out.Reset()
	for off := 0; ; off += chunk {
		// Reset forgets the previous chunk: BestSpeed's matcher starts
		// with an empty history, so no match can reach across.
		d.flat.Reset(&d.out)
		_, _ = d.flat.Write(payload[off:min(off+chunk, len(payload))]) // writes to a bytes.Buffer cannot fail
		_ = d.flat.Flush()
		if off+chunk >= len(payload) {
			break
		}
	}
	c := bytes.TrimSuffix(d.out.Bytes(), deflateTail)
	dst = appendHeader(dst, op, true, true, len(c))
	return append(dst, c...)
}

// FrameWindowBits is the window AppendMessageWindow compresses a payload of
// n bytes for when the connection allows windowBits: windowBits clamped to
// 8..15, or 15 when the payload fits in the window (then there is nothing
// to chunk). Frames built for connections with the same FrameWindowBits
// are byte for byte the same, and a frame built for w bits is valid for
// every connection that allows w bits or more, so a fan-out encodes one
// frame per distinct value among its subscribers, and for the usual small
// message just one.
func FrameWindowBits(n, windowBits int) int {
	w := min(max(windowBits, 8), MaxWindowBits)
	if n <= 1<<w {
		return MaxWindowBits
	}
	return w
}
