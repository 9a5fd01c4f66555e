package engine

import (
	"net/netip"
	"testing"
)

// TestPerIPMapIsCopiedDownAfterAStorm: after connections from many
// addresses are gone, the count map does not keep the buckets of its
// peak (a Go map never shrinks by itself).
func TestPerIPMapIsCopiedDownAfterAStorm(t *testing.T) {
	p := perIP{n: map[netip.Addr]int32{}}
	var ips []netip.Addr
	for i := range 5000 {
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		ips = append(ips, ip)
		if !p.add(ip, 1) {
			t.Fatal("refused under the limit")
		}
	}
	if p.add(ips[0], 1) {
		t.Fatal("admitted past the limit")
	}
	for _, ip := range ips[:4990] {
		p.remove(ip)
	}
	if p.addresses() != 10 {
		t.Fatalf("%d addresses counted, want 10", p.addresses())
	}
	if p.peak >= 1024 {
		t.Fatalf("peak %d: the map was never copied down from 5,000 entries", p.peak)
	}
	for _, ip := range ips[4990:] {
		p.remove(ip)
	}
	if len(p.n) != 0 {
		t.Fatalf("%d entries left", len(p.n))
	}
}
