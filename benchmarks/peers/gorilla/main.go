// Command gorilla is the gorilla/websocket reference server (a goroutine per
// connection): GET /ws echoes, POST /broadcast sends to every connection.
package main

import (
	"log"
	"net/http"
	"sync"

	"github.com/gorilla/websocket"

	"github.com/herald-ws/herald/benchmarks/peers/internal/hub"
)

type conn struct {
	mu sync.Mutex // gorilla allows one concurrent writer
	ws *websocket.Conn
}

func (c *conn) write(mt int, p []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ws.WriteMessage(mt, p)
}

func main() {
	addr := hub.Addr()
	h := hub.New(func(c *conn, p []byte) { _ = c.write(websocket.TextMessage, p) })
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		c := &conn{ws: ws}
		h.Add(c)
		defer func() { h.Remove(c); ws.Close() }()
		for {
			mt, p, err := ws.ReadMessage()
			if err != nil {
				return
			}
			if err := c.write(mt, p); err != nil {
				return
			}
		}
	})
	mux.Handle("/broadcast", h)
	log.Fatal(http.ListenAndServe(addr, mux))
}
