package session

import (
	"strconv"
	"sync/atomic"
)

// Stats are server-wide counters, updated by every loop with atomic adds
// (one add per batch, not per byte) and safe to read from any goroutine.
type Stats struct {
	MessagesIn        atomic.Int64
	MessagesOut       atomic.Int64
	BytesIn           atomic.Int64
	BytesOut          atomic.Int64
	Upgrades          atomic.Int64 // successful handshakes
	HandshakeRejects  atomic.Int64 // upgrade requests answered with an HTTP error
	HandshakeTimeouts atomic.Int64
	IdleTimeouts      atomic.Int64
	ProtocolErrors    atomic.Int64 // connections failed for breaking RFC 6455
	SlowConsumers     atomic.Int64 // connections closed at the write-buffer limit
	// InboundBuffered is a gauge: inbound bytes sessions hold between
	// reads (messages being reassembled, unconsumed partial frames and
	// requests), bounded by Config.MaxInboundBuffer.
	InboundBuffered     atomic.Int64
	InboundBudgetCloses atomic.Int64 // connections closed because a read would pass MaxInboundBuffer

	// closes counts ended connections by CloseReason (slot 0: a reason
	// without a name); refused counts refused upgrades by HTTP status
	// (slot 0: a status outside 100-599). Both are fixed arrays, so the
	// label sets they feed are bounded whatever clients do.
	closes  [maxCloseReasons]atomic.Int64
	codes   [len(closeCodeClasses)]atomic.Int64 // by the close code sent, closeCodeClasses
	refused [600]atomic.Int64
}

// maxCloseReasons bounds the CloseReason values counted separately; a
// larger value is counted as unnamed.
const maxCloseReasons = 32

// closeCodeClasses are the label values of closes by code: the close
// code the server sent (or echoed), "none" when it sent none (an HTTP
// refusal, a connection that simply dropped), and "other" for the
// registered or private codes an application peer may echo (1010, 1013,
// 3000-4999). A bounded set, whatever peers send.
var closeCodeClasses = [...]string{"none", "1000", "1001", "1002", "1003", "1007", "1008", "1009", "1011", "1012", "other"}

func closeCodeClass(code uint16) int {
	if code == 0 {
		return 0
	}
	for i, c := range closeCodeClasses[1 : len(closeCodeClasses)-1] {
		if c == strconv.Itoa(int(code)) {
			return i + 1
		}
	}
	return len(closeCodeClasses) - 1
}

// CountClose records that a connection ended for r after the server sent
// (or echoed) close code code (0: none). The engine calls it once per
// connection, after OnConnClosed.
func (s *Stats) CountClose(r CloseReason, code uint16) {
	i := int(r)
	if i >= maxCloseReasons || r.String() == "unknown" {
		i = 0
	}
	s.closes[i].Add(1)
	s.codes[closeCodeClass(code)].Add(1)
}

// CloseCodes calls f for every close code class with its count, zero
// included.
func (s *Stats) CloseCodes(f func(code string, n int64)) {
	for i, c := range closeCodeClasses {
		f(c, s.codes[i].Load())
	}
}

// Refuse records an upgrade refused with an HTTP status; it also counts it
// in HandshakeRejects.
func (s *Stats) Refuse(status int) {
	s.HandshakeRejects.Add(1)
	if status < 100 || status >= len(s.refused) {
		status = 0
	}
	s.refused[status].Add(1)
}

// Closes calls f for every named close reason (with its count, zero
// included, so a dashboard sees every series from the start) and for the
// unnamed slot when it is not zero, with reason 0.
func (s *Stats) Closes(f func(r CloseReason, n int64)) {
	if n := s.closes[0].Load(); n > 0 {
		f(0, n)
	}
	for i := 1; i < maxCloseReasons; i++ {
		if r := CloseReason(i); r.String() != "unknown" {
			f(r, s.closes[i].Load())
		}
	}
}

// Refused calls f for every HTTP status an upgrade was refused with, in
// increasing order, and for status 0 (out of range) when it is not zero.
// The statuses Herald itself refuses with are always reported, zero
// included.
func (s *Stats) Refused(f func(status int, n int64)) {
	for status := range s.refused {
		n := s.refused[status].Load()
		if n > 0 || commonRefusal(status) {
			f(status, n)
		}
	}
}

// commonRefusal lists the statuses the server's own checks answer with:
// a malformed request (400), a refused token (401, 403), an unknown path
// (404), a wrong method (405), a bad version (426), an oversized header
// (431) and the connection limit or shutdown (503).
func commonRefusal(status int) bool {
	switch status {
	case 400, 401, 403, 404, 405, 426, 431, 503:
		return true
	}
	return false
}
