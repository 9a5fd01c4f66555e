// Command gobwas is the gobwas/ws reference server with a goroutine per
// connection (its wsutil helpers): GET /ws echoes, POST /broadcast sends to
// every connection.
package main

import (
	"log"
	"net"
	"net/http"
	"sync"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/herald-ws/herald/benchmarks/peers/internal/hub"
)

type conn struct {
	mu sync.Mutex
	nc net.Conn
}

func (c *conn) write(op ws.OpCode, p []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return wsutil.WriteServerMessage(c.nc, op, p)
}

func main() {
	addr := hub.Addr()
	h := hub.New(func(c *conn, p []byte) { _ = c.write(ws.OpText, p) })
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		nc, _, _, err := ws.UpgradeHTTP(r, w)
		if err != nil {
			return
		}
		c := &conn{nc: nc}
		h.Add(c)
		defer func() { h.Remove(c); nc.Close() }()
		for {
			p, op, err := wsutil.ReadClientData(nc)
			if err != nil {
				return
			}
			if err := c.write(op, p); err != nil {
				return
			}
		}
	})
	mux.Handle("/broadcast", h)
	log.Fatal(http.ListenAndServe(addr, mux))
}
