// Command floor is the reference floor for broadcast: the least work any
// server can do to deliver one message to N WebSocket connections over
// TCP. It does nothing but one raw write(2) of a prebuilt frame per
// socket, split over GOMAXPROCS OS threads, and nothing else: no reading
// after the upgrade, no queue, no per-message allocation, no coalescing
// (a broadcast is written completely before the next one starts). Herald's
// broadcast figures are quoted against it: whatever Herald spends beyond
// it is its own overhead, and whatever it delivers beyond it under
// sustained load comes from writing several messages per write(2).
//
// GET /ws upgrades (gobwas/ws, the one goroutine per connection it takes
// ends once the connection is registered); POST /broadcast sends the body
// to every connection as one text frame and answers 204 when every write
// has returned.
package main

import (
	"io"
	"log"
	"net"
	"net/http"
	"runtime"
	"sync"
	"syscall"

	"github.com/gobwas/ws"

	"github.com/herald-ws/herald/benchmarks/peers/internal/hub"
)

type floor struct {
	mu    sync.Mutex
	fds   []int
	conns []net.Conn // kept so the sockets stay open
	// one broadcast at a time, as a server with one write per message
	// per socket and no queue would
	bcast sync.Mutex
	frame []byte
}

func (f *floor) upgrade(w http.ResponseWriter, r *http.Request) {
	nc, _, _, err := ws.UpgradeHTTP(r, w)
	if err != nil {
		return
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		nc.Close()
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		nc.Close()
		return
	}
	fd := -1
	_ = raw.Control(func(s uintptr) { fd = int(s) })
	f.mu.Lock()
	f.fds = append(f.fds, fd)
	f.conns = append(f.conns, nc)
	f.mu.Unlock()
}

func (f *floor) broadcast(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.bcast.Lock()
	defer f.bcast.Unlock()
	f.frame = f.frame[:0]
	hdr := ws.Header{Fin: true, OpCode: ws.OpText, Length: int64(len(body))}
	buf := &appendWriter{b: f.frame}
	_ = ws.WriteHeader(buf, hdr)
	f.frame = append(buf.b, body...)
	f.mu.Lock()
	fds := f.fds
	f.mu.Unlock()
	threads := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	per := (len(fds) + threads - 1) / threads
	for t := 0; t < threads && t*per < len(fds); t++ {
		part := fds[t*per : min((t+1)*per, len(fds))]
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			for _, fd := range part {
				p := f.frame
				for len(p) > 0 {
					n, err := syscall.Write(fd, p)
					if err == syscall.EINTR {
						continue
					}
					if err != nil || n <= 0 {
						break // EAGAIN (a full socket) or a dead peer: the floor does not queue
					}
					p = p[n:]
				}
			}
		}()
	}
	wg.Wait()
	w.WriteHeader(http.StatusNoContent)
}

type appendWriter struct{ b []byte }

func (a *appendWriter) Write(p []byte) (int, error) { a.b = append(a.b, p...); return len(p), nil }

func main() {
	addr := hub.Addr()
	f := &floor{}
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", f.upgrade)
	mux.HandleFunc("/broadcast", f.broadcast)
	log.Fatal(http.ListenAndServe(addr, mux))
}
