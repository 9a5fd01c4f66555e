package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"time"

	"github.com/gobwas/ws"
)

// conn is one client WebSocket connection: a TCP connection, or for
// wss:// a *tls.Conn over one. Its methods are not safe for concurrent use
// except that one goroutine may read while another writes.
type conn struct {
	net.Conn
	br *bufio.Reader
}

// isTLS reports whether c is a wss:// connection, which no gnet loop can
// take over (see pushPart.enroll).
func (c *conn) isTLS() bool {
	_, ok := c.Conn.(*tls.Conn)
	return ok
}

// dial opens a TCP connection from src (nil: any) to u, with tc (not nil
// for wss://) runs the TLS handshake over it, and performs the upgrade,
// all within timeout; ctx aborts the TCP connect and the TLS handshake.
// The upgrade is written by hand so that the generator's cost per
// connection stays small and visible.
func dial(ctx context.Context, u *url.URL, src net.IP, timeout time.Duration, tc *tls.Config) (*conn, error) {
	d := net.Dialer{Timeout: timeout}
	if src != nil {
		d.LocalAddr = &net.TCPAddr{IP: src}
	}
	nc, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, err
	}
	_ = nc.SetDeadline(time.Now().Add(timeout))
	if tc != nil {
		tlc := tls.Client(nc, tc)
		if err := tlc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, fmt.Errorf("tls: %w", err)
		}
		nc = tlc
	}
	var key [16]byte
	_, _ = rand.Read(key[:])
	k := base64.StdEncoding.EncodeToString(key[:])
	path := u.RequestURI()
	req := "GET " + path + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + k + "\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		nc.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(nc, 4096)
	status, err := br.ReadSlice('\n')
	if err != nil {
		nc.Close()
		return nil, err
	}
	if !bytes.HasPrefix(status, []byte("HTTP/1.1 101")) {
		nc.Close()
		return nil, fmt.Errorf("upgrade refused: %q", bytes.TrimSpace(status))
	}
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			nc.Close()
			return nil, err
		}
		if len(bytes.TrimSpace(line)) == 0 {
			break
		}
	}
	_ = nc.SetDeadline(time.Time{})
	c := &conn{Conn: nc}
	if br.Buffered() > 0 {
		c.br = br
	} else {
		// Drop the 4 KiB reader: a held idle connection should cost the
		// generator as little as possible. readFrame re-creates it.
		c.br = nil
	}
	return c, nil
}

// appendClientFrame appends a masked client frame to dst.
func appendClientFrame(dst []byte, op ws.OpCode, payload []byte) []byte {
	b0 := 0x80 | byte(op)
	n := len(payload)
	switch {
	case n < 126:
		dst = append(dst, b0, 0x80|byte(n))
	case n <= 0xffff:
		dst = append(dst, b0, 0x80|126, byte(n>>8), byte(n))
	default:
		dst = append(dst, b0, 0x80|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	var mask [4]byte
	_, _ = rand.Read(mask[:])
	dst = append(dst, mask[:]...)
	start := len(dst)
	dst = append(dst, payload...)
	ws.Cipher(dst[start:], mask, 0)
	return dst
}

// frame is a server frame read by readFrame; Payload aliases buf.
type frame struct {
	OpCode  ws.OpCode
	Fin     bool
	Payload []byte
}

var errMaskedServerFrame = errors.New("loadtest: server sent a masked frame")

// maxServerFrame bounds the payload readFrame accepts: a hostile or broken
// server's 64-bit length must not become a huge (or negative) allocation.
const maxServerFrame = 64 << 20

var errServerFrameTooLarge = errors.New("loadtest: server frame exceeds 64 MiB")

// readFrame reads one server frame into buf (grown as needed) through the
// connection's buffered reader.
func (c *conn) readFrame(buf []byte) (frame, []byte, error) {
	if c.br == nil {
		c.br = bufio.NewReaderSize(c.Conn, 4096)
	}
	return readFrameFrom(c.br, buf)
}

// readFrameExact reads one server frame without reading ahead of it, so
// that whatever follows stays in the socket for the next owner (a gnet
// loop). It costs three reads per frame: for handshakes only.
func (c *conn) readFrameExact(buf []byte) (frame, []byte, error) {
	if c.br != nil {
		return readFrameFrom(c.br, buf)
	}
	return readFrameFrom(c.Conn, buf)
}

func readFrameFrom(r io.Reader, buf []byte) (frame, []byte, error) {
	var hdr [10]byte
	if _, err := io.ReadFull(r, hdr[:2]); err != nil {
		return frame{}, buf, err
	}
	f := frame{OpCode: ws.OpCode(hdr[0] & 0x0f), Fin: hdr[0]&0x80 != 0}
	if hdr[1]&0x80 != 0 {
		return f, buf, errMaskedServerFrame
	}
	n := int(hdr[1] & 0x7f)
	switch n {
	case 126:
		if _, err := io.ReadFull(r, hdr[2:4]); err != nil {
			return f, buf, err
		}
		n = int(binary.BigEndian.Uint16(hdr[2:4]))
	case 127:
		if _, err := io.ReadFull(r, hdr[2:10]); err != nil {
			return f, buf, err
		}
		l := binary.BigEndian.Uint64(hdr[2:10])
		if l > maxServerFrame {
			return f, buf, errServerFrameTooLarge
		}
		n = int(l)
	}
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return f, buf, err
	}
	f.Payload = buf
	return f, buf, nil
}
