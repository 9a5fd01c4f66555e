package session

import (
	"github.com/gobwas/ws"

	"github.com/herald-ws/herald/codec"
)

// Echo is the /echo handler: it sends every text or binary message back
// with the same opcode. Conformance suites and benchmarks use it.
type Echo struct{}

// Authorize accepts every upgrade.
func (Echo) Authorize(*Session, *codec.Request) (int, string) { return 0, "" }

// OnOpen does nothing.
func (Echo) OnOpen(*Session) {}

// OnMessage queues the message back; HandleTraffic flushes all replies of a
// read with one write.
func (Echo) OnMessage(s *Session, op ws.OpCode, payload []byte) { s.Send(op, payload) }

// OnClose does nothing.
func (Echo) OnClose(*Session, CloseReason) {}
