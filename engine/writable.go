package engine

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// writeWaker tells loops when sockets with a backlog can take more bytes.
//
// Sessions write to their sockets themselves (see session.Flush: gnet's
// outbound buffer cannot be dropped, and a slow consumer's close frame
// must not wait behind it), and gnet has no writable callback for its
// handlers. So the engine keeps one epoll instance of its own, holding only
// the sockets that have a backlog, armed one-shot for EPOLLOUT, and one
// goroutine waiting on it that hands each ready socket to its loop. A
// socket without a backlog costs nothing here.
type writeWaker struct {
	epfd int
	stop int // eventfd that ends run
	done chan struct{}
}

func newWriteWaker() (*writeWaker, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("engine: epoll_create1: %w", err)
	}
	stop, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("engine: eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(stop), Pad: -1}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, stop, &ev); err != nil {
		_ = unix.Close(epfd)
		_ = unix.Close(stop)
		return nil, fmt.Errorf("engine: epoll_ctl: %w", err)
	}
	return &writeWaker{epfd: epfd, stop: stop, done: make(chan struct{})}, nil
}

// arm asks for one wake-up of loop number idx when fd is writable (or
// failed). Safe from any goroutine.
func (w *writeWaker) arm(fd, idx int) error {
	ev := unix.EpollEvent{Events: unix.EPOLLOUT | unix.EPOLLONESHOT, Fd: int32(fd), Pad: int32(idx)}
	err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_MOD, fd, &ev)
	if err == unix.ENOENT {
		err = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, fd, &ev)
	}
	return err
}

// forget removes fd; call it before the socket is closed.
func (w *writeWaker) forget(fd int) {
	_ = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, fd, nil)
}

// run waits for writable sockets until close; wake hands one to its loop.
func (w *writeWaker) run(wake func(idx, fd int)) {
	defer close(w.done)
	events := make([]unix.EpollEvent, 128)
	for {
		n, err := unix.EpollWait(w.epfd, events, -1)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			return
		}
		for _, ev := range events[:n] {
			if ev.Pad < 0 {
				return
			}
			wake(int(ev.Pad), int(ev.Fd))
		}
	}
}

// close ends run and releases the epoll instance.
func (w *writeWaker) close() {
	var one = [8]byte{1}
	_, _ = unix.Write(w.stop, one[:])
	<-w.done
	_ = unix.Close(w.epfd)
	_ = unix.Close(w.stop)
}
