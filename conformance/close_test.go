package conformance_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/herald-ws/herald/internal/testutil"
	"github.com/herald-ws/herald/internal/wstest"
)

// TestClose mirrors Autobahn 7.x: the closing handshake, close codes and
// reasons, and what happens to frames that follow a close.
func TestClose(t *testing.T) {
	t.Parallel()
	addr := start(t, testutil.Options{})
	cases := []scenario{
		{name: "7.1.1 echo, then close", do: do(send(text("Hello World!")), wantText("Hello World!"), send(closeFrame(1000, ""))), close: closeNormal},
		{name: "7.1.2 two closes in one write", do: do(send(closeFrame(1000, ""), closeFrame(1000, ""))), close: closeNormal},
		{name: "7.1.3 ping after close is not answered", do: do(send(closeFrame(1000, ""), ping([]byte("after close")))), close: closeNormal},
		{name: "7.1.4 text after close is not echoed", do: do(send(closeFrame(1000, ""), text("after close"))), close: closeNormal},
		{name: "7.1.5 fragment, close, continuation", do: do(send(frame(false, 0, wstest.OpText, []byte("fragment1")), closeFrame(1000, ""), cont(true, "fragment2"))), close: closeNormal},
		{name: "7.1.6 large message, close, ping", do: do(send(binary(binOf(256<<10)), closeFrame(1000, ""), ping(nil)), want(wstest.OpBinary, binOf(256<<10))), close: closeNormal},
		{name: "7.x invalid frame after close is ignored", do: do(send(closeFrame(1000, ""), frame(true, 7, 0xF, nil, wstest.Unmasked()))), close: closeNormal},
		{name: "7.3.1 close without body", do: do(send(emptyClose())), close: closeNormal},
		{name: "7.3.2 close with a 1-byte body", do: do(send(frame(true, 0, wstest.OpClose, []byte{0x03}))), close: closeProtocol},
		{name: "7.3.3 close 1000 without reason", do: do(send(closeFrame(1000, ""))), close: closeNormal},
		{name: "7.3.4 close 1000 with reason", do: do(send(closeFrame(1000, "Hello World!"))), close: closeNormal},
		{name: "7.3.5 close with a 125-byte payload", do: do(send(closeFrame(1000, strings.Repeat("*", 123)))), close: closeNormal},
		{name: "7.3.6 close with a 126-byte payload", do: do(send(closeFrame(1000, strings.Repeat("*", 124)))), close: closeProtocol},
		{name: "7.3.x close reason of 123 multi-byte bytes", do: do(send(closeFrame(1000, strings.Repeat("\u00e9", 61)+"!"))), close: closeNormal},
		{name: "7.5.1 close reason with invalid UTF-8", do: do(send(closeFrame(1000, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"))), close: closeInvalidUTF},
		{name: "7.5.x close reason ending inside a code point", do: do(send(closeFrame(1000, "abc\xe2\x82"))), close: closeInvalidUTF},
		{name: "7.x close bytewise", do: do(sendChunked(1, 0, closeFrame(1000, "bytewise"))), close: closeNormal},
		{name: "7.x unmasked close", do: do(send(frame(true, 0, wstest.OpClose, wstest.ClosePayload(1000, ""), wstest.Unmasked()))), close: closeProtocol},
	}
	for _, code := range []uint16{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999} {
		cases = append(cases,
			scenario{name: fmt.Sprintf("7.7 valid code %d", code), do: do(send(closeFrame(code, ""))), close: int(code)},
			scenario{name: fmt.Sprintf("7.7 valid code %d with reason", code), do: do(send(closeFrame(code, "reason"))), close: int(code)},
		)
	}
	for _, code := range []uint16{0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535} {
		cases = append(cases, scenario{name: fmt.Sprintf("7.9 invalid code %d", code),
			do: do(send(closeFrame(code, ""))), close: closeProtocol})
	}
	run(t, addr, cases)
}

// TestPromptTCPClose checks that the server ends TCP right after its close
// frame, both when it answers the client's close and when it fails the
// connection (then it sends FIN at once and drains what the client still
// sends), instead of at its next periodic sweep. The close timeout is long,
// so a FIN left to the sweep would arrive up to a second late; five cases
// in a row make a slow path unlikely to pass by chance.
func TestPromptTCPClose(t *testing.T) {
	t.Parallel()
	addr := start(t, testutil.Options{CloseTimeout: 30 * time.Second})
	const within = 400 * time.Millisecond
	cases := []struct {
		name string
		send []byte
		code int
	}{
		{"close answered", closeFrame(1000, ""), closeNormal},
		{"reserved opcode", frame(true, 0, 3, nil), closeProtocol},
		{"invalid UTF-8", text("\xff"), closeInvalidUTF},
		{"reserved bits", frame(true, wstest.RSV2, wstest.OpBinary, nil), closeProtocol},
		{"invalid close code", closeFrame(1005, ""), closeProtocol},
	}
	for _, tc := range cases {
		c := wstest.Dial(t, addr, "/echo", nil)
		c.Write(tc.send)
		f := c.ReadFrame()
		if f.OpCode != wstest.OpClose || len(f.Payload) < 2 || int(f.Payload[0])<<8|int(f.Payload[1]) != tc.code {
			t.Fatalf("%s: got %v, want close %d", tc.name, f, tc.code)
		}
		start := time.Now()
		c.Timeout = within
		c.ExpectEOF()
		t.Logf("%s: TCP closed %v after the close frame", tc.name, time.Since(start))
	}
}
