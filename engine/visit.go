package engine

import (
	"context"

	"github.com/herald-ws/herald/session"
)

// VisitOpen calls visit for every open session, on that session's loop,
// and waits until every loop has been through its list or ctx ends. It
// walks each loop's connection list once (newest first), so it costs one
// pass over the node's connections and no memory per connection: for the
// server API's rare commands (disconnect a user), not for a hot path.
// visit may close the session it is given; it runs on several loops at
// once, so it must synchronise what it shares, and after VisitOpen
// returns with ctx's error a late loop may still call it. Must not run on
// an event loop. A loop that cannot take the task (the engine is
// stopping) is skipped: its sessions are closing anyway. It starts no
// goroutine: the loops' tasks report to a channel with room for all.
func (s *Server) VisitOpen(ctx context.Context, visit func(*session.Session)) error {
	loops := s.loopList()
	done := make(chan struct{}, len(loops)) // one token per loop that went through its list
	pending := 0
	for _, l := range loops {
		err := l.exec(func() {
			for i := l.conns.len() - 1; i >= 0; i-- {
				if i >= l.conns.len() {
					continue
				}
				if e := l.conns.at(i); e.State() == session.StateOpen {
					visit(&e.Session)
				}
			}
			done <- struct{}{}
		})
		if err == nil {
			pending++
		}
	}
	for ; pending > 0; pending-- {
		select {
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
