// Command coder is the coder/websocket reference server (a goroutine per
// connection): GET /ws echoes, POST /broadcast sends to every connection.
package main

import (
	"context"
	"log"
	"net/http"
	"time"

	"github.com/coder/websocket"

	"github.com/herald-ws/herald/benchmarks/peers/internal/hub"
)

func main() {
	addr := hub.Addr()
	h := hub.New(func(c *websocket.Conn, p []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.Write(ctx, websocket.MessageText, p)
	})
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
		if err != nil {
			return
		}
		c.SetReadLimit(16 << 20)
		h.Add(c)
		defer func() { h.Remove(c); c.CloseNow() }()
		ctx := context.Background()
		for {
			mt, p, err := c.Read(ctx)
			if err != nil {
				return
			}
			if err := c.Write(ctx, mt, p); err != nil {
				return
			}
		}
	})
	mux.Handle("/broadcast", h)
	log.Fatal(http.ListenAndServe(addr, mux))
}
