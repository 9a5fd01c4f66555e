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
	plain    []byte // text frame
	deflated []byte // permessage-deflate text frame, or nil
	json     []byte // the message JSON, the plain frame's payload
	// byWindow holds the deflated frame for sessions whose window is 8-14
	// bits (index bits-8), built on first use under mu: only messages
	// longer than such a window need one (codec.FrameWindowBits).
	mu       sync.Mutex
	byWindow [codec.MaxWindowBits - 8][]byte
	refs     atomic.Int32
}

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

// encode builds the frame(s) for p. deflate asks for the compressed variant
// as well (only when some session negotiated it).
func encode(p broker.Publication, deflate bool, minSize, refs int) *sharedFrame {
	f := framePool.Get().(*sharedFrame)
	f.json = AppendMessageJSON(f.json[:0], p)
	f.plain = codec.AppendFrame(f.plain[:0], ws.OpText, f.json)
	f.deflated = f.deflated[:0]
	if deflate && len(f.json) >= minSize {
		f.deflated = codec.AppendMessage(f.deflated, ws.OpText, f.json, true, minSize)
	}
	f.refs.Store(int32(refs))
	return f
}

// frameFor picks the encoding a session can read: plain, or deflated for
// its negotiated window. Safe for concurrent use by the loops sharing f.
func (f *sharedFrame) frameFor(deflate bool, windowBits int) []byte {
	if !deflate || len(f.deflated) == 0 {
		return f.plain
	}
	w := codec.FrameWindowBits(len(f.json), windowBits)
	if w == codec.MaxWindowBits {
		return f.deflated
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.byWindow[w-8]) == 0 {
		f.byWindow[w-8] = codec.AppendMessageWindow(f.byWindow[w-8][:0], ws.OpText, f.json, true, 0, w)
	}
	return f.byWindow[w-8]
}

func (f *sharedFrame) release() {
	if f.refs.Add(-1) == 0 {
		if cap(f.plain) > 64<<10 {
			f.plain, f.deflated, f.json = nil, nil, nil // do not pool huge buffers
			f.byWindow = [codec.MaxWindowBits - 8][]byte{}
		}
		for i := range f.byWindow {
			f.byWindow[i] = f.byWindow[i][:0]
		}
		framePool.Put(f)
	}
}
