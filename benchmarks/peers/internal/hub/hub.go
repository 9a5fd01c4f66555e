// Package hub is the shared part of the peer reference servers: a set of
// connections and the POST /broadcast handler that writes a body to all of
// them. Each peer plugs in its own send function.
package hub

import (
	"flag"
	"io"
	"net/http"
	"sync"
)

// Hub is a set of connections of type C.
type Hub[C comparable] struct {
	mu    sync.Mutex
	conns map[C]struct{}
	send  func(C, []byte)
}

// New returns a hub that delivers with send.
func New[C comparable](send func(C, []byte)) *Hub[C] {
	return &Hub[C]{conns: map[C]struct{}{}, send: send}
}

// Add and Remove track a connection.
func (h *Hub[C]) Add(c C)    { h.mu.Lock(); h.conns[c] = struct{}{}; h.mu.Unlock() }
func (h *Hub[C]) Remove(c C) { h.mu.Lock(); delete(h.conns, c); h.mu.Unlock() }

// ServeHTTP is POST /broadcast: the body goes to every connection as a text
// message, the way each library's users would write it.
func (h *Hub[C]) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	list := make([]C, 0, len(h.conns))
	for c := range h.conns {
		list = append(list, c)
	}
	h.mu.Unlock()
	for _, c := range list {
		h.send(c, body)
	}
	w.WriteHeader(http.StatusNoContent)
}

// Addr parses the one flag every peer takes.
func Addr() string {
	addr := flag.String("addr", "127.0.0.1:9001", "listen address")
	flag.Parse()
	return *addr
}
