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
	for {
		if len(out.B) == cap(out.B) {
			out.B = append(out.B, 0)[:len(out.B)]
		}
		if limit > 0 && int64(len(out.B)) > limit {
			return ErrMessageTooBig
		}
		n, err := f.flat.Read(out.B[len(out.B):cap(out.B)])
		out.B = out.B[:len(out.B)+n]
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
// compressor and no context takeover; otherwise it is sent as is.
func AppendMessage(dst []byte, op ws.OpCode, payload []byte, compress bool, minSize int) []byte {
	if !compress || len(payload) < minSize {
		return AppendFrame(dst, op, payload)
	}
	d := deflaterPool.Get().(*deflater)
	defer deflaterPool.Put(d)
	d.out.Reset()
	d.flat.Reset(&d.out)
	_, _ = d.flat.Write(payload) // writes to a bytes.Buffer cannot fail
	_ = d.flat.Flush()
	c := bytes.TrimSuffix(d.out.Bytes(), deflateTail)
	dst = appendHeader(dst, op, true, true, len(c))
	return append(dst, c...)
}
