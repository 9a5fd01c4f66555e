package broker

import (
	"context"
	"errors"
	"fmt"
	"runtime"
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
// startOf creates channel (as a first publish or subscribe would) and
// returns its start offset.
func startOf(t *testing.T, m *Memory, channel string) uint64 {
	t.Helper()
	sh, ch, err := m.lock(channel, true)
	if err != nil {
		t.Fatal(err)
	}
	defer sh.mu.Unlock()
	return ch.start
}

func age(m *Memory, channel string, d time.Duration) {
	sh, ch, _ := m.lock(channel, false)
	defer sh.mu.Unlock()
	if ch == nil || ch.hist == nil {
		return
	}
	for i := range ch.hist.ring {
		if ch.hist.ring[i].at != 0 {
			ch.hist.ring[i].at -= int64(d)
		}
	}
}

func TestMemoryOffsetsStartAtCreationTime(t *testing.T) {
	m, _ := startMemory(t, MemoryConfig{HistorySize: 4})
	before := uint64(time.Now().UnixMicro())
	start := startOf(t, m, "news")
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
	start := startOf(t, m, "news")
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
		// An offset above the top was never handed out for this channel
		// (a reset store, a clock step, a bogus client value): the client
		// must be told, and must not be positioned past later offsets.
		{"above top", 9, true, []int64{}, false},
		{"far above top", 1 << 40, true, []int64{}, false},
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
	start := startOf(t, m, "news")
	for i := 1; i <= 3; i++ {
		publish(t, m, "news", strconv.Itoa(i))
	}
	r := recoverFrom(t, m, "news", start, true)
	if !r.Recovered || !equal(offsets(r.Publications, start), []int64{1, 2, 3}) {
		t.Fatalf("Recover(start) = %v, recovered %v; want [1 2 3], true", offsets(r.Publications, start), r.Recovered)
	}
	// An empty channel recovers from its start with nothing missed.
	start = startOf(t, m, "empty")
	if r := recoverFrom(t, m, "empty", start, true); !r.Recovered || len(r.Publications) != 0 || r.Top != start {
		t.Fatalf("empty channel Recover(start) = %+v, want top start, recovered, nothing", r)
	}
	if r := recoverFrom(t, m, "empty", start-1, true); r.Recovered || len(r.Publications) != 0 {
		t.Fatalf("empty channel Recover(start-1) = %+v, want not recovered", r)
	}
}

func TestMemoryHistoryTTL(t *testing.T) {
	m, _ := startMemory(t, MemoryConfig{HistorySize: 10, HistoryTTL: time.Minute})
	start := startOf(t, m, "news")
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
	start := startOf(t, m, "news")
	for i := 1; i <= 3; i++ {
		publish(t, m, "news", strconv.Itoa(i))
	}
	for _, c := range []struct {
		since     int64
		recovered bool
	}{{-1, false}, {0, false}, {2, false}, {3, true}, {4, false}} {
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
		starts[ch] = startOf(t, m, ch)
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
			kept := m.lookup("ch") != nil
			bystander := m.lookup("bystander") != nil
			keeper := m.lookup("keeper") != nil
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
	time.Sleep(time.Millisecond) // the clock passes the top, so the channel may be forgotten
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

func TestMemoryIdempotentPublish(t *testing.T) {
	m, c := startMemory(t, MemoryConfig{HistorySize: 8})
	if err := m.Subscribe("news"); err != nil {
		t.Fatal(err)
	}
	pub := func(channel, key, data string) PublishResult {
		t.Helper()
		r, err := m.Publish(context.Background(), channel, []byte(data), PublishOptions{IdempotencyKey: key})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	first := pub("news", "k1", "1")
	if first.Duplicate {
		t.Fatal("first publish reported as a duplicate")
	}
	again := pub("news", "k1", "1-retry")
	if !again.Duplicate || again.Offset != first.Offset {
		t.Fatalf("retry = %+v, want duplicate of offset %d", again, first.Offset)
	}
	other := pub("news", "k2", "2")
	if other.Duplicate || other.Offset != first.Offset+1 {
		t.Fatalf("new key = %+v, want offset %d", other, first.Offset+1)
	}
	// Keys are per channel: the same key on another channel is new.
	if r := pub("sport", "k1", "x"); r.Duplicate {
		t.Fatalf("same key on another channel = %+v, want a new publication", r)
	}
	// Without a key nothing is deduplicated.
	a, b := pub("news", "", "3"), pub("news", "", "3")
	if a.Duplicate || b.Duplicate || b.Offset != a.Offset+1 {
		t.Fatalf("unkeyed publishes = %+v, %+v", a, b)
	}
	got := c.take()
	if len(got) != 4 {
		t.Fatalf("delivered %d publications, want 4 (the duplicate must not be delivered)", len(got))
	}
	r := recoverFrom(t, m, "news", first.Offset-1, true)
	if len(r.Publications) != 4 || string(r.Publications[0].Data) != "1" {
		t.Fatalf("history = %d publications (first %q), want 4 starting with the original", len(r.Publications), r.Publications[0].Data)
	}
}

func TestMemoryIdempotencyRacingPublishersStoreOnce(t *testing.T) {
	m, _ := startMemory(t, MemoryConfig{HistorySize: 100})
	start := startOf(t, m, "news")
	var wg sync.WaitGroup
	offsets := make([]PublishResult, 16)
	for i := range offsets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := m.Publish(context.Background(), "news", []byte("1"), PublishOptions{IdempotencyKey: "same"})
			if err != nil {
				t.Error(err)
			}
			offsets[i] = r
		}()
	}
	wg.Wait()
	dups := 0
	for _, r := range offsets {
		if r.Offset != start+1 {
			t.Fatalf("offset %d, want every publisher to get start+1", r.Offset-start)
		}
		if r.Duplicate {
			dups++
		}
	}
	if dups != len(offsets)-1 {
		t.Fatalf("%d duplicates, want %d", dups, len(offsets)-1)
	}
}

func TestMemoryIdempotencyWindowAndCap(t *testing.T) {
	m, _ := startMemory(t, MemoryConfig{HistorySize: 8, IdempotencyWindow: 50 * time.Millisecond, MaxIdempotencyKeys: 3})
	pub := func(key string) PublishResult {
		r, err := m.Publish(context.Background(), "news", []byte("1"), PublishOptions{IdempotencyKey: key})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	a := pub("a")
	time.Sleep(80 * time.Millisecond)
	if r := pub("a"); r.Duplicate || r.Offset == a.Offset {
		t.Fatalf("after the window: %+v, want a new publication", r)
	}
	for _, k := range []string{"b", "c", "d"} {
		pub(k)
	}
	// The cap of 3 keys pushed out the oldest ("a" again), kept "d".
	if r := pub("d"); !r.Duplicate {
		t.Fatal("newest key forgotten")
	}
	if n := func() int { m.dedup.mu.Lock(); defer m.dedup.mu.Unlock(); return len(m.dedup.keys) }(); n > 3 {
		t.Fatalf("%d keys remembered, cap 3", n)
	}
}

func TestMemoryMaxChannels(t *testing.T) {
	m, _ := startMemory(t, MemoryConfig{HistorySize: 8, MaxChannels: 2})
	publish(t, m, "a", "1")
	if err := m.Subscribe("b"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Publish(context.Background(), "c", []byte("1"), PublishOptions{}); !errors.Is(err, ErrTooManyChannels) {
		t.Fatalf("publish to a third channel: %v, want ErrTooManyChannels", err)
	}
	if err := m.Subscribe("c"); !errors.Is(err, ErrTooManyChannels) {
		t.Fatalf("subscribe to a third channel: %v, want ErrTooManyChannels", err)
	}
	// Existing channels keep working.
	publish(t, m, "a", "2")
	publish(t, m, "b", "1")
	if m.Channels() != 2 {
		t.Fatalf("Channels() = %d", m.Channels())
	}
}

// A channel that a subscriber leaves and that holds no history is forgotten
// at once, not at the next sweep.
func TestMemoryUnsubscribeForgetsEmptyChannelAtOnce(t *testing.T) {
	m, _ := startMemory(t, MemoryConfig{HistorySize: 8, SweepInterval: time.Hour})
	for i := 0; i < 1000; i++ {
		name := "fresh-" + strconv.Itoa(i)
		if err := m.Subscribe(name); err != nil {
			t.Fatal(err)
		}
		if r := recoverFrom(t, m, name, 0, true); r.Recovered {
			t.Fatal("recovered from 0 on a fresh channel")
		}
		if err := m.Unsubscribe(name); err != nil {
			t.Fatal(err)
		}
	}
	if n := m.Channels(); n != 0 {
		t.Fatalf("%d channels held after every subscriber left, want 0", n)
	}
}

// Subscribing creates no history: what a subscribed, empty channel costs
// is a small fixed amount, and a channel's history grows with what it holds.
func TestMemoryChannelCostsWhatItHolds(t *testing.T) {
	m := NewMemory(MemoryConfig{HistorySize: 1000, HistoryTTL: time.Minute, SweepInterval: time.Hour})
	if err := m.Start(func(Publication) {}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	const n = 20_000
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("user:%08d", i)
	}
	before := heapInUse()
	for _, name := range names {
		if err := m.Subscribe(name); err != nil {
			t.Fatal(err)
		}
	}
	perChannel := float64(heapInUse()-before) / n
	t.Logf("subscribed empty channel: %.0f B of heap in the broker", perChannel)
	if perChannel > 160 {
		t.Fatalf("a subscribed empty channel costs %.0f B of broker heap, want at most 160 (history must not be preallocated)", perChannel)
	}
	before = heapInUse()
	for _, name := range names {
		publish(t, m, name, "1")
	}
	perMessage := float64(heapInUse()-before) / n
	t.Logf("first message of a channel: %.0f B of heap", perMessage)
	if perMessage > 120 {
		t.Fatalf("a channel's first message costs %.0f B, want at most 120 (history grows with what it holds)", perMessage)
	}
}

func heapInUse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}
