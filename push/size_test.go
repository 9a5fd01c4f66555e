package push

import (
	"testing"
	"unsafe"
)

// TestClientFitsItsSizeClass: every authenticated connection (and every
// anonymous one that subscribed) holds a client, so presence and the
// publish queue hang off pointers instead of growing it past the 128-byte
// malloc size class.
func TestClientFitsItsSizeClass(t *testing.T) {
	if n := unsafe.Sizeof(client{}); n > 128 {
		t.Fatalf("client is %d bytes, want at most 128", n)
	}
}

// TestPresenceAllocations: presence_stats allocates nothing, and neither
// does a member joining and leaving a channel that has members.
func TestPresenceAllocations(t *testing.T) {
	var tbl presenceTable
	tbl.join("room:1", "alice")
	if a := testing.AllocsPerRun(100, func() { _ = tbl.stats("room:1") }); a != 0 {
		t.Fatalf("stats: %.1f allocations", a)
	}
	if a := testing.AllocsPerRun(100, func() { tbl.join("room:1", "bob"); tbl.leave("room:1", "bob") }); a != 0 {
		t.Fatalf("join and leave: %.1f allocations", a)
	}
	if s := tbl.stats("room:1"); s != (PresenceStats{Clients: 1, Users: 1}) {
		t.Fatalf("after the joins and leaves: %+v", s)
	}
	tbl.leave("room:1", "alice")
	if s := tbl.stats("room:1"); s != (PresenceStats{}) {
		t.Fatalf("empty channel: %+v", s)
	}
	if sh := tbl.shard("room:1"); len(sh.m) != 0 {
		t.Fatalf("an empty channel is still held: %d entries", len(sh.m))
	}
}
