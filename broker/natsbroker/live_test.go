package natsbroker

import (
	"io"
	"log/slog"
	"strconv"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-ws/herald/broker"
)

// liveMsg is a republished message as the stream sends it.
func liveMsg(subject string, seq, prev uint64) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Header.Set(jetstream.SequenceHeader, strconv.FormatUint(seq, 10))
	m.Header.Set(jetstream.LastSequenceHeader, strconv.FormatUint(prev, 10))
	m.Data = []byte(`{"n":` + strconv.FormatUint(seq, 10) + `}`)
	return m
}

// testShard is a ready channel on a shard of a broker without a
// connection: only contiguous messages can be handled (a repair would need
// NATS).
func testShard(deliver broker.DeliverFunc) (*shard, *chanState) {
	b := &Broker{cfg: Config{GapCheckInterval: DefaultGapCheckInterval}, log: slog.New(slog.NewTextHandler(io.Discard, nil)), deliver: deliver}
	b.shards = newShards(b, 1, 16)
	s, st := b.addChannel("a.b")
	st.ready = true
	return s, st
}

// TestLiveContiguousDeliversInOrderOnce: contiguous messages are delivered
// as they come, and copies at or below the last delivered sequence (history
// at subscribe, messages already repaired) are dropped.
func TestLiveContiguousDeliversInOrderOnce(t *testing.T) {
	var got []uint64
	s, st := testShard(func(p broker.Publication) {
		if p.Gap || p.Channel != "a.b" {
			t.Fatalf("unexpected delivery %+v", p)
		}
		got = append(got, p.Offset)
	})
	st.last = 10 // the starting point read at subscribe
	for _, m := range []struct{ seq, prev uint64 }{
		{9, 4}, {10, 9}, // covered by history
		{12, 10}, {15, 12}, {15, 12}, {12, 10}, {20, 15},
	} {
		s.handle(liveMsg(st.live, m.seq, m.prev))
	}
	if want := []uint64{12, 15, 20}; len(got) != len(want) || got[0] != 12 || got[1] != 15 || got[2] != 20 {
		t.Fatalf("delivered %v, want %v", got, want)
	}
}

// TestLiveDeliveryAllocatesNothing: the broker's own work per live message
// (routing, sequence checks, the Publication handed to Deliver) allocates
// nothing; nats.go's message is allocated by nats.go.
func TestLiveDeliveryAllocatesNothing(t *testing.T) {
	n := 0
	s, st := testShard(func(broker.Publication) { n++ })
	const runs = 1000
	msgs := make([]*nats.Msg, runs+1)
	for i := range msgs {
		msgs[i] = liveMsg(st.live, uint64(i+1), uint64(i))
	}
	i := 0
	allocs := testing.AllocsPerRun(runs, func() {
		s.handle(msgs[i])
		i++
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per live message, want 0", allocs)
	}
	if n != runs+1 {
		t.Fatalf("%d deliveries, want %d", n, runs+1)
	}
}

func TestShardOfIsStableAndSpreads(t *testing.T) {
	b := &Broker{}
	b.shards = newShards(b, 4, 1)
	used := map[*shard]bool{}
	for i := range 64 {
		c := "chan-" + strconv.Itoa(i)
		first := b.shardOf(c)
		if again := b.shardOf(string([]byte(c))); again != first {
			t.Fatalf("%s maps to two shards", c)
		}
		used[first] = true
	}
	if len(used) != 4 {
		t.Fatalf("64 channels use %d of 4 shards", len(used))
	}
}

func TestMsgIDIsPerChannelAndHeaderSafe(t *testing.T) {
	cases := []struct{ c1, k1, c2, k2 string }{
		{"a", "k", "b", "k"},
		{"ab", "c", "a", "bc"},
		{"a|b", "c", "a", "b|c"},
		{"a", "", "a", "\x00"},
	}
	for _, c := range cases {
		if msgID(c.c1, c.k1) == msgID(c.c2, c.k2) {
			t.Fatalf("msgID(%q,%q) == msgID(%q,%q)", c.c1, c.k1, c.c2, c.k2)
		}
	}
	if k := "k"; msgID("a", k) != msgID("a", string([]byte(k))) {
		t.Fatal("msgID is not deterministic")
	}
	id := msgID("chan", "key\r\nNats-Expected-Stream: x")
	for _, r := range id {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') {
			t.Fatalf("msgID %q has %q", id, r)
		}
	}
}

// BenchmarkLiveContiguous is the broker's per-message cost on the live path
// (routing, sequence checks, Publication), without NATS and with a Deliver
// that does nothing.
func BenchmarkLiveContiguous(b *testing.B) {
	s, st := testShard(func(broker.Publication) {})
	msgs := make([]*nats.Msg, 4096)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		k := i % len(msgs)
		if k == 0 {
			b.StopTimer()
			base := uint64(i)
			for j := range msgs {
				msgs[j] = liveMsg(st.live, base+uint64(j)+1, base+uint64(j))
			}
			st.last = base
			b.StartTimer()
		}
		s.handle(msgs[k])
	}
}
