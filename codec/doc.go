// Package codec turns bytes into WebSocket protocol events and back; it never
// touches sockets.
//
// It has three parts, each a push parser or an appender that works on byte
// slices the caller owns:
//
//   - ParseRequest reads an HTTP/1.1 upgrade request from however many bytes
//     have arrived so far and reports "need more" until the header block is
//     complete. It applies RFC 9112's grammar strictly (request line, field
//     names and values, repeated singleton fields, no body), since the bytes
//     after the block are read as frames. The Sec-WebSocket-Protocol offer
//     is kept for the application (Request.OffersProtocol), which selects
//     one in Request.Subprotocol. AppendAccept and AppendHTTPError write
//     the response.
//   - Decoder.Next decodes RFC 6455 frames from the bytes the caller has
//     buffered (in Herald, the bytes gnet's inbound buffer hands to
//     OnTraffic). It validates every rule of the RFC as bytes arrive,
//     including UTF-8 across fragments and partial frames, and unmasks
//     payloads in place.
//   - AppendFrame, AppendCloseFrame and AppendMessage encode server frames,
//     the latter compressing with permessage-deflate (RFC 7692);
//     AppendMessageWindow keeps every back-reference within a negotiated
//     server_max_window_bits by compressing in independent chunks.
//
// Buffer lifetime: slices in a Request or an Event alias either the caller's
// input or a pooled buffer owned by the Decoder. They are valid only until
// the next call on the same Decoder (or the caller discards the input),
// whichever comes first. Nothing here keeps a reference to the input after
// returning.
//
// Concurrency: a Decoder belongs to one connection and must be used by one
// goroutine at a time (in Herald, the connection's event loop). The package
// level functions are safe for concurrent use; compressors and decompressors
// come from sync.Pools, so permessage-deflate is negotiated without context
// takeover in either direction and no connection holds a flate state while
// idle.
package codec
