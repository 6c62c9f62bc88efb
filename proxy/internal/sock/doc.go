// Package sock reads and writes the fast path's non-blocking sockets with
// the system call alone. Go's own calls tell the scheduler around each
// one (entersyscall and exitsyscall, so that a call that blocks gives up
// its processor): about 200 instructions per call, which a call on a
// non-blocking socket never needs, since it cannot block. An untraced
// request makes four or five such calls.
//
// It is its own package because both sides of the fast path make them:
// the client's connections in proxy, and the upstream connections in
// proxy/internal/upstream. It does not wait for a socket to be ready:
// the callers do, through the runtime's poller (syscall.RawConn).
package sock
