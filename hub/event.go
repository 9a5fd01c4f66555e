package hub

import (
	"strconv"

	"github.com/herald-ws/herald/broker"
	"github.com/herald-ws/herald/session"
)

// EventStream is implemented by the Value of a stream session (see
// session.StreamHandler) that receives Server-Sent Events. An event's id is
// where the client stands, so that the one Last-Event-ID an EventSource
// sends back when it reconnects recovers every channel it subscribes to.
type EventStream interface {
	// AppendEventID records that the session is about to get the event
	// of channel's publication at offset and appends the event's id: the
	// client's position on each of its channels. It returns dst
	// unchanged and false when the session subscribes to one channel,
	// whose events carry the shared id "<channel>:<offset>" (encoded once
	// for every subscriber).
	AppendEventID(dst []byte, channel string, offset uint64) (out []byte, own bool)
}

// Collector is implemented by the Value of a stream session that gathers
// publications into one answer (a long poll) rather than receiving each as
// it comes.
type Collector interface {
	// Collect records the message JSON (as on /ws) of channel's
	// publication at offset; json is valid only during the call.
	Collect(s *session.Session, channel string, offset uint64, json []byte)
}

// AppendEventData appends data as the data lines of an event and the blank
// line that ends it. A CR or LF in data (JSON whitespace: a JSON string
// holds neither raw) starts a new data line, so the client's reassembled
// data (lines joined with LF) is the same JSON value.
func AppendEventData(dst, data []byte) []byte {
	dst = append(dst, "data: "...)
	for len(data) > 0 {
		i := 0
		for i < len(data) && data[i] != '\n' && data[i] != '\r' {
			i++
		}
		dst = append(dst, data[:i]...)
		if i == len(data) {
			break
		}
		dst = append(dst, "\ndata: "...)
		data = data[i+1:]
	}
	return append(dst, "\n\n"...)
}

// appendEventHead appends a publication's event id and event ("message")
// lines; the data lines, the message JSON, follow. The id is s's own (see
// EventStream) or, with s nil or subscribed to one channel,
// "<channel>:<offset>".
func appendEventHead(dst []byte, s *session.Session, p broker.Publication) []byte {
	dst = append(dst, "id: "...)
	own := false
	if s != nil {
		if es, ok := s.Value.(EventStream); ok {
			dst, own = es.AppendEventID(dst, p.Channel, p.Offset)
		}
	}
	if !own {
		dst = append(dst, p.Channel...)
		dst = append(dst, ':')
		dst = strconv.AppendUint(dst, p.Offset, 10)
	}
	return append(dst, "\nevent: message\n"...)
}

// ownEventID appends s's own id for p's event, if its events carry one.
func ownEventID(s *session.Session, p broker.Publication, scratch []byte) ([]byte, bool) {
	es, ok := s.Value.(EventStream)
	if !ok {
		return scratch, false
	}
	return es.AppendEventID(scratch, p.Channel, p.Offset)
}
