package upstream

import (
	"bufio"
	"net"
	"syscall"
)

// SendError is a request's write that failed, with how much of it left:
// none (Written 0) means the upstream cannot have seen it, and it may go
// again on another connection whatever its method.
type SendError struct {
	Written int   // bytes of the request that went before the error
	Err     error // the write's
}

func (e *SendError) Error() string { return e.Err.Error() }

// Unwrap returns the write's error.
func (e *SendError) Unwrap() error { return e.Err }

// Send writes a request held whole in b (head and any body), to be
// answered through Reader. On a plaintext TCP connection on Linux the
// write is deferred to Reader's next read, which writes b and then waits
// for the answer without a read first: an answer cannot come before its
// request, so the read that would fail with EAGAIN (about 0.2 µs of kernel
// time per request, one of the two that set tracehop's untraced cost above
// nginx's and HAProxy's: README, system calls) is not made. A write that
// fails, now or then, returns a *SendError; b must stay untouched until
// Reader has been read.
func (uc *Conn) Send(b []byte) error {
	if uc.raw != nil {
		uc.pending = b
		return nil
	}
	n, err := uc.NetConn.Write(b)
	if err != nil {
		return &SendError{Written: n, Err: err}
	}
	return nil
}

// reader is what a Conn's Reader reads: NetConn, after a deferred Send's
// write when one is pending.
type reader struct{ uc *Conn }

func (r reader) Read(p []byte) (int, error) {
	if r.uc.pending == nil {
		return r.uc.NetConn.Read(p)
	}
	return r.uc.sendAndRead(p)
}

// newConn wraps a dialed connection; raw is the TCP connection under it
// (c itself without TLS).
func newConn(c, raw net.Conn) *Conn {
	uc := &Conn{NetConn: c, fd: connFD(raw)}
	if c == raw && uc.arm(c) {
		uc.Reader = bufio.NewReaderSize(reader{uc}, readBufSize)
	} else {
		uc.Reader = bufio.NewReaderSize(c, readBufSize)
	}
	return uc
}

// syscallConn is c's raw connection, or nil when it has none.
func syscallConn(c net.Conn) syscall.RawConn {
	if sc, ok := c.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			return raw
		}
	}
	return nil
}
