package upstream

import (
	"io"
	"net"
	"os"
	"syscall"

	"github.com/tracehop/tracehop/proxy/internal/sock"
)

// sender is what a Conn needs to write a request and wait for its answer
// in one visit to the poller (Send). The runtime's RawRead clears the
// connection's readiness before it calls step, and step writes the
// request: whatever the upstream sends back arrives after that clearing,
// so its wake-up cannot be lost. A readiness cleared there is one of
// before the request, when an upstream cannot have had anything to say
// but a close (the pool peeks at connections idle long enough to have
// one); the write then draws a reset, which is seen. The one case left is
// an upstream that half-closes a kept-alive connection, keeps it open
// without reading, and does so in the millisecond before the pool would
// peek: its request waits for the route's timeout instead of being tried
// again at once. HTTP servers close idle connections whole.
type sender struct {
	raw     syscall.RawConn
	step    func(fd uintptr) bool // rawStep, bound once: no allocation per request
	pending []byte                // the request not yet written; nil when none
	wrote   int                   // how much of pending has gone
	werr    error
	rbuf    []byte // the read's buffer while it waits
	rn      int
	rerr    error
}

// arm readies the deferred write on c, a plaintext TCP connection, and
// reports whether it could.
func (uc *Conn) arm(c net.Conn) bool {
	if uc.raw = syscallConn(c); uc.raw == nil {
		return false
	}
	uc.step = uc.rawStep
	return true
}

// sendAndRead writes the pending request, waits for the answer and reads
// it into p. A write that does not go whole at once (a full socket
// buffer: a large inline body) finishes through NetConn, which waits for
// room as any write does, and the read then goes through NetConn too.
func (uc *Conn) sendAndRead(p []byte) (int, error) {
	uc.rbuf, uc.rn, uc.rerr, uc.wrote, uc.werr = p, 0, nil, 0, nil
	err := uc.raw.Read(uc.step)
	uc.rbuf = nil
	if w := uc.pending; w != nil {
		uc.pending = nil
		if uc.werr != nil {
			return 0, &SendError{Written: uc.wrote, Err: uc.opError("write", uc.werr)}
		}
		if err != nil { // closed, or a deadline already past
			return 0, &SendError{Written: uc.wrote, Err: err}
		}
		n, err := uc.NetConn.Write(w[uc.wrote:])
		if err != nil {
			return 0, &SendError{Written: uc.wrote + n, Err: err}
		}
		return uc.NetConn.Read(p)
	}
	if err != nil {
		return 0, err // a deadline, or the connection closed
	}
	if uc.rerr != nil && uc.rerr != io.EOF {
		return uc.rn, uc.opError("read", uc.rerr)
	}
	return uc.rn, uc.rerr
}

// rawStep is RawRead's function: first the write, then the reads (see
// package sock for why they are made raw). It returns false to wait for
// the socket to be readable.
func (uc *Conn) rawStep(fd uintptr) bool {
	if w := uc.pending; w != nil {
		for uc.wrote < len(w) {
			n, err := sock.Write(int(fd), w[uc.wrote:])
			switch {
			case err == syscall.EAGAIN:
				return true // the rest waits for room, in sendAndRead
			case err != nil:
				uc.werr = err
				return true
			}
			uc.wrote += n
		}
		uc.pending = nil
		return false
	}
	n, err := sock.Read(int(fd), uc.rbuf)
	switch {
	case err == syscall.EAGAIN:
		return false // woken early: wait again
	case err == nil && n == 0:
		err = io.EOF
	}
	uc.rn, uc.rerr = n, err
	return true
}

// opError dresses a system call's error as net's own would be.
func (uc *Conn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: uc.NetConn.LocalAddr(), Addr: uc.NetConn.RemoteAddr(), Err: os.NewSyscallError(op, err)}
}
