package hub

import (
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/gobwas/ws"

	"github.com/herald-ws/herald/broker"
	"github.com/herald-ws/herald/codec"
)

// sharedFrame is one publication encoded once for every subscriber on every
// loop. It goes back to its pool when the last loop task releases it.
type sharedFrame struct {
	plain []byte // text frame
	json  []byte // the message JSON, the plain frame's payload
	// mu guards the compressed variants, built on first use: a
	// publication nobody with permessage-deflate receives is never
	// compressed. deflated is for the full window; byWindow holds the
	// frame for sessions whose window is 8-14 bits (index bits-8), needed
	// only for messages longer than such a window (codec.FrameWindowBits).
	mu       sync.Mutex
	compress bool // compression is on and the message is long enough
	deflated []byte
	byWindow [codec.MaxWindowBits - 8][]byte
	// sse is the publication as a Server-Sent Event, for stream sessions,
	// built on first use like the compressed variants; its id line ends
	// at sseTail.
	sse     []byte
	sseTail int
	// ready has bit w-8 set once the variant for window w is built (bit 7:
	// deflated; readySSE: sse), so that after the first subscriber the
	// others read it without taking mu.
	ready atomic.Uint32
	refs  atomic.Int32
}

// Compressions counts the publications compressed (variants built), for
// tests and metrics.
var Compressions atomic.Int64

var framePool = sync.Pool{New: func() any { return new(sharedFrame) }}

// AppendMessageJSON appends {"op":"message","channel":..,"offset":..,"data":..}.
// Channel names are validated to need no JSON escaping; data is raw JSON.
func AppendMessageJSON(dst []byte, p broker.Publication) []byte {
	dst = append(dst, `{"op":"message","channel":"`...)
	dst = append(dst, p.Channel...)
	dst = append(dst, `","offset":`...)
	dst = strconv.AppendUint(dst, p.Offset, 10)
	dst = append(dst, `,"data":`...)
	dst = append(dst, p.Data...)
	return append(dst, '}')
}

// encode builds p's plain frame. deflate says whether compressed variants
// may be needed (compression is on); they are built by frameFor on first
// use.
func encode(p broker.Publication, deflate bool, minSize, refs int) *sharedFrame {
	f := framePool.Get().(*sharedFrame)
	f.json = AppendMessageJSON(f.json[:0], p)
	f.plain = codec.AppendFrame(f.plain[:0], ws.OpText, f.json)
	f.compress = deflate && len(f.json) >= minSize
	f.refs.Store(int32(refs))
	return f
}

// frameFor picks the encoding a session can read: plain, or deflated for
// its negotiated window, compressing on first use. Safe for concurrent use
// by the loops sharing f.
func (f *sharedFrame) frameFor(deflate bool, windowBits int) []byte {
	if !deflate || !f.compress {
		return f.plain
	}
	w := codec.FrameWindowBits(len(f.json), windowBits)
	bit := uint32(1) << (w - 8) // bit 7 is the full window's
	if f.ready.Load()&bit == 0 {
		f.mu.Lock()
		if f.ready.Load()&bit == 0 {
			if w == codec.MaxWindowBits {
				f.deflated = codec.AppendMessage(f.deflated[:0], ws.OpText, f.json, true, 0)
			} else {
				f.byWindow[w-8] = codec.AppendMessageWindow(f.byWindow[w-8][:0], ws.OpText, f.json, true, 0, w)
			}
			Compressions.Add(1)
			f.ready.Or(bit)
		}
		f.mu.Unlock()
	}
	if w == codec.MaxWindowBits {
		return f.deflated
	}
	return f.byWindow[w-8]
}

// readySSE is ready's bit for the event variant.
const readySSE = 1 << 8

// event returns the publication as a Server-Sent Event (see
// appendEventHead), building it on first use, and where its id line ends.
// Safe for concurrent use by the loops sharing f.
func (f *sharedFrame) event(p broker.Publication) ([]byte, int) {
	if f.ready.Load()&readySSE == 0 {
		f.mu.Lock()
		if f.ready.Load()&readySSE == 0 {
			f.sse = appendEventHead(f.sse[:0], nil, p)
			f.sseTail = len(f.sse) - len("event: message\n")
			f.sse = AppendEventData(f.sse, f.json)
			f.ready.Or(readySSE)
		}
		f.mu.Unlock()
	}
	return f.sse, f.sseTail
}

func (f *sharedFrame) release() {
	if f.refs.Add(-1) == 0 {
		if cap(f.plain) > 64<<10 {
			f.plain, f.deflated, f.json, f.sse = nil, nil, nil, nil // do not pool huge buffers
			f.byWindow = [codec.MaxWindowBits - 8][]byte{}
		}
		f.deflated, f.sse = f.deflated[:0], f.sse[:0]
		f.ready.Store(0)
		for i := range f.byWindow {
			f.byWindow[i] = f.byWindow[i][:0]
		}
		framePool.Put(f)
	}
}
