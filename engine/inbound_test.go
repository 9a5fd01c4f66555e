package engine_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/herald-ws/herald/internal/testutil"
)

// TestInboundBudgetBoundsHalfSentMessages: many connections each send half
// of a large fragmented message and stop. Past the server-wide inbound
// budget, new ones are closed with 1008; the heap stays bounded; the count
// goes back to zero when the connections close; a normal client still
// echoes throughout.
func TestInboundBudgetBoundsHalfSentMessages(t *testing.T) {
	const (
		budget = 8 << 20
		half   = 512 << 10 // the first fragment of a 1 MiB message
		conns  = 120       // 60 MiB of fragments without a budget
	)
	srv := testutil.Start(t, testutil.Options{MaxInboundBuffer: budget, CloseTimeout: 10 * time.Second})
	other := dial(t, srv, "/echo")

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	payload := bytes.Repeat([]byte("h"), half)
	var mask [4]byte // a zero mask leaves the payload as it is
	frame := append([]byte{0x02, 0x80 | 127}, binary.BigEndian.AppendUint64(nil, half)...)
	frame = append(append(frame, mask[:]...), payload...) // FIN=0: more fragments follow

	codes := make([]ws.StatusCode, conns)
	cs := make([]net.Conn, conns)
	var wg sync.WaitGroup
	for i := range cs {
		c := dial(t, srv, "/echo")
		cs[i] = c
		if _, err := c.Write(frame); err != nil {
			t.Fatalf("conn %d: %v", i, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.SetReadDeadline(time.Now().Add(4 * time.Second))
			br := bufio.NewReader(c)
			h, err := ws.ReadHeader(br)
			if err != nil {
				return // still held: no close frame
			}
			p := make([]byte, h.Length)
			if _, err := br.Read(p); err == nil && h.OpCode == ws.OpClose {
				codes[i], _ = ws.ParseCloseFrameData(p)
			}
		}()
	}
	// Every fragment has been read by now, so the count is settled.
	waitFor(t, 10*time.Second, func() bool {
		return srv.Stats().InboundBuffered.Load()+srv.Stats().InboundBudgetCloses.Load()*half >= conns*half-half
	})
	echoOnce(t, other, "still served")

	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapInuse) - int64(before.HeapInuse); grew > 32<<20 {
		t.Fatalf("heap grew by %d MiB with a %d MiB inbound budget", grew>>20, budget>>20)
	}
	if held := srv.Stats().InboundBuffered.Load(); held > budget {
		t.Fatalf("%d bytes held, over the %d-byte budget", held, budget)
	}
	wg.Wait()
	closed := 0
	for _, code := range codes {
		switch code {
		case 0:
		case ws.StatusPolicyViolation:
			closed++
		default:
			t.Fatalf("closed with %d, want 1008", code)
		}
	}
	if kept := conns - closed; kept > budget/half || kept < budget/half/2 {
		t.Fatalf("%d connections kept their half message, %d closed; the budget holds %d", kept, closed, budget/half)
	}
	if got := srv.Stats().InboundBudgetCloses.Load(); got != int64(closed) {
		t.Fatalf("InboundBudgetCloses = %d, %d clients read the close", got, closed)
	}
	// The count follows the connections down.
	for _, c := range cs {
		c.Close()
	}
	waitFor(t, 5*time.Second, func() bool { return srv.Stats().InboundBuffered.Load() == 0 })
	// A completed message gives its bytes back too.
	c := dial(t, srv, "/echo")
	if _, err := c.Write(frame); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool { return srv.Stats().InboundBuffered.Load() == half })
	last := append([]byte{0x80, 0x80 | 127}, binary.BigEndian.AppendUint64(nil, half)...)
	last = append(append(last, mask[:]...), payload...)
	if _, err := c.Write(last); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool { return srv.Stats().InboundBuffered.Load() == 0 })
	t.Logf("%d of %d closed at the budget; heap grew %d MiB", closed, conns, (int64(after.HeapInuse)-int64(before.HeapInuse))>>20)
}
