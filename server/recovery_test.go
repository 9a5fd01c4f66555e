package server_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/herald-ws/herald/internal/testutil"
	"github.com/herald-ws/herald/server"
)

// livePublisher publishes to channel until stopped, recording what each
// offset carries.
type livePublisher struct {
	mu   sync.Mutex
	data map[uint64]string
	last uint64
	err  error
	stop chan struct{}
	done chan struct{}
}

func startLivePublisher(n *server.Node, channel string) *livePublisher {
	p := &livePublisher{data: map[uint64]string{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for i := 0; ; i++ {
			select {
			case <-p.stop:
				return
			default:
			}
			d := fmt.Sprintf(`"live-%d"`, i)
			off, err := testutil.PublishKey(n, "", channel, d)
			p.mu.Lock()
			if err != nil {
				p.err = err
				p.mu.Unlock()
				return
			}
			p.data[off] = d
			p.last = off
			p.mu.Unlock()
			time.Sleep(time.Millisecond)
		}
	}()
	return p
}

// halt stops the publisher and returns the last offset it published.
func (p *livePublisher) halt(t *testing.T) uint64 {
	t.Helper()
	close(p.stop)
	<-p.done
	if p.err != nil {
		t.Fatalf("live publisher: %v", p.err)
	}
	return p.last
}

func (p *livePublisher) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.data)
}

func TestRecoveryAfterReconnect(t *testing.T) {
	t.Parallel()
	for _, watcher := range []bool{false, true} {
		t.Run(fmt.Sprintf("watcher=%v", watcher), func(t *testing.T) {
			testRecovery(t, watcher)
		})
	}
}

// testRecovery: a client misses 100 messages while away, then resubscribes
// with since while publications keep coming. With watcher, another
// connection stays subscribed all along, so the channel never loses the
// node's interest and live deliveries race the recovery on the same loops.
func testRecovery(t *testing.T, watcher bool) {
	const missed = 100
	n := testutil.StartNode(t, testutil.NodeOptions{})
	var w *testutil.WSClient
	if watcher {
		w = testutil.DialWS(t, n, "", nil)
		w.Subscribe("rec", 1)
	}
	data := map[uint64]string{}
	c1 := testutil.DialWS(t, n, "", nil)
	c1.Subscribe("rec", 1)
	var last uint64
	for i := range 3 {
		d := fmt.Sprintf(`"seen-%d"`, i)
		last = testutil.Publish(t, n, "rec", d)
		data[last] = d
		wantRaw(t, c1.Read(), messageFrame("rec", last, d))
	}
	_ = c1.Conn.Close()

	for i := range missed {
		d := fmt.Sprintf(`{"missed":%d}`, i)
		data[testutil.Publish(t, n, "rec", d)] = d
	}
	top := last + missed

	live := startLivePublisher(n, "rec")
	defer func() {
		select {
		case <-live.done:
		default:
			live.halt(t)
		}
	}()
	for live.count() < 5 { // make sure publications are flowing
		time.Sleep(time.Millisecond)
	}
	c2 := testutil.DialWS(t, n, "", nil)
	c2.Send(fmt.Sprintf(`{"op":"subscribe","channel":"rec","since":%d,"id":2}`, last))
	ack := c2.ExpectAck(2)
	if ack.Recovered == nil || !*ack.Recovered || ack.Offset < top+5 {
		t.Fatalf("ack %s: want recovered:true and an offset of at least %d", ack.Raw, top+5)
	}
	wantRaw(t, ack, fmt.Sprintf(`{"op":"ack","id":2,"offset":%d,"recovered":true}`, ack.Offset))

	// Read the replay and at least 50 live messages past the ack, then stop
	// the publisher and drain up to its last offset.
	var got []testutil.Msg
	want := last + 1
	read := func(until uint64) {
		for want <= until {
			m := c2.ExpectMessage("rec")
			if m.Offset != want {
				t.Fatalf("after %d messages: got offset %d, want %d (gap or duplicate): %s", len(got), m.Offset, want, m.Raw)
			}
			got = append(got, m)
			want++
		}
	}
	read(ack.Offset + 50)
	final := live.halt(t)
	read(final)
	for k, v := range live.data {
		data[k] = v
	}
	for i, m := range got {
		d, ok := data[m.Offset]
		if !ok || string(m.Data) != d {
			t.Fatalf("message %d at offset %d carries %s, want %s", i, m.Offset, m.Data, d)
		}
		if i < missed && string(m.Data) != fmt.Sprintf(`{"missed":%d}`, i) {
			t.Fatalf("replay %d is %s", i, m.Raw)
		}
	}
	if len(got) < missed+50 {
		t.Fatalf("got %d messages", len(got))
	}
	fence(t, n, c2, "rec")
	if watcher {
		// The watcher saw everything from its subscribe on, contiguously.
		for off := last - 2; off <= final+1; off++ {
			if m := w.ExpectMessage("rec"); m.Offset != off {
				t.Fatalf("watcher: offset %d, want %d", m.Offset, off)
			}
		}
	}
}

func TestRecoveryPastHistory(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{HistorySize: 10})
	c1 := testutil.DialWS(t, n, "", nil)
	c1.Subscribe("short", 1)
	last := testutil.Publish(t, n, "short", `"seen"`)
	c1.ExpectMessage("short")
	_ = c1.Conn.Close()
	for i := range 50 {
		testutil.Publish(t, n, "short", fmt.Sprint(i))
	}
	top := last + 50

	c2 := testutil.DialWS(t, n, "", nil)
	c2.Send(fmt.Sprintf(`{"op":"subscribe","channel":"short","since":%d,"id":3}`, last))
	wantRaw(t, c2.Read(), fmt.Sprintf(`{"op":"ack","id":3,"offset":%d,"recovered":false}`, top))
	// What history still holds comes next, oldest first: the last ten.
	for i := 40; i < 50; i++ {
		wantRaw(t, c2.Read(), messageFrame("short", last+1+uint64(i), fmt.Sprint(i)))
	}
	fence(t, n, c2, "short")

	// An offset from before the channel existed cannot be vouched for.
	c3 := testutil.DialWS(t, n, "", nil)
	c3.Send(`{"op":"subscribe","channel":"brand-new","since":1,"id":4}`)
	m := c3.ExpectAck(4)
	if m.Recovered == nil || *m.Recovered {
		t.Fatalf("ack %s: want recovered:false for an offset older than the channel", m.Raw)
	}
	fence(t, n, c3, "brand-new")
}

func TestRecoveryAtTop(t *testing.T) {
	t.Parallel()
	n := testutil.StartNode(t, testutil.NodeOptions{})
	c1 := testutil.DialWS(t, n, "", nil)
	top := c1.Subscribe("top", 1)
	// c1 stays subscribed: a channel nobody subscribes to and that holds no
	// history is forgotten at once, and an offset from before it was
	// forgotten is then answered (conservatively) with recovered:false.
	defer c1.Conn.Close()

	// since equal to the top of a channel without publications.
	c2 := testutil.DialWS(t, n, "", nil)
	c2.Send(fmt.Sprintf(`{"op":"subscribe","channel":"top","since":%d,"id":2}`, top))
	wantRaw(t, c2.Read(), fmt.Sprintf(`{"op":"ack","id":2,"offset":%d,"recovered":true}`, top))
	for i := range 3 {
		off := testutil.Publish(t, n, "top", fmt.Sprint(i))
		if off != top+1+uint64(i) {
			t.Fatalf("offset %d, want %d", off, top+1+uint64(i))
		}
		wantRaw(t, c2.Read(), messageFrame("top", off, fmt.Sprint(i)))
	}
	top += 3
	_ = c2.Conn.Close()

	// since equal to the top after publications: nothing is replayed.
	c3 := testutil.DialWS(t, n, "", nil)
	c3.Send(fmt.Sprintf(`{"op":"subscribe","channel":"top","since":%d,"id":3}`, top))
	wantRaw(t, c3.Read(), fmt.Sprintf(`{"op":"ack","id":3,"offset":%d,"recovered":true}`, top))
	fence(t, n, c3, "top")

	// since one behind the top replays exactly one.
	c4 := testutil.DialWS(t, n, "", nil)
	c4.Send(fmt.Sprintf(`{"op":"subscribe","channel":"top","since":%d,"id":4}`, top))
	wantRaw(t, c4.Read(), fmt.Sprintf(`{"op":"ack","id":4,"offset":%d,"recovered":true}`, top+1))
	wantRaw(t, c4.Read(), messageFrame("top", top+1, `"fence"`))
	fence(t, n, c4, "top")
}
