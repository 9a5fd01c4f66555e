package engine

import (
	"context"
	"sync"

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
// stopping) leaves VisitOpen waiting for ctx.
func (s *Server) VisitOpen(ctx context.Context, visit func(*session.Session)) error {
	var wg sync.WaitGroup
	for _, l := range s.loopList() {
		wg.Add(1)
		_ = l.exec(func() {
			defer wg.Done()
			for i := l.conns.len() - 1; i >= 0; i-- {
				if i >= l.conns.len() {
					continue
				}
				if e := l.conns.at(i); e.State() == session.StateOpen {
					visit(&e.Session)
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
