package wstest

import (
	"bytes"
	"compress/flate"
	"fmt"
	"io"
)

// deflateTail is the empty stored block a permessage-deflate sender strips
// from every message and the receiver appends again (RFC 7692 section 7.2).
var deflateTail = []byte{0x00, 0x00, 0xff, 0xff}

// Deflate compresses p the way a permessage-deflate client without context
// takeover does: a fresh compressor, flushed, with the trailing 00 00 ff ff
// removed. The result is the payload of a frame with RSV1 set.
func Deflate(p []byte) []byte {
	var buf bytes.Buffer
	w, err := flate.NewWriter(&buf, flate.DefaultCompression)
	if err != nil {
		panic(err) // only for an invalid level
	}
	_, _ = w.Write(p) // writes to a bytes.Buffer cannot fail
	_ = w.Flush()
	out := buf.Bytes()
	if !bytes.HasSuffix(out, deflateTail) {
		panic("wstest: flate.Flush did not end with an empty stored block")
	}
	return out[:len(out)-len(deflateTail)]
}

// Inflate decompresses one permessage-deflate message payload (RSV1 set,
// tail stripped), the way a client without context takeover does.
func Inflate(p []byte) ([]byte, error) {
	// The tail makes the data end on a block boundary; the empty final
	// stored block after it lets the reader reach io.EOF.
	src := io.MultiReader(bytes.NewReader(p), bytes.NewReader(deflateTail),
		bytes.NewReader([]byte{0x01, 0x00, 0x00, 0xff, 0xff}))
	out, err := io.ReadAll(flate.NewReader(src))
	if err != nil {
		return nil, fmt.Errorf("wstest: inflate: %w", err)
	}
	return out, nil
}
