package session

import "time"

// Ticker is implemented by a Handler that has deadlines of its own per
// connection (push: a token's exp). OnTick runs from Tick, in the loop's
// periodic sweep, for every open session of the handler's route, after the
// idle check; it may Send, Flush and Close the session. It must be cheap:
// the sweep calls it for every open connection on every tick, so a
// handler with nothing due for s returns at once.
type Ticker interface {
	OnTick(s *Session, now time.Time)
}

// ticker is s's handler as a Ticker, or nil.
func (s *Session) ticker() Ticker {
	if s.route == 0 {
		return nil
	}
	return s.loop.tickers[s.route-1]
}
