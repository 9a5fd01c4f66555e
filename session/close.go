package session

import "github.com/gobwas/ws"

// CloseReason says why a connection ended. It feeds logs and metrics.
type CloseReason uint8

// Close reasons.
const (
	ClosePeer              CloseReason = iota + 1 // the peer sent a close frame or hung up
	CloseProtocolError                            // the peer broke RFC 6455; failed with 1002, 1007 or 1009
	CloseHandshakeRejected                        // the upgrade was refused with an HTTP error
	CloseHandshakeTimeout                         // no complete upgrade within the handshake timeout
	CloseIdleTimeout                              // nothing received within the idle timeout
	CloseSlowConsumer                             // outbound bytes passed the write-buffer limit; 1008
	CloseGoingAway                                // server shutdown; 1001
	ClosePolicy                                   // the application closed it for policy; 1008
	CloseTimeout                                  // the peer never answered our close frame
	CloseResync                                   // the server lost continuity on a channel the client subscribes to; 1012, reconnect and recover with since
	CloseInboundBudget                            // its read would pass the server-wide inbound budget; 1008
	CloseDisconnected                             // the server API disconnected its user (POST /api/disconnect); 4100
	CloseTokenExpired                             // its token expired and no valid refresh came within the grace; 4001
	CloseKeepAlive                                // kept open after a long poll's answer, no next request within the handshake timeout; closed without a response
)

var closeReasonNames = [...]string{
	ClosePeer:              "peer",
	CloseProtocolError:     "protocol_error",
	CloseHandshakeRejected: "handshake_rejected",
	CloseHandshakeTimeout:  "handshake_timeout",
	CloseIdleTimeout:       "idle_timeout",
	CloseSlowConsumer:      "slow_consumer",
	CloseGoingAway:         "going_away",
	ClosePolicy:            "policy",
	CloseTimeout:           "close_timeout",
	CloseResync:            "resync",
	CloseInboundBudget:     "inbound_budget",
	CloseDisconnected:      "disconnected",
	CloseTokenExpired:      "token_expired",
	CloseKeepAlive:         "keepalive_timeout",
}

func (r CloseReason) String() string {
	if int(r) < len(closeReasonNames) && closeReasonNames[r] != "" {
		return closeReasonNames[r]
	}
	return "unknown"
}

// StatusServiceRestart (1012, IANA registry) asks the client to reconnect:
// Herald sends it when a subscriber must recover from history.
const StatusServiceRestart ws.StatusCode = 1012

// StatusDisconnected (4100, private use) closes a connection whose user
// the server API disconnected; the client should not reconnect on its own.
const StatusDisconnected ws.StatusCode = 4100

// StatusTokenExpired (4001, private use) closes a connection whose token
// expired and was not refreshed in time: get a new token and reconnect.
const StatusTokenExpired ws.StatusCode = 4001

// code is the close code the server sends for a reason it initiates.
func (r CloseReason) code() ws.StatusCode {
	switch r {
	case CloseSlowConsumer, ClosePolicy, CloseInboundBudget:
		return ws.StatusPolicyViolation
	case CloseGoingAway, CloseIdleTimeout:
		return ws.StatusGoingAway
	case CloseResync:
		return StatusServiceRestart
	case CloseDisconnected:
		return StatusDisconnected
	case CloseTokenExpired:
		return StatusTokenExpired
	}
	return ws.StatusNormalClosure
}
