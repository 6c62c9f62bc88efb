package upstream

import (
	"bufio"
	"context"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/tracehop/tracehop/proxy/internal/deadline"
)

// Conn is a kept-alive HTTP/1.1 connection to an endpoint, lent to one
// request at a time: Endpoint.Get lends it, Endpoint.Put takes it back (or
// the data plane closes it). The exported fields are the data plane's,
// for the request it serves; what the pool keeps about the connection is
// read through methods.
type Conn struct {
	// NetConn is the connection the request is written to: TLS when the
	// cluster speaks it.
	NetConn net.Conn
	// Reader reads NetConn. Put looks at what is left in it: a
	// connection is pooled only with nothing buffered.
	Reader *bufio.Reader
	// WriteBuf is the data plane's buffer for the request it writes,
	// kept with the connection so that its memory serves every request.
	WriteBuf []byte
	// ReadDeadline is NetConn's read deadline, moved only when it must.
	ReadDeadline deadline.Read
	// Answered is set by the data plane once the upstream sent bytes for
	// the request in hand; Get clears it. A reused connection that fails
	// before any answer was closed by the upstream as it was taken: the
	// request may go again on a new one.
	Answered bool

	// Bodiless is set by the data plane when the answer in hand had no
	// body although the upstream could have sent one after it (HEAD,
	// 204, 304): Put then parks the connection, out of use for
	// parkBodiless, after which get peeks at it before lending it.
	Bodiless bool

	fd     int  // for the idle check; -1 when the connection has none
	sender      // Send's deferred write, where there is one
	reused bool // it served a request before
	// parked: not to be lent before idleSince+parkBodiless
	parked bool
	// idleSince is when it last went back to the pool, on deadline.Mono's
	// clock.
	idleSince time.Duration
}

// Close closes the connection; it goes back to no pool.
func (uc *Conn) Close() { uc.NetConn.Close() }

// Reused reports whether the connection served a request before this one:
// only such a connection can have been closed by its upstream unseen.
func (uc *Conn) Reused() bool { return uc.reused }

// IdleSince is when the connection last went back to its pool, on
// deadline.Mono's clock, for Endpoint.DropIdleSince.
func (uc *Conn) IdleSince() time.Duration { return uc.idleSince }

// connFD returns the descriptor of a TCP connection for idleState, or -1.
// It stays valid while the connection is open, and tracehop alone closes
// its upstream connections.
func connFD(c net.Conn) int {
	fd := -1
	if raw := syscallConn(c); raw != nil {
		raw.Control(func(f uintptr) { fd = int(f) })
	}
	return fd
}

// connPool keeps an endpoint's idle connections and lends the most
// recent first.
type connPool struct {
	addr    string
	log     *slog.Logger
	mu      sync.Mutex
	dialer  *net.Dialer // the cluster's
	idle    []*Conn     // oldest first
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

// readBufSize is each connection's read buffer. The data plane reads a
// response head whole in it (Reader.Size bounds the head).
const readBufSize = 16 << 10

// get takes the most recently used idle connection that is still fit for a
// request, else dials; a parked one (parkBodiless) only once its time is
// up. An idle connection that has something to read is not fit (see
// peekAfterIdle for when it looks): bytes there (a body after the answer
// to a HEAD, more than a Content-Length said, anything after a 204) would
// be read as the next client's response, and every later answer on it
// would be one late; an end of stream means the upstream closed it (its
// keep-alive timeout), and a request written there would be lost. One non-blocking peek per
// request tells, before anything is written (nginx, HAProxy and net/http
// watch their idle connections for the same reasons).
func (p *connPool) get() (*Conn, error) {
	now := deadline.Mono()
	for {
		p.mu.Lock()
		i := len(p.idle) - 1
		for ; i >= 0 && p.idle[i].parked; i-- {
			if now-p.idle[i].idleSince >= parkBodiless {
				p.idle[i].parked = false
				break
			}
		}
		if i < 0 {
			p.mu.Unlock()
			return p.dial()
		}
		uc := p.idle[i]
		n := len(p.idle)
		copy(p.idle[i:], p.idle[i+1:])
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		if now-uc.idleSince >= peekAfterIdle {
			if state := uc.idleState(); state != idleQuiet {
				if state == idleSpoke && p.log != nil {
					p.log.Debug("closed an idle upstream connection that sent unsolicited bytes", "upstream", p.addr)
				}
				uc.Close()
				continue
			}
		}
		uc.reused, uc.Answered = true, false
		return uc, nil
	}
}

// peekAfterIdle is how long a connection must have been idle before get
// peeks at it. The peek is a system call (about 0.55 µs here: go test
// -bench IdleCheck ./proxy/internal/upstream/), as much as the fast path's
// whole budget for it; under load a connection goes back out within
// microseconds, where what an upstream wrote after its answer is still in
// the buffer put checks, and the window for bytes to arrive unseen is under
// a millisecond. A connection the upstream closed (its keep-alive timeout)
// or wrote to later (the HEAD case of issue 11: 150 ms) was idle longer,
// and is peeked.
const peekAfterIdle = time.Millisecond

// parkBodiless is how long a connection put back after a bodiless answer
// (Conn.Bodiless) is parked: get lends the others, or dials, until then,
// and peeks at it as at any other after. An upstream that wrongly writes a
// body there (after its answer to a HEAD, a 204 or a 304) writes it at
// once, and a connection lent straight back would hand those bytes to the
// next client: in a review, 0.3 ms late, a fifth of the next clients'
// requests got wrong answers. Bodiless answers are few, so the parked
// connections are too; 10 ms leaves room for an upstream descheduled
// between its two writes.
const parkBodiless = 10 * time.Millisecond

// What an idle connection's peek found.
const (
	idleQuiet  = iota // nothing: fit for a request
	idleSpoke         // bytes nobody asked for
	idleClosed        // end of stream or an error
)

// dial opens a new connection, bypassing the idle ones.
func (p *connPool) dial() (*Conn, error) {
	if p.tls != nil {
		tc, raw, err := p.dialTLSRaw(context.Background())
		if err != nil {
			return nil, err
		}
		// The idle check peeks at the TCP connection under TLS.
		return newConn(tc, raw), nil
	}
	c, err := p.dialer.Dial("tcp", p.addr)
	if err != nil {
		return nil, err
	}
	return newConn(c, c), nil
}

func (p *connPool) put(uc *Conn) {
	if uc.Reader.Buffered() > 0 {
		uc.Close() // the upstream sent more than the response
		return
	}
	uc.parked, uc.Bodiless = uc.Bodiless, false
	p.mu.Lock()
	if len(p.idle) < p.maxIdle && !p.closed {
		uc.idleSince = deadline.Mono()
		p.idle = append(p.idle, uc)
		uc = nil
		if p.idleTimeout > 0 && p.reaper == nil {
			p.reaper = time.AfterFunc(p.idleTimeout, p.reap)
		}
	}
	p.mu.Unlock()
	if uc != nil {
		uc.Close()
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
	now := deadline.Mono()
	stale := p.takeIdleUntil(now - p.idleTimeout)
	if len(p.idle) > 0 {
		p.reaper.Reset(p.idleTimeout - (now - p.idle[0].idleSince))
	} else {
		p.reaper = nil
	}
	p.mu.Unlock()
	for _, uc := range stale {
		uc.Close()
	}
}

// dropIdleSince closes the idle connections that have been idle since t or
// longer.
func (p *connPool) dropIdleSince(t time.Duration) {
	p.mu.Lock()
	stale := p.takeIdleUntil(t)
	p.mu.Unlock()
	for _, uc := range stale {
		uc.Close()
	}
}

// takeIdleUntil removes from the pool the connections idle since t or
// earlier (the oldest, at the front) and returns them. p.mu is held.
func (p *connPool) takeIdleUntil(t time.Duration) []*Conn {
	n := 0
	for n < len(p.idle) && p.idle[n].idleSince <= t {
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
		uc.Close()
	}
}
