package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/gobwas/ws"

	"github.com/herald-ws/herald/broker"
	"github.com/herald-ws/herald/session"
)

// recConn records what a session writes after its upgrade, and how many
// writes it took. accept bounds what one write takes (negative: all), so
// a test can make a session fall behind.
type recConn struct {
	fakeConn
	out    []byte
	writes int
	accept atomic.Int64
	record bool
	peek   func() // called at each write, when set
}

func (c *recConn) Write(p []byte) (int, error) {
	if c.peek != nil {
		c.peek()
	}
	n := len(p)
	if a := c.accept.Load(); a >= 0 && int64(n) > a {
		n = int(a)
	}
	if c.record && n > 0 {
		c.out = append(c.out, p[:n]...)
		c.writes++
	}
	return n, nil
}

// message is one delivered publication, as a client reads it.
type message struct {
	Op      string `json:"op"`
	Channel string `json:"channel"`
	Offset  uint64 `json:"offset"`
}

// messages parses the frames c received.
func (c *recConn) messages(t *testing.T) []message {
	t.Helper()
	r := bytes.NewReader(c.out)
	var out []message
	for r.Len() > 0 {
		h, err := ws.ReadHeader(r)
		if err != nil {
			t.Fatalf("frame header: %v", err)
		}
		payload := make([]byte, h.Length)
		if _, err := io.ReadFull(r, payload); err != nil {
			t.Fatalf("frame payload: %v", err)
		}
		var m message
		if err := json.Unmarshal(payload, &m); err != nil {
			t.Fatalf("payload %q: %v", payload, err)
		}
		out = append(out, m)
	}
	return out
}

// recSessions opens n sessions on a fake loop, each on a recConn that
// takes everything.
func recSessions(t *testing.T, n int, writeLimit int) (*fakeLoop, []*session.Session, []*recConn) {
	t.Helper()
	fl := &fakeLoop{}
	cfg := &session.Config{Routes: map[string]session.Handler{"/ws": nopHandler{}}, WriteBufferLimit: writeLimit}
	loop := session.NewLoop(cfg, &session.Stats{}, fl.exec)
	sessions := make([]*session.Session, n)
	conns := make([]*recConn, n)
	for i := range sessions {
		c := &recConn{fakeConn: fakeConn{in: []byte(upgradeRequest)}}
		c.accept.Store(-1)
		s := new(session.Session)
		s.Init(c, loop, time.Now())
		if s.HandleTraffic(time.Now()); s.State() != session.StateOpen {
			t.Fatalf("session %d did not open", i)
		}
		c.record = true
		sessions[i], conns[i] = s, c
	}
	return fl, sessions, conns
}

// TestCoalescedDeliveryIsOrderedAndExactlyOnce: publications on many
// channels, delivered concurrently to subscribers on three loops that
// drain while publishing goes on, reach every subscriber of each channel
// exactly once and in offset order, and no other; a batch queued while a
// loop was busy reaches each subscriber in one write.
func TestCoalescedDeliveryIsOrderedAndExactlyOnce(t *testing.T) {
	const (
		loops     = 3
		perLoop   = 12
		channels  = 8
		perChan   = 400
		burstSize = 25
	)
	h := New(Config{Broker: broker.NewMemory(broker.MemoryConfig{})})
	defer h.Close()
	type sub struct {
		conn  *recConn
		chans map[string]bool
	}
	var (
		fls  []*fakeLoop
		subs []sub
	)
	rng := rand.New(rand.NewPCG(1, 2))
	for range loops {
		fl, sessions, conns := recSessions(t, perLoop, 64<<20)
		for i, s := range sessions {
			chans := map[string]bool{}
			for c := range channels {
				if rng.IntN(2) == 0 || (c == i%channels) {
					name := fmt.Sprintf("c%d", c)
					chans[name] = true
					h.Subscribe(s, name, nil, func(SubscribeResult) {})
				}
			}
			subs = append(subs, sub{conns[i], chans})
		}
		fl.run()
		fls = append(fls, fl)
	}
	base := map[string]uint64{}
	for c := range channels {
		name := fmt.Sprintf("c%d", c)
		base[name] = topOf(h, name)
	}

	// Phase 1: the loops drain while the publishers publish.
	stop := make(chan struct{})
	var loopsDone sync.WaitGroup
	for _, fl := range fls {
		loopsDone.Add(1)
		go func() {
			defer loopsDone.Done()
			for {
				select {
				case <-stop:
					for fl.run() > 0 {
					}
					return
				default:
					if fl.run() == 0 {
						time.Sleep(50 * time.Microsecond)
					}
				}
			}
		}()
	}
	var pubs sync.WaitGroup
	for c := range channels {
		pubs.Add(1)
		go func() {
			defer pubs.Done()
			name := fmt.Sprintf("c%d", c)
			for i := range perChan - burstSize {
				h.Deliver(broker.Publication{Channel: name, Offset: base[name] + uint64(i+1), Data: []byte(`{"n":1}`), Time: time.Now()})
			}
		}()
	}
	pubs.Wait()
	close(stop)
	loopsDone.Wait()

	// Phase 2: the loops are busy (not draining) while a burst is queued;
	// one drain then writes each subscriber's part of the burst at once.
	writesBefore := make([]int, len(subs))
	for i, s := range subs {
		writesBefore[i] = s.conn.writes
	}
	for c := range channels {
		name := fmt.Sprintf("c%d", c)
		for i := perChan - burstSize; i < perChan; i++ {
			h.Deliver(broker.Publication{Channel: name, Offset: base[name] + uint64(i+1), Data: []byte(`{"n":1}`)})
		}
	}
	for _, fl := range fls {
		if n := fl.run(); n != 1 {
			t.Fatalf("a burst queued for a busy loop took %d drains, want 1", n)
		}
	}
	for i, s := range subs {
		if w := s.conn.writes - writesBefore[i]; w != 1 {
			t.Fatalf("subscriber %d got the burst of %d publications in %d writes, want 1", i, burstSize*len(s.chans), w)
		}
	}

	for i, s := range subs {
		next := map[string]uint64{}
		for _, m := range s.conn.messages(t) {
			if !s.chans[m.Channel] {
				t.Fatalf("subscriber %d got %s, which it did not subscribe to", i, m.Channel)
			}
			want := base[m.Channel] + next[m.Channel] + 1
			if m.Offset != want {
				t.Fatalf("subscriber %d, %s: offset %d, want %d (lost, duplicated or reordered)", i, m.Channel, m.Offset, want)
			}
			next[m.Channel]++
		}
		for ch := range s.chans {
			if next[ch] != perChan {
				t.Fatalf("subscriber %d, %s: %d publications, want %d", i, ch, next[ch], perChan)
			}
		}
	}
	if st := h.Stats(); st.Overflows != 0 || st.Conflated != 0 {
		t.Fatalf("stats %+v: nothing should have overflowed or been conflated", st)
	}
}

// TestAdmitRefusesWhileALoopIsBehind: once a loop's inbox reaches its
// high-water mark, Admit waits for its bound and refuses, Overloaded says
// so at once, channels the loop does not deliver are not held back, and a
// drain lets a waiting Admit through.
func TestAdmitRefusesWhileALoopIsBehind(t *testing.T) {
	h := New(Config{Broker: broker.NewMemory(broker.MemoryConfig{}), InboxPublications: 16, AdmitWait: 100 * time.Millisecond})
	defer h.Close()
	fl, sessions, _ := recSessions(t, 2, 1<<20)
	h.Subscribe(sessions[0], "busy", nil, func(SubscribeResult) {})
	fl.run()
	base := topOf(h, "busy")
	ctx := context.Background()
	for i := range 11 {
		h.Deliver(broker.Publication{Channel: "busy", Offset: base + uint64(i+1), Data: []byte(`1`)})
		if err := h.Admit(ctx, "busy"); err != nil {
			t.Fatalf("refused below the high-water mark (%d queued): %v", i+1, err)
		}
	}
	h.Deliver(broker.Publication{Channel: "busy", Offset: base + 12, Data: []byte(`1`)}) // 12 = 3/4 of 16
	if err := h.Admit(ctx, "busy"); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("Admit at the high-water mark = %v, want ErrOverloaded", err)
	}
	if !h.Overloaded("busy") {
		t.Fatal("Overloaded = false at the high-water mark")
	}
	if err := h.Admit(ctx, "elsewhere"); err != nil || h.Overloaded("elsewhere") {
		t.Fatalf("a channel without subscribers on the busy loop was held back: %v", err)
	}
	// A caller's own deadline ends the wait too.
	short, cancel := context.WithTimeout(ctx, time.Millisecond)
	defer cancel()
	if err := h.Admit(short, "busy"); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("Admit past the caller's deadline = %v, want ErrOverloaded", err)
	}
	if got := h.Stats().Refused; got != 3 {
		t.Fatalf("Refused = %d, want 3", got)
	}

	h2 := New(Config{Broker: broker.NewMemory(broker.MemoryConfig{}), InboxPublications: 16, AdmitWait: time.Minute})
	defer h2.Close()
	fl2, sessions2, _ := recSessions(t, 1, 1<<20)
	h2.Subscribe(sessions2[0], "busy", nil, func(SubscribeResult) {})
	fl2.run()
	base = topOf(h2, "busy")
	for i := range 12 {
		h2.Deliver(broker.Publication{Channel: "busy", Offset: base + uint64(i+1), Data: []byte(`1`)})
	}
	admitted := make(chan error, 1)
	go func() { admitted <- h2.Admit(ctx, "busy") }()
	select {
	case err := <-admitted:
		t.Fatalf("Admit returned %v while the loop was still behind", err)
	case <-time.After(50 * time.Millisecond):
	}
	fl2.run()
	select {
	case err := <-admitted:
		if err != nil {
			t.Fatalf("Admit after the drain = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the drain did not wake the waiting Admit")
	}
}

// TestInboxBoundHoldsAtAnyRate: a loop that never drains while thousands
// of publications arrive keeps its inbox within both bounds; what did not
// fit is recovered from history once the loop runs, so the subscriber
// still gets every publication exactly once and in order.
func TestInboxBoundHoldsAtAnyRate(t *testing.T) {
	const (
		pubs      = 3000
		maxPubs   = 64
		maxBytes  = 16 << 10
		dataBytes = 900
	)
	mem := broker.NewMemory(broker.MemoryConfig{HistorySize: pubs + 10})
	h := New(Config{Broker: mem, InboxPublications: maxPubs, InboxBytes: maxBytes})
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	fl, sessions, conns := recSessions(t, 1, 64<<20)
	h.Subscribe(sessions[0], "flood", nil, func(SubscribeResult) {})
	fl.run()
	data := []byte(`"` + string(bytes.Repeat([]byte("x"), dataBytes)) + `"`)
	first := uint64(0)
	for i := range pubs {
		res, err := mem.Publish(context.Background(), "flood", data, broker.PublishOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = res.Offset
		}
		for _, in := range h.Inboxes() {
			if in.Publications > maxPubs || in.Bytes > maxBytes+int64(dataBytes)+200 {
				t.Fatalf("inbox at %d publications, %d bytes: past its bounds (%d, %d)", in.Publications, in.Bytes, maxPubs, maxBytes)
			}
		}
	}
	if h.Stats().Overflows == 0 {
		t.Fatal("no overflow counted: the test did not fill the inbox")
	}
	// Let the loop run until the recovery from history is done.
	deadline := time.Now().Add(10 * time.Second)
	for {
		fl.run()
		if ms := conns[0].messages(t); len(ms) > 0 && ms[len(ms)-1].Offset >= first+pubs-1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("subscriber has %d publications after 10 s, want %d", len(conns[0].messages(t)), pubs)
		}
		time.Sleep(time.Millisecond)
	}
	ms := conns[0].messages(t)
	if len(ms) != pubs {
		t.Fatalf("subscriber got %d publications, want %d", len(ms), pubs)
	}
	for i, m := range ms {
		if m.Offset < first || (i > 0 && m.Offset <= ms[i-1].Offset) {
			t.Fatalf("publication %d has offset %d after %d: duplicated or reordered", i, m.Offset, ms[max(i-1, 0)].Offset)
		}
	}
}

// TestConflationDeliversNewestToSubscribersBehind: on a conflated channel,
// a subscriber whose socket has a backlog gets only the newest publication
// of a batch, with its true offset (so it sees what it skipped), while a
// subscriber that keeps up gets every one; a channel that is not conflated
// gives the subscriber behind everything.
func TestConflationDeliversNewestToSubscribersBehind(t *testing.T) {
	h := New(Config{
		Broker:   broker.NewMemory(broker.MemoryConfig{}),
		Conflate: func(ch string) bool { return ch == "ticker:x" },
	})
	defer h.Close()
	fl, sessions, conns := recSessions(t, 2, 8<<20)
	fast, slow := conns[0], conns[1]
	for _, s := range sessions {
		h.Subscribe(s, "ticker:x", nil, func(SubscribeResult) {})
		h.Subscribe(s, "plain", nil, func(SubscribeResult) {})
	}
	fl.run()
	tb, pb := topOf(h, "ticker:x"), topOf(h, "plain")
	slow.accept.Store(0) // the slow subscriber's socket takes nothing
	h.Deliver(broker.Publication{Channel: "ticker:x", Offset: tb + 1, Data: []byte(`1`)})
	fl.run()
	if !sessions[1].Behind() {
		t.Fatal("the slow subscriber is not behind")
	}
	const batch = 50
	for i := 2; i <= batch; i++ {
		h.Deliver(broker.Publication{Channel: "ticker:x", Offset: tb + uint64(i), Data: []byte(`1`)})
		h.Deliver(broker.Publication{Channel: "plain", Offset: pb + uint64(i), Data: []byte(`1`)})
	}
	fl.run()
	slow.accept.Store(-1)
	sessions[1].OnWritable()

	count := func(ms []message, ch string) (offs []uint64) {
		for _, m := range ms {
			if m.Channel == ch {
				offs = append(offs, m.Offset-map[string]uint64{"ticker:x": tb, "plain": pb}[ch])
			}
		}
		return offs
	}
	if got := count(fast.messages(t), "ticker:x"); len(got) != batch {
		t.Fatalf("the subscriber that keeps up got %d of %d ticker publications", len(got), batch)
	}
	if got := count(slow.messages(t), "ticker:x"); fmt.Sprint(got) != "[1 50]" {
		t.Fatalf("the subscriber behind got ticker offsets %v, want [1 50] (the first, then only the newest)", got)
	}
	if got := count(slow.messages(t), "plain"); len(got) != batch-1 {
		t.Fatalf("the subscriber behind got %d of %d publications of a channel that is not conflated", len(got), batch-1)
	}
	if got := h.Stats().Conflated; got != batch-2 {
		t.Fatalf("Conflated = %d, want %d", got, batch-2)
	}
}

// TestCompressionOnlyForDeflateSubscribers: with compression on, a
// publication is compressed only when a subscriber negotiated
// permessage-deflate, and then once, however many such subscribers.
func TestCompressionOnlyForDeflateSubscribers(t *testing.T) {
	h := New(Config{Broker: broker.NewMemory(broker.MemoryConfig{}), Compression: true, CompressionMinSize: 1})
	defer h.Close()
	fl := &fakeLoop{}
	cfg := &session.Config{Routes: map[string]session.Handler{"/ws": nopHandler{}}, WriteBufferLimit: 1 << 20, Compression: true}
	loop := session.NewLoop(cfg, &session.Stats{}, fl.exec)
	open := func(req string) *recConn {
		c := &recConn{fakeConn: fakeConn{in: []byte(req)}}
		c.accept.Store(-1)
		s := new(session.Session)
		s.Init(c, loop, time.Now())
		if s.HandleTraffic(time.Now()); s.State() != session.StateOpen {
			t.Fatal("session did not open")
		}
		c.record = true
		h.Subscribe(s, "z", nil, func(SubscribeResult) {})
		return c
	}
	plain := open(upgradeRequest)
	fl.run()
	base := topOf(h, "z")
	data := []byte(`"` + string(bytes.Repeat([]byte("compressible "), 40)) + `"`)
	before := Compressions.Load()
	for i := range 10 {
		h.Deliver(broker.Publication{Channel: "z", Offset: base + uint64(i+1), Data: data})
		fl.run()
	}
	if got := Compressions.Load() - before; got != 0 {
		t.Fatalf("%d publications compressed with no deflate subscriber", got)
	}
	deflateReq := strings.Replace(upgradeRequest, "\r\n\r\n", "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n", 1)
	d1, d2 := open(deflateReq), open(deflateReq)
	fl.run()
	before = Compressions.Load()
	for i := 10; i < 20; i++ {
		h.Deliver(broker.Publication{Channel: "z", Offset: base + uint64(i+1), Data: data})
		fl.run()
	}
	if got := Compressions.Load() - before; got != 10 {
		t.Fatalf("%d compressions for 10 publications to two deflate subscribers, want 10 (once each)", got)
	}
	for name, c := range map[string]*recConn{"deflate 1": d1, "deflate 2": d2} {
		r := bytes.NewReader(c.out)
		frames := 0
		for r.Len() > 0 {
			hd, err := ws.ReadHeader(r)
			if err != nil {
				t.Fatal(err)
			}
			if !hd.Rsv1() {
				t.Fatalf("%s got an uncompressed frame", name)
			}
			if _, err := r.Seek(hd.Length, io.SeekCurrent); err != nil {
				t.Fatal(err)
			}
			frames++
		}
		if frames != 10 {
			t.Fatalf("%s got %d frames, want 10", name, frames)
		}
	}
	if n := len(plain.messages(t)); n != 20 {
		t.Fatalf("the plain subscriber got %d messages, want 20", n)
	}
}

// TestLoopSubsSize: a node holds one loopSubs per channel per loop; it
// must stay in the 48-byte size class (an empty channel with one
// subscriber costs at most 300 B in all).
func TestLoopSubsSize(t *testing.T) {
	if n := unsafe.Sizeof(loopSubs{}); n > 48 {
		t.Fatalf("loopSubs is %d bytes, want at most 48", n)
	}
}

// TestDrainGatherBudget: a batch of one channel too large to hold corked
// for every subscriber at once (150 subscribers x 60 KiB, over twice
// DrainGatherBudget) still reaches each subscriber in one write, in
// order: the drain goes subscriber by subscriber, so what it writes early
// when the budget fills is whole parts of the batch, and the corked
// sessions never hold more than the budget and one connection's
// GatherLimit at once. (Before, the budget cut the batch across all
// subscribers, and each got it in two writes.)
func TestDrainGatherBudget(t *testing.T) {
	const (
		subs = 150
		pubs = 60
	)
	h := New(Config{Broker: broker.NewMemory(broker.MemoryConfig{})})
	defer h.Close()
	fl, sessions, conns := recSessions(t, subs, 64<<20)
	maxHeld := 0
	for _, c := range conns {
		c.peek = func() {
			sum := 0
			for _, s := range sessions {
				sum += s.Backlog()
			}
			maxHeld = max(maxHeld, sum)
		}
	}
	for _, s := range sessions {
		h.Subscribe(s, "big", nil, func(SubscribeResult) {})
	}
	fl.run()
	base := topOf(h, "big")
	data := []byte(`"` + string(bytes.Repeat([]byte("y"), 1000)) + `"`)
	for i := range pubs {
		h.Deliver(broker.Publication{Channel: "big", Offset: base + uint64(i+1), Data: data})
	}
	maxHeld = 0
	fl.run()
	frame := len(conns[0].out) / pubs
	total := subs * pubs * frame
	if total <= 2*DrainGatherBudget || pubs*frame >= session.GatherLimit {
		t.Fatalf("test set-up: %d bytes in all, %d per subscriber", total, pubs*frame)
	}
	for i, c := range conns {
		if c.writes != 1 {
			t.Fatalf("subscriber %d: %d writes for the batch, want 1", i, c.writes)
		}
		ms := c.messages(t)
		if len(ms) != pubs {
			t.Fatalf("subscriber %d got %d of %d", i, len(ms), pubs)
		}
		for j, m := range ms {
			if m.Offset != base+uint64(j+1) {
				t.Fatalf("subscriber %d: message %d has offset %d", i, j, m.Offset)
			}
		}
	}
	if maxHeld == 0 || maxHeld > DrainGatherBudget+session.GatherLimit {
		t.Fatalf("corked sessions held %d bytes at once, bound %d", maxHeld, DrainGatherBudget+session.GatherLimit)
	}
}

// TestDrainKeepsConnectionOrderAcrossChannels: a batch that interleaves
// two channels reaches a subscriber of both in the order the publications
// were queued, in one write, while a subscriber of one gets its own
// channel's in order.
func TestDrainKeepsConnectionOrderAcrossChannels(t *testing.T) {
	h := New(Config{Broker: broker.NewMemory(broker.MemoryConfig{})})
	defer h.Close()
	fl, sessions, conns := recSessions(t, 2, 64<<20)
	h.Subscribe(sessions[0], "a", nil, func(SubscribeResult) {})
	h.Subscribe(sessions[0], "b", nil, func(SubscribeResult) {})
	h.Subscribe(sessions[1], "a", nil, func(SubscribeResult) {})
	fl.run()
	ba, bb := topOf(h, "a"), topOf(h, "b")
	order := "aabaabbba"
	var na, nb uint64
	for _, c := range order {
		if c == 'a' {
			na++
			h.Deliver(broker.Publication{Channel: "a", Offset: ba + na, Data: []byte(`1`)})
		} else {
			nb++
			h.Deliver(broker.Publication{Channel: "b", Offset: bb + nb, Data: []byte(`1`)})
		}
	}
	for _, c := range conns {
		c.writes = 0
	}
	fl.run()
	got := ""
	for _, m := range conns[0].messages(t) {
		got += m.Channel
	}
	if got != order || conns[0].writes != 1 {
		t.Fatalf("subscriber of both got %q in %d writes, want %q in 1", got, conns[0].writes, order)
	}
	ms := conns[1].messages(t)
	if len(ms) != int(na) || conns[1].writes != 1 {
		t.Fatalf("subscriber of a got %d in %d writes, want %d in 1", len(ms), conns[1].writes, na)
	}
	for j, m := range ms {
		if m.Channel != "a" || m.Offset != ba+uint64(j+1) {
			t.Fatalf("subscriber of a: message %d is %s@%d", j, m.Channel, m.Offset)
		}
	}
}

// TestDrainDeliversLateArrivalsEarly: a publication of the drained
// channel queued while the drain is under way reaches the subscribers the
// drain has still to visit in the same drain, and the others in the next
// one, each exactly once and in order; one of another channel queued
// before it keeps it for the next drain, so that a subscriber of both gets
// them in the order they were queued.
func TestDrainDeliversLateArrivalsEarly(t *testing.T) {
	const subs = 200
	for _, tc := range []struct {
		name      string
		inject    []string // channels published while the first drain writes
		wantEarly int      // subscribers of "a" that get the late one in the first drain
	}{
		{"same channel", []string{"a"}, subs - peekEvery},
		{"another channel first", []string{"b", "a"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := New(Config{Broker: broker.NewMemory(broker.MemoryConfig{})})
			defer h.Close()
			fl, sessions, conns := recSessions(t, subs, 64<<20)
			for _, s := range sessions {
				h.Subscribe(s, "a", nil, func(SubscribeResult) {})
			}
			h.Subscribe(sessions[0], "b", nil, func(SubscribeResult) {}) // a subscriber of both
			fl.run()
			base := map[string]uint64{"a": topOf(h, "a"), "b": topOf(h, "b")}
			next := map[string]uint64{}
			publish := func(ch string) {
				next[ch]++
				h.Deliver(broker.Publication{Channel: ch, Offset: base[ch] + next[ch], Data: []byte(`1`)})
			}
			writes := 0
			for _, c := range conns {
				c.writes, c.out = 0, nil
				c.peek = func() {
					if writes++; writes == 10 {
						for _, ch := range tc.inject {
							publish(ch)
						}
					}
				}
			}
			publish("a")
			if n := fl.run(); n != 1 {
				t.Fatalf("%d tasks ran, want the one drain", n)
			}
			early := 0
			for i, c := range conns {
				switch ms := c.messages(t); len(ms) {
				case 1:
				case 2:
					if ms[1].Channel != "a" || c.writes != 1 {
						t.Fatalf("subscriber %d got %+v in %d writes", i, ms, c.writes)
					}
					early++
				default:
					t.Fatalf("subscriber %d got %d messages in the first drain", i, len(ms))
				}
			}
			if early != tc.wantEarly {
				t.Fatalf("%d subscribers got the late publication in the drain under way, want %d", early, tc.wantEarly)
			}
			fl.run()
			if n := fl.run(); n != 0 {
				t.Fatalf("%d more tasks after the second drain", n)
			}
			for i, c := range conns {
				ms := c.messages(t)
				var got []string
				for _, m := range ms {
					got = append(got, fmt.Sprintf("%s%d", m.Channel, m.Offset-base[m.Channel]))
				}
				want := "[a1 a2]"
				if i == 0 && len(tc.inject) == 2 {
					want = "[a1 b1 a2]"
				}
				if fmt.Sprint(got) != want {
					t.Fatalf("subscriber %d got %v, want %s", i, got, want)
				}
			}
		})
	}
}
