package broker

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"
)

// collector records deliveries; Deliver may run on any publisher's
// goroutine.
type collector struct {
	mu   sync.Mutex
	pubs []Publication
}

func (c *collector) deliver(p Publication) {
	c.mu.Lock()
	c.pubs = append(c.pubs, p)
	c.mu.Unlock()
}

func (c *collector) take() []Publication {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.pubs
	c.pubs = nil
	return out
}

func startMemory(t *testing.T, cfg MemoryConfig) (*Memory, *collector) {
	t.Helper()
	m := NewMemory(cfg)
	c := &collector{}
	if err := m.Start(c.deliver); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m, c
}

func publish(t *testing.T, m *Memory, channel string, data string) uint64 {
	t.Helper()
	res, err := m.Publish(context.Background(), channel, []byte(data), PublishOptions{})
	if err != nil {
		t.Fatalf("Publish(%q): %v", channel, err)
	}
	return res.Offset
}

func recoverFrom(t *testing.T, m *Memory, channel string, since uint64, history bool) Recovery {
	t.Helper()
	r, err := m.Recover(context.Background(), channel, since, history)
	if err != nil {
		t.Fatalf("Recover(%q, %d): %v", channel, since, err)
	}
	return r
}

// offsets lists the offsets of pubs relative to start.
func offsets(pubs []Publication, start uint64) []int64 {
	out := []int64{}
	for _, p := range pubs {
		out = append(out, int64(p.Offset-start))
	}
	return out
}

func equal(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// age moves the publication times of channel back by d, as if they had been
// published d earlier.
func age(m *Memory, channel string, d time.Duration) {
	ch := m.channel(channel, false)
	ch.mu.Lock()
	defer ch.mu.Unlock()
	for i := range ch.ring {
		if !ch.ring[i].Time.IsZero() {
			ch.ring[i].Time = ch.ring[i].Time.Add(-d)
		}
	}
}

func TestMemoryOffsetsStartAtCreationTime(t *testing.T) {
	m, _ := startMemory(t, MemoryConfig{HistorySize: 4})
	before := uint64(time.Now().UnixMicro())
	start := recoverFrom(t, m, "news", 0, false).Top
	after := uint64(time.Now().UnixMicro())
	if start < before || start > after {
		t.Fatalf("empty channel's top %d, want its creation time in µs, within [%d, %d]", start, before, after)
	}
	for i := uint64(1); i <= 5; i++ {
		if off := publish(t, m, "news", strconv.FormatUint(i, 10)); off != start+i {
			t.Fatalf("publication %d got offset start+%d, want start+%d", i, int64(off-start), i)
		}
	}
	if top := recoverFrom(t, m, "news", 0, false).Top; top != start+5 {
		t.Fatalf("top start+%d, want start+5", int64(top-start))
	}
	// A channel created by Publish starts at its creation time too, and
	// channels count independently.
	before = uint64(time.Now().UnixMicro())
	off := publish(t, m, "sports", "1")
	after = uint64(time.Now().UnixMicro())
	if off < before+1 || off > after+1 {
		t.Fatalf("first offset of a new channel %d, want creation time + 1 within [%d, %d]", off, before+1, after+1)
	}
	if top := recoverFrom(t, m, "news", 0, false).Top; top != start+5 {
		t.Fatalf("publishing to another channel moved news to start+%d", int64(top-start))
	}
}

func TestMemoryHistoryAndRecover(t *testing.T) {
	m, _ := startMemory(t, MemoryConfig{HistorySize: 3})
	start := recoverFrom(t, m, "news", 0, false).Top
	for i := 1; i <= 5; i++ {
		publish(t, m, "news", strconv.Itoa(i))
	}
	// History holds start+3..start+5.
	for _, c := range []struct {
		name      string
		since     int64 // relative to start
		history   bool
		want      []int64
		recovered bool
	}{
		{"at top", 5, true, []int64{}, true},
		{"above top", 9, true, []int64{}, true},
		{"far above top", 1 << 40, true, []int64{}, true},
		{"one behind", 4, true, []int64{5}, true},
		{"at the oldest retained", 3, true, []int64{4, 5}, true},
		{"just before the oldest retained", 2, true, []int64{3, 4, 5}, true},
		{"older than the ring", 1, true, []int64{3, 4, 5}, false},
		{"at the channel's start", 0, true, []int64{3, 4, 5}, false},
		{"below the channel's start", -1, true, []int64{3, 4, 5}, false},
		{"offset zero", -int64(start), true, []int64{3, 4, 5}, false},
		{"no history asked", 1, false, []int64{}, true},
		{"no history asked, below start", -1, false, []int64{}, true},
	} {
		r := recoverFrom(t, m, "news", start+uint64(c.since), c.history)
		if r.Top != start+5 || r.Recovered != c.recovered || !equal(offsets(r.Publications, start), c.want) {
			t.Errorf("%s: Recover(start%+d) = top start%+d, offsets %v, recovered %v; want top start+5, %v, %v",
				c.name, c.since, int64(r.Top-start), offsets(r.Publications, start), r.Recovered, c.want, c.recovered)
		}
	}
	r := recoverFrom(t, m, "news", start, true)
	for i, p := range r.Publications {
		if want := strconv.Itoa(i + 3); p.Channel != "news" || string(p.Data) != want || p.Time.IsZero() {
			t.Errorf("publication %d = %q %q at %v, want news %q with a time", i, p.Channel, p.Data, p.Time, want)
		}
	}
}

func TestMemoryRecoverFullHistory(t *testing.T) {
	// While the ring has not wrapped, recovering from the start is complete.
	m, _ := startMemory(t, MemoryConfig{HistorySize: 8})
	start := recoverFrom(t, m, "news", 0, false).Top
	for i := 1; i <= 3; i++ {
		publish(t, m, "news", strconv.Itoa(i))
	}
	r := recoverFrom(t, m, "news", start, true)
	if !r.Recovered || !equal(offsets(r.Publications, start), []int64{1, 2, 3}) {
		t.Fatalf("Recover(start) = %v, recovered %v; want [1 2 3], true", offsets(r.Publications, start), r.Recovered)
	}
	// An empty channel recovers from its start with nothing missed.
	start = recoverFrom(t, m, "empty", 0, false).Top
	if r := recoverFrom(t, m, "empty", start, true); !r.Recovered || len(r.Publications) != 0 || r.Top != start {
		t.Fatalf("empty channel Recover(start) = %+v, want top start, recovered, nothing", r)
	}
	if r := recoverFrom(t, m, "empty", start-1, true); r.Recovered || len(r.Publications) != 0 {
		t.Fatalf("empty channel Recover(start-1) = %+v, want not recovered", r)
	}
}

func TestMemoryHistoryTTL(t *testing.T) {
	m, _ := startMemory(t, MemoryConfig{HistorySize: 10, HistoryTTL: time.Minute})
	start := recoverFrom(t, m, "news", 0, false).Top
	publish(t, m, "news", "1")
	publish(t, m, "news", "2")
	age(m, "news", 2*time.Minute)
	publish(t, m, "news", "3")
	publish(t, m, "news", "4")
	for _, c := range []struct {
		since     int64
		want      []int64
		recovered bool
	}{
		{0, []int64{3, 4}, false},
		{1, []int64{3, 4}, false},
		{2, []int64{3, 4}, true},
		{3, []int64{4}, true},
		{4, []int64{}, true},
	} {
		r := recoverFrom(t, m, "news", start+uint64(c.since), true)
		if !equal(offsets(r.Publications, start), c.want) || r.Recovered != c.recovered {
			t.Errorf("Recover(start+%d) = %v, recovered %v; want %v, %v", c.since, offsets(r.Publications, start), r.Recovered, c.want, c.recovered)
		}
	}
	// Once everything has expired, anything behind the top is lost.
	age(m, "news", 2*time.Minute)
	for _, since := range []int64{0, 3} {
		if r := recoverFrom(t, m, "news", start+uint64(since), true); len(r.Publications) != 0 || r.Recovered || r.Top != start+4 {
			t.Errorf("all expired: Recover(start+%d) = %v, recovered %v, top start%+d; want nothing, false, start+4",
				since, offsets(r.Publications, start), r.Recovered, int64(r.Top-start))
		}
	}
	if r := recoverFrom(t, m, "news", start+4, true); !r.Recovered {
		t.Errorf("all expired: Recover(top) not recovered; nothing was missed")
	}
}

func TestMemoryNoHistory(t *testing.T) {
	m, _ := startMemory(t, MemoryConfig{HistorySize: 0})
	start := recoverFrom(t, m, "news", 0, false).Top
	for i := 1; i <= 3; i++ {
		publish(t, m, "news", strconv.Itoa(i))
	}
	for _, c := range []struct {
		since     int64
		recovered bool
	}{{-1, false}, {0, false}, {2, false}, {3, true}, {4, true}} {
		r := recoverFrom(t, m, "news", start+uint64(c.since), true)
		if len(r.Publications) != 0 || r.Recovered != c.recovered || r.Top != start+3 {
			t.Errorf("Recover(start%+d) = %v, recovered %v, top start%+d; want nothing, %v, start+3",
				c.since, offsets(r.Publications, start), r.Recovered, int64(r.Top-start), c.recovered)
		}
	}
}

func TestMemoryDeliverOnlyWithInterest(t *testing.T) {
	m, c := startMemory(t, MemoryConfig{HistorySize: 4})
	publish(t, m, "news", "before")
	if got := c.take(); len(got) != 0 {
		t.Fatalf("delivered %d publications for a channel nobody subscribed to", len(got))
	}
	if err := m.Subscribe("news"); err != nil {
		t.Fatal(err)
	}
	off := publish(t, m, "news", `{"a":1}`)
	publish(t, m, "other", "x")
	got := c.take()
	if len(got) != 1 || got[0].Channel != "news" || got[0].Offset != off || string(got[0].Data) != `{"a":1}` {
		t.Fatalf("deliveries %+v, want one news publication at %d", got, off)
	}
	if err := m.Unsubscribe("news"); err != nil {
		t.Fatal(err)
	}
	publish(t, m, "news", "after")
	if got := c.take(); len(got) != 0 {
		t.Fatalf("delivered %+v after Unsubscribe", got)
	}
	// Unsubscribing a channel the broker never saw is harmless and creates
	// nothing.
	n := m.Channels()
	if err := m.Unsubscribe("never"); err != nil || m.Channels() != n {
		t.Fatalf("Unsubscribe(never) = %v, channels %d -> %d", err, n, m.Channels())
	}
}

func TestMemoryConcurrentPublishersDeliverInOrder(t *testing.T) {
	m, c := startMemory(t, MemoryConfig{HistorySize: 16})
	channels := []string{"a", "b", "c"}
	starts := map[string]uint64{}
	for _, ch := range channels {
		starts[ch] = recoverFrom(t, m, ch, 0, false).Top
		if ch != "c" {
			if err := m.Subscribe(ch); err != nil {
				t.Fatal(err)
			}
		}
	}
	const publishers, each = 8, 200
	var wg sync.WaitGroup
	for g := 0; g < publishers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				ch := channels[(g+i)%len(channels)]
				if _, err := m.Publish(context.Background(), ch, []byte(`1`), PublishOptions{}); err != nil {
					t.Errorf("Publish: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	next := map[string]uint64{"a": starts["a"] + 1, "b": starts["b"] + 1}
	for _, p := range c.take() {
		want, ok := next[p.Channel]
		if !ok {
			t.Fatalf("delivered a publication of %q, which has no interest", p.Channel)
		}
		if p.Offset != want {
			t.Fatalf("%s: delivered offset start+%d, want start+%d", p.Channel, int64(p.Offset-starts[p.Channel]), int64(want-starts[p.Channel]))
		}
		next[p.Channel]++
	}
	total := uint64(0)
	for _, ch := range channels {
		top := recoverFrom(t, m, ch, 0, false).Top
		total += top - starts[ch]
		if ch != "c" && next[ch] != top+1 {
			t.Errorf("%s: delivered up to start+%d, top is start+%d", ch, int64(next[ch]-1-starts[ch]), int64(top-starts[ch]))
		}
	}
	if total != publishers*each {
		t.Errorf("%d offsets assigned, want %d", total, publishers*each)
	}
}

func TestMemoryForgetIdle(t *testing.T) {
	type setup func(t *testing.T, m *Memory, name string)
	var (
		recoverOnly setup = func(t *testing.T, m *Memory, name string) { recoverFrom(t, m, name, 0, true) }
		published   setup = func(t *testing.T, m *Memory, name string) { publish(t, m, name, "1") }
		expired     setup = func(t *testing.T, m *Memory, name string) {
			publish(t, m, name, "1")
			age(m, name, 2*time.Minute)
		}
		subscribed setup = func(t *testing.T, m *Memory, name string) {
			if err := m.Subscribe(name); err != nil {
				t.Fatal(err)
			}
		}
		subscribedExpired setup = func(t *testing.T, m *Memory, name string) {
			subscribed(t, m, name)
			expired(t, m, name)
		}
		unsubscribed setup = func(t *testing.T, m *Memory, name string) {
			subscribed(t, m, name)
			if err := m.Unsubscribe(name); err != nil {
				t.Fatal(err)
			}
		}
		mixedExpiry setup = func(t *testing.T, m *Memory, name string) {
			expired(t, m, name)
			publish(t, m, name, "2")
		}
	)
	for _, c := range []struct {
		name string
		cfg  MemoryConfig
		set  setup
		kept bool
	}{
		{"recover only", MemoryConfig{HistorySize: 4, HistoryTTL: time.Minute}, recoverOnly, false},
		{"live history", MemoryConfig{HistorySize: 4, HistoryTTL: time.Minute}, published, true},
		{"expired history", MemoryConfig{HistorySize: 4, HistoryTTL: time.Minute}, expired, false},
		{"newest still live", MemoryConfig{HistorySize: 4, HistoryTTL: time.Minute}, mixedExpiry, true},
		{"subscribed, empty", MemoryConfig{HistorySize: 4, HistoryTTL: time.Minute}, subscribed, true},
		{"subscribed, expired history", MemoryConfig{HistorySize: 4, HistoryTTL: time.Minute}, subscribedExpired, true},
		{"unsubscribed, empty", MemoryConfig{HistorySize: 4, HistoryTTL: time.Minute}, unsubscribed, false},
		{"history without TTL", MemoryConfig{HistorySize: 4}, published, true},
		{"old history without TTL", MemoryConfig{HistorySize: 4}, expired, true},
		{"recover only without TTL", MemoryConfig{HistorySize: 4}, recoverOnly, false},
		{"no history kept", MemoryConfig{}, published, false},
		{"no history kept, subscribed", MemoryConfig{}, subscribed, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, _ := startMemory(t, c.cfg)
			c.set(t, m, "ch")
			recoverFrom(t, m, "bystander", 0, false) // always forgettable
			if err := m.Subscribe("keeper"); err != nil {
				t.Fatal(err)
			}
			m.forgetIdle()
			_, kept := m.channels["ch"]
			_, bystander := m.channels["bystander"]
			_, keeper := m.channels["keeper"]
			if kept != c.kept || bystander || !keeper {
				t.Fatalf("after forgetIdle: ch kept %v (want %v), bystander kept %v, keeper kept %v", kept, c.kept, bystander, keeper)
			}
			want := 1
			if c.kept {
				want = 2
			}
			if n := m.Channels(); n != want {
				t.Fatalf("Channels() = %d, want %d", n, want)
			}
		})
	}
}

func TestMemoryForgottenChannelStartsAgain(t *testing.T) {
	m, _ := startMemory(t, MemoryConfig{HistorySize: 4, HistoryTTL: time.Minute})
	publish(t, m, "news", "1")
	old := publish(t, m, "news", "2")
	age(m, "news", 2*time.Minute)
	m.forgetIdle()
	time.Sleep(2 * time.Millisecond) // the new start is at least 2000 µs later
	off := publish(t, m, "news", "3")
	if off <= old+1 {
		t.Fatalf("offset after forgetting %d, want above the old top %d: offsets must not go backwards", off, old)
	}
	r := recoverFrom(t, m, "news", old, true)
	if r.Recovered || len(r.Publications) != 1 || r.Publications[0].Offset != off {
		t.Fatalf("Recover(old top) = %+v, want only the new publication and recovered false", r)
	}
}

// Subscribe racing the sweeper must not leave its interest on a channel the
// sweeper has just dropped from the map: later publications would then go to
// a fresh channel nobody is interested in, and never be delivered.
func TestMemorySubscribeRacesForgetIdle(t *testing.T) {
	m, c := startMemory(t, MemoryConfig{}) // no history: idle once unsubscribed
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				m.forgetIdle()
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	for i := 0; i < 20000; i++ {
		const name = "ch"
		recoverFrom(t, m, name, 0, false) // an idle channel the sweeper may drop
		if err := m.Subscribe(name); err != nil {
			t.Fatal(err)
		}
		off := publish(t, m, name, "1")
		got := c.take()
		if len(got) != 1 || got[0].Offset != off {
			t.Fatalf("iteration %d: Subscribe then Publish delivered %d publications, want 1", i, len(got))
		}
		if err := m.Unsubscribe(name); err != nil {
			t.Fatal(err)
		}
	}
}

// Publish racing the sweeper must not put a publication in the history of a
// channel the sweeper has just dropped: Recover would not find it.
func TestMemoryPublishRacesForgetIdle(t *testing.T) {
	m, _ := startMemory(t, MemoryConfig{HistorySize: 2, HistoryTTL: time.Minute})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				m.forgetIdle()
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	for i := 0; i < 20000; i++ {
		const name = "ch"
		recoverFrom(t, m, name, 0, false) // an idle channel the sweeper may drop
		off := publish(t, m, name, "1")   // live history: no longer idle
		r := recoverFrom(t, m, name, off-1, true)
		if len(r.Publications) != 1 || r.Publications[0].Offset != off || r.Top != off {
			t.Fatalf("iteration %d: published at %d, then Recover(%d) = %+v", i, off, off-1, r)
		}
		age(m, name, 2*time.Minute) // idle again, for the next iteration
	}
}

func TestMemoryClose(t *testing.T) {
	m, _ := startMemory(t, MemoryConfig{HistorySize: 4})
	if err := m.Ready(); err != nil {
		t.Fatalf("Ready before Close = %v", err)
	}
	publish(t, m, "news", "1")
	if err := m.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if err := m.Ready(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Ready after Close = %v, want ErrClosed", err)
	}
	if res, err := m.Publish(context.Background(), "news", []byte("2"), PublishOptions{}); !errors.Is(err, ErrClosed) || res.Offset != 0 {
		t.Fatalf("Publish after Close = %d, %v; want 0, ErrClosed", res.Offset, err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}

func TestMemoryCloseWithoutStart(t *testing.T) {
	m := NewMemory(MemoryConfig{})
	done := make(chan error, 1)
	go func() { done <- m.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Close = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close without Start hangs")
	}
}

var _ Broker = (*Memory)(nil)
