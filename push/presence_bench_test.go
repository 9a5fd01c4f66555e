package push

import (
	"runtime"
	"strconv"
	"testing"
)

// BenchmarkPresenceMemory reports what presence adds per member of a
// channel with 10,000 subscribers, each a different user: the channel's
// count entry and the connection's membership (the hub's subscription
// and the user id's string exist without presence).
func BenchmarkPresenceMemory(b *testing.B) {
	const members = 10_000
	ids := make([]string, members)
	for i := range ids {
		ids[i] = "user-" + strconv.Itoa(i)
	}
	var bytesPer float64
	for range b.N {
		var t presenceTable
		clients := make([]client, members)
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for i := range clients {
			c := &clients[i]
			c.id.User = ids[i]
			c.member = &membership{conn: uint64(i)}
			c.member.channels = append(c.member.channels, "room:1")
			t.join("room:1", c.id.User)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		bytesPer = float64(after.HeapAlloc-before.HeapAlloc) / members
		runtime.KeepAlive(clients)
		runtime.KeepAlive(&t)
	}
	b.ReportMetric(bytesPer, "bytes/member")
}

// BenchmarkPresenceStats is GET /api/presence_stats' work on one node for
// a channel with 10,000 members: one map lookup, whatever the size.
func BenchmarkPresenceStats(b *testing.B) {
	var t presenceTable
	for i := range 10_000 {
		t.join("room:1", "user-"+strconv.Itoa(i))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if s := t.stats("room:1"); s.Clients != 10_000 {
			b.Fatal(s)
		}
	}
}

// BenchmarkPresenceJoinLeave is the bookkeeping of one member joining and
// leaving a channel of 10,000 (without the join/leave messages).
func BenchmarkPresenceJoinLeave(b *testing.B) {
	var t presenceTable
	for i := range 10_000 {
		t.join("room:1", "user-"+strconv.Itoa(i))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		t.join("room:1", "newcomer")
		t.leave("room:1", "newcomer")
	}
}
