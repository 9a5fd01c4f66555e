package server_test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/herald-ws/herald/internal/testutil"
)

func TestZZMemProf(t *testing.T) {
	runtime.MemProfileRate = 1
	kind := os.Getenv("KIND")
	if kind == "" {
		t.Skip()
	}
	n := testutil.StartNode(t, testutil.NodeOptions{})
	addr := n.Addr().String()
	const N = 9000
	conns := make([]net.Conn, 0, N)
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	path := map[string]string{"sse": "/sse?channel=idle", "poll": "/poll?channel=idle&timeout=5m", "ws": ""}[kind]
	for i := 0; i < N; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if kind == "ws" || kind == "wssub" {
			fmt.Fprintf(c, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
			br := bufio.NewReader(c)
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					t.Fatal(err)
				}
				if l == "\r\n" {
					break
				}
			}
			if kind == "wssub" {
				msg := []byte(`{"op":"subscribe","channel":"idle","id":1}`)
				f := []byte{0x81, 0x80 | byte(len(msg)), 0, 0, 0, 0}
				c.Write(append(f, msg...))
				b := make([]byte, 2)
				if _, err := br.Read(b); err != nil {
					t.Fatal(err)
				}
			}
		} else {
			fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
			if kind == "sse" {
				br := bufio.NewReader(c)
				for {
					l, err := br.ReadString('\n')
					if err != nil {
						t.Fatal(i, err)
					}
					if strings.HasPrefix(l, "event: subscribed") {
						break
					}
				}
			}
		}
		conns = append(conns, c)
	}
	time.Sleep(3 * time.Second)
	runtime.GC()
	runtime.ReadMemStats(&m1)
	t.Logf("%s: HeapAlloc/conn %d HeapInuse/conn %d Sys/conn %d", kind,
		int64(m1.HeapAlloc-m0.HeapAlloc)/N, int64(m1.HeapInuse-m0.HeapInuse)/N, int64(m1.Sys-m0.Sys)/N)
	f, _ := os.Create("/tmp/prof/" + kind + ".heap")
	pprof.Lookup("heap").WriteTo(f, 0)
	f.Close()
	for _, c := range conns {
		c.Close()
	}
}
