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
