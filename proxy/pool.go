package proxy

import (
	"bufio"
	"context"
	"log/slog"
	"net"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/tracehop/tracehop/proxy/internal/deadline"
)

// upstreamConn is a kept-alive HTTP/1.1 connection to an endpoint.
type upstreamConn struct {
	c        net.Conn
	fd       int // for the idle check; -1 when the connection has none
	br       *bufio.Reader
	wb       []byte
	pool     *connPool
	reused   bool // it served a request before
	answered bool // the upstream sent bytes for this request
	rd       deadline.Read
	// idleSince is when it last went back to the pool.
	idleSince time.Time
}

func (uc *upstreamConn) close() { uc.c.Close() }

// connFD returns the descriptor of a TCP connection for idleState, or -1.
// It stays valid while the connection is open, and tracehop alone closes
// its upstream connections.
func connFD(c net.Conn) int {
	fd := -1
	if sc, ok := c.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			raw.Control(func(f uintptr) { fd = int(f) })
		}
	}
	return fd
}

// connPool keeps an endpoint's idle connections, most recent first.
type connPool struct {
	addr    string
	log     *slog.Logger
	mu      sync.Mutex
	idle    []*upstreamConn // oldest first
	maxIdle int
	// Connections idle longer than idleTimeout are closed, as net/http's
	// Transport does for the other path: an upstream that scaled down, or
	// traffic that stopped, leaves no sockets open for good. The reaper
	// timer runs only while there are idle connections.
	idleTimeout time.Duration
	reaper      *time.Timer
	closed      bool
	tls         *upstreamTLS // nil: plaintext
}

// upstreamIdleTimeout matches the net/http path's IdleConnTimeout.
const upstreamIdleTimeout = 90 * time.Second

// get takes the most recently used idle connection that is still fit for a
// request, else dials. An idle connection that has something to read is
// not (see peekAfterIdle for when it looks): bytes there (a body after the answer to a HEAD, more than a
// Content-Length said, anything after a 204) would be read as the next
// client's response, and every later answer on it would be one late; an
// end of stream means the upstream closed it (its keep-alive timeout),
// and a request written there would be lost. One non-blocking peek per
// request tells, before anything is written (nginx, HAProxy and net/http
// watch their idle connections for the same reasons).
func (p *connPool) get(d *net.Dialer) (*upstreamConn, error) {
	for {
		p.mu.Lock()
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			return p.dial(d)
		}
		uc := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		if time.Since(uc.idleSince) >= peekAfterIdle {
			if state := uc.idleState(); state != idleQuiet {
				if state == idleSpoke && p.log != nil {
					p.log.Debug("closed an idle upstream connection that sent unsolicited bytes", "upstream", p.addr)
				}
				uc.close()
				continue
			}
		}
		uc.reused, uc.answered = true, false
		return uc, nil
	}
}

// peekAfterIdle is how long a connection must have been idle before get
// peeks at it. The peek is a system call (about 0.55 µs here: go test
// -bench IdleCheck ./proxy/), as much as the fast path's whole budget for
// it; under load a connection goes back out within microseconds, where
// what an upstream wrote after its answer is still in the buffer put
// checks, and the window for bytes to arrive unseen is under a
// millisecond. A connection the upstream closed (its keep-alive timeout)
// or wrote to later (the HEAD case of issue 11: 150 ms) was idle longer,
// and is peeked.
const peekAfterIdle = time.Millisecond

// What an idle connection's peek found.
const (
	idleQuiet  = iota // nothing: fit for a request
	idleSpoke         // bytes nobody asked for
	idleClosed        // end of stream or an error
)

// dial opens a new connection, bypassing the idle ones.
func (p *connPool) dial(d *net.Dialer) (*upstreamConn, error) {
	if p.tls != nil {
		tc, raw, err := p.dialTLSRaw(context.Background(), d)
		if err != nil {
			return nil, err
		}
		// The idle check peeks at the TCP connection under TLS.
		return &upstreamConn{c: tc, fd: connFD(raw), br: bufio.NewReaderSize(tc, connBufSize), pool: p}, nil
	}
	c, err := d.Dial("tcp", p.addr)
	if err != nil {
		return nil, err
	}
	return &upstreamConn{c: c, fd: connFD(c), br: bufio.NewReaderSize(c, connBufSize), pool: p}, nil
}

func (p *connPool) put(uc *upstreamConn) {
	if uc.br.Buffered() > 0 {
		uc.close() // the upstream sent more than the response
		return
	}
	p.mu.Lock()
	if len(p.idle) < p.maxIdle && !p.closed {
		uc.idleSince = time.Now()
		p.idle = append(p.idle, uc)
		uc = nil
		if p.idleTimeout > 0 && p.reaper == nil {
			p.reaper = time.AfterFunc(p.idleTimeout, p.reap)
		}
	}
	p.mu.Unlock()
	if uc != nil {
		uc.close()
	}
}

// reap closes the connections idle for idleTimeout, and comes back when the
// oldest left will be.
func (p *connPool) reap() {
	p.mu.Lock()
	if p.reaper == nil { // closeIdle stopped it as it fired
		p.mu.Unlock()
		return
	}
	now := time.Now()
	stale := p.takeIdleUntil(now.Add(-p.idleTimeout))
	if len(p.idle) > 0 {
		p.reaper.Reset(p.idleTimeout - now.Sub(p.idle[0].idleSince))
	} else {
		p.reaper = nil
	}
	p.mu.Unlock()
	for _, uc := range stale {
		uc.close()
	}
}

// dropIdleSince closes the idle connections that have been idle since t or
// longer.
func (p *connPool) dropIdleSince(t time.Time) {
	p.mu.Lock()
	stale := p.takeIdleUntil(t)
	p.mu.Unlock()
	for _, uc := range stale {
		uc.close()
	}
}

// takeIdleUntil removes from the pool the connections idle since t or
// earlier (the oldest, at the front) and returns them. p.mu is held.
func (p *connPool) takeIdleUntil(t time.Time) []*upstreamConn {
	n := 0
	for n < len(p.idle) && !p.idle[n].idleSince.After(t) {
		n++
	}
	stale := slices.Clone(p.idle[:n])
	p.idle = slices.Delete(p.idle, 0, n)
	return stale
}

// closeIdle closes every idle connection, for good: connections handed
// back later are closed too.
func (p *connPool) closeIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	if p.reaper != nil {
		p.reaper.Stop()
		p.reaper = nil
	}
	p.mu.Unlock()
	for _, uc := range idle {
		uc.close()
	}
}
