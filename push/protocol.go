package push

import (
	"encoding/json"
	"strconv"
)

// Error codes sent in {"op":"error"} replies.
const (
	CodeBadRequest      = "bad_request"
	CodeForbidden       = "forbidden"
	CodeUnknownOp       = "unknown_op"
	CodeRateLimited     = "rate_limited"
	CodeTooManyChannels = "too_many_channels"
	CodeUnavailable     = "unavailable" // the broker could not serve the request
	// CodeUnknownOutcome: the broker did not confirm a publish in time; it
	// may have been stored (a retry with the same idempotency_key is safe).
	CodeUnknownOutcome = "unknown_outcome"
	// CodeInvalidToken: a refresh carried a token that does not verify.
	CodeInvalidToken = "invalid_token"
)

// request is one client frame. ID is echoed verbatim when it is a JSON
// number.
type request struct {
	Op      string          `json:"op"`
	Channel string          `json:"channel"`
	ID      json.RawMessage `json:"id"`
	Since   *uint64         `json:"since"`
	// Last (subscribe): send the channel's newest Last publications from
	// history before the live ones; not with Since.
	Last *int            `json:"last"`
	Data json.RawMessage `json:"data"`
	// IdempotencyKey (publish): a retry with the same key stores nothing
	// new and acks the first offset with "duplicate":true.
	IdempotencyKey *string `json:"idempotency_key"`
	// Token (refresh) replaces the connection's token.
	Token string `json:"token"`
}

// maxLast bounds a subscribe's last.
const maxLast = 1000

// validID reports whether id is absent or a JSON number.
func validID(id json.RawMessage) bool {
	if len(id) == 0 {
		return true
	}
	var n json.Number
	// null unmarshals into an empty Number without error; it is not a
	// number, so it is refused like a string.
	return json.Unmarshal(id, &n) == nil && id[0] != '"' && n != ""
}

func appendID(dst []byte, id json.RawMessage) []byte {
	if len(id) == 0 {
		return dst
	}
	dst = append(dst, `,"id":`...)
	return append(dst, id...)
}

// appendAck appends {"op":"ack","id":..,"offset":..}; offset is present when
// withOffset (subscribe and publish acks, where 0 is a real offset: an empty
// channel) and recovered only when since was given.
func appendAck(dst []byte, id json.RawMessage, withOffset bool, offset uint64, recovered *bool) []byte {
	dst = append(dst, `{"op":"ack"`...)
	dst = appendID(dst, id)
	if withOffset {
		dst = append(dst, `,"offset":`...)
		dst = strconv.AppendUint(dst, offset, 10)
	}
	if recovered != nil {
		dst = append(dst, `,"recovered":`...)
		dst = strconv.AppendBool(dst, *recovered)
	}
	return append(dst, '}')
}

func appendError(dst []byte, id json.RawMessage, code, message string) []byte {
	dst = append(dst, `{"op":"error"`...)
	dst = appendID(dst, id)
	dst = append(dst, `,"code":`...)
	dst = strconv.AppendQuote(dst, code)
	dst = append(dst, `,"message":`...)
	m, _ := json.Marshal(message)
	dst = append(dst, m...)
	return append(dst, '}')
}

func appendPong(dst []byte, id json.RawMessage) []byte {
	dst = append(dst, `{"op":"pong"`...)
	dst = appendID(dst, id)
	return append(dst, '}')
}
