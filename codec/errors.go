package codec

import (
	"errors"

	"github.com/gobwas/ws"
)

// ProtocolError is a violation of RFC 6455 or RFC 7692 by the peer. Code is
// the close code the connection must be failed with.
type ProtocolError struct {
	Code ws.StatusCode
	msg  string
}

func (e *ProtocolError) Error() string { return e.msg }

func protocolError(code ws.StatusCode, msg string) *ProtocolError {
	return &ProtocolError{Code: code, msg: msg}
}

// Frame-level errors. Each carries the close code the peer must receive.
var (
	ErrReservedBits           = protocolError(ws.StatusProtocolError, "codec: reserved bits set")
	ErrReservedOpcode         = protocolError(ws.StatusProtocolError, "codec: reserved opcode")
	ErrUnmaskedFrame          = protocolError(ws.StatusProtocolError, "codec: client frame not masked")
	ErrControlTooLong         = protocolError(ws.StatusProtocolError, "codec: control frame payload over 125 bytes")
	ErrControlFragmented      = protocolError(ws.StatusProtocolError, "codec: fragmented control frame")
	ErrUnexpectedContinuation = protocolError(ws.StatusProtocolError, "codec: continuation frame without a message in progress")
	ErrExpectedContinuation   = protocolError(ws.StatusProtocolError, "codec: new data frame while a fragmented message is in progress")
	ErrNonMinimalLength       = protocolError(ws.StatusProtocolError, "codec: payload length not minimally encoded")
	ErrLengthOverflow         = protocolError(ws.StatusProtocolError, "codec: 64-bit payload length has its most significant bit set")
	ErrCloseBody              = protocolError(ws.StatusProtocolError, "codec: close frame payload of one byte")
	ErrCloseCode              = protocolError(ws.StatusProtocolError, "codec: close code not allowed on the wire")
	ErrInvalidUTF8            = protocolError(ws.StatusInvalidFramePayloadData, "codec: invalid UTF-8 in text message or close reason")
	ErrMessageTooBig          = protocolError(ws.StatusMessageTooBig, "codec: message exceeds the size limit")
	ErrBadCompression         = protocolError(ws.StatusInvalidFramePayloadData, "codec: compressed payload does not inflate")
)

// CloseCode returns the close code a connection failed with err must send:
// the code of a ProtocolError, or 1011 for anything else.
func CloseCode(err error) ws.StatusCode {
	var pe *ProtocolError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ws.StatusInternalServerError
}

// HTTPError is an upgrade request the server refuses with Status.
type HTTPError struct {
	Status int
	msg    string
}

func (e *HTTPError) Error() string { return e.msg }

func httpError(status int, msg string) *HTTPError { return &HTTPError{Status: status, msg: msg} }

// Upgrade request errors, each with the HTTP status it is answered with.
var (
	ErrHeaderTooLarge   = httpError(431, "codec: request header block over the limit")
	ErrMalformedRequest = httpError(400, "codec: malformed HTTP request")
	ErrMethodNotAllowed = httpError(405, "codec: method is not GET")
	ErrHTTPVersion      = httpError(400, "codec: HTTP version below 1.1")
	// ErrHTTPVersionNotSupported is a request in an HTTP major version
	// other than 1 (RFC 9110 section 15.6.6).
	ErrHTTPVersionNotSupported = httpError(505, "codec: HTTP major version is not 1")
	ErrDuplicateField          = httpError(400, "codec: repeated header field that may appear once")
	// ErrRequestBody is an upgrade request that announces a body: its bytes
	// would otherwise be read as WebSocket frames.
	ErrRequestBody        = httpError(400, "codec: upgrade request with a body")
	ErrMissingHost        = httpError(400, "codec: missing Host header")
	ErrNotUpgrade         = httpError(426, "codec: not a WebSocket upgrade request")
	ErrUnsupportedVersion = httpError(426, "codec: Sec-WebSocket-Version is not 13")
	ErrBadKey             = httpError(400, "codec: missing or malformed Sec-WebSocket-Key")
	ErrBadExtensions      = httpError(400, "codec: malformed Sec-WebSocket-Extensions")
)
