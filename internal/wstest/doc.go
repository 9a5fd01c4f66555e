// Package wstest is a raw WebSocket client for tests: it speaks RFC 6455 over
// a plain net.Conn, byte by byte, and hides nothing.
//
// The upgrade request is written by hand and the Sec-WebSocket-Accept answer
// is checked with crypto/sha1; frames are encoded exactly as asked, including
// the ones a real client must never send (reserved bits and opcodes,
// unmasked frames, non-minimal or overflowing lengths, oversized or
// fragmented control frames); bytes can be written in chunks down to one
// byte per write; and every frame the server sends is decoded and checked
// (unmasked, minimally encoded) before the test sees it. Every read and write
// has a deadline, so a server that stays silent fails the test instead of
// hanging it.
//
// It never imports Herald's codec: a server checked against its own encoder
// would prove nothing. It owns no goroutines; a Conn's methods report
// failures with the testing.TB it was created with and therefore must be
// called from that test's goroutine.
package wstest
