// Command nbio is the lesismal/nbio (nbhttp, event-loop mode) reference
// server: GET /ws echoes, POST /broadcast sends to every connection.
package main

import (
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/lesismal/nbio/nbhttp"
	"github.com/lesismal/nbio/nbhttp/websocket"

	"github.com/herald-ws/herald/benchmarks/peers/internal/hub"
)

func main() {
	addr := hub.Addr()
	h := hub.New(func(c *websocket.Conn, p []byte) { _ = c.WriteMessage(websocket.TextMessage, p) })
	up := websocket.NewUpgrader()
	up.OnMessage(func(c *websocket.Conn, mt websocket.MessageType, data []byte) { _ = c.WriteMessage(mt, data) })
	up.OnClose(func(c *websocket.Conn, _ error) { h.Remove(c) })
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		h.Add(c)
	})
	mux.Handle("/broadcast", h)
	engine := nbhttp.NewEngine(nbhttp.Config{Network: "tcp", Addrs: []string{addr}, Handler: mux})
	if err := engine.Start(); err != nil {
		log.Fatal(err)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	engine.Stop()
}
