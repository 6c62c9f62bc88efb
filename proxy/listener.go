package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// listener is one bound listening address (it holds the net.Listener) and
// the fast-path connections it accepted. It outlives configurations: a
// reload that keeps a configured listener's address keeps its listener, so
// the port never refuses, and points it at the frontend built from the new
// config (cur). Each request loads cur once, when its head has arrived,
// and runs on that frontend to its end.
type listener struct {
	name string // the configured listener's name when it was bound, for logs
	addr string // the configured address, which identifies the listener across reloads
	// reusePort is whether ln was bound with SO_REUSEPORT (the listener's
	// reuse_port when it was bound).
	reusePort bool
	ln        net.Listener
	log       *slog.Logger
	cur       atomic.Pointer[frontend]

	closing atomic.Bool
	connsMu sync.Mutex
	conns   map[*fastConn]struct{}
	connsWG sync.WaitGroup

	// count is its client connections, against the max_connections of the
	// frontend in force; env.process, the process's.
	count connCount
	env   listenerEnv
	// atLimit is what the rate-limited log line at a limit reports.
	atLimit struct {
		lastLog          atomic.Int64 // Unix ns
		evicted, refused atomic.Int64 // since the last line
	}
}

// listenerEnv is what a listener shares with the others of its Server.
type listenerEnv struct {
	process *connCount
	metrics *metrics
	// peers returns every listener of the server: at the process's limit,
	// the idle connections of any of them make room.
	peers func() []*listener
}

func newListener(name, addr string, log *slog.Logger, env listenerEnv) *listener {
	return &listener{name: name, addr: addr, log: log, conns: map[*fastConn]struct{}{}, env: env}
}

// serve accepts connections until ln is closed.
func (s *listener) serve() error {
	var delay time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of file descriptors and the like: back off as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed; retrying", "listener", s.name, "error", err, "in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		if life, ok := s.admit(c); ok {
			if l := s.cur.Load(); l.tls == nil {
				if fc, ok := s.newConn(l, c, life, nil, nil); ok {
					go s.serveFast(fc, nil)
				}
				continue
			}
			go s.serveConn(c, life)
		}
	}
}

// evictBatch is how many idle connections one full admission may close:
// under a flood of new connections, the scan for them is not made for each.
const evictBatch = 8

// admit counts a new connection in. At the listener's limit
// (max_connections) or the process's (overload.max_connections), the
// connections that have waited longest for a request are closed to make
// room, those that never sent one first, as nginx reuses its idle
// keep-alive connections; with none waiting, the new connection is
// closed at once (counted, and logged at most every 10s). Concurrent
// admissions may go a few over a limit.
func (s *listener) admit(c net.Conn) (*connLife, bool) {
	s.count.max.Store(s.cur.Load().maxConns) // the frontend in force says
	reason := ""
	switch {
	case s.count.full():
		reason = refusedListenerLimit
	case s.env.process.full():
		reason = refusedProcessLimit
	}
	if reason != "" {
		freed := 0
		if reason == refusedListenerLimit {
			freed = s.evictIdle(evictBatch)
		} else {
			for _, o := range s.env.peers() {
				if freed += o.evictIdle(evictBatch - freed); freed == evictBatch {
					break
				}
			}
		}
		s.atLimit.evicted.Add(int64(freed))
		if freed == 0 || s.count.full() || s.env.process.full() {
			c.Close()
			s.env.metrics.refused.WithLabelValues(s.name, reason).Inc()
			s.atLimit.refused.Add(1)
			s.logAtLimit(reason)
			return nil, false
		}
		s.logAtLimit(reason)
	}
	return &connLife{born: time.Now(), slot: newConnSlot(&s.count, s.env.process)}, true
}

// evictIdle closes up to n of the listener's connections that wait for a
// request, those waiting longest first, and gives up their places in the
// counts at once. It returns how many it closed.
func (s *listener) evictIdle(n int) int {
	if n <= 0 {
		return 0
	}
	var oldest [evictBatch]*fastConn
	k := 0
	s.connsMu.Lock()
	for fc := range s.conns {
		if fc.state.Load() != connIdle {
			continue
		}
		since := fc.idleSince.Load()
		if k < n {
			oldest[k] = fc
			k++
		} else if since >= oldest[k-1].idleSince.Load() {
			continue
		} else {
			oldest[k-1] = fc
		}
		for i := k - 1; i > 0 && oldest[i].idleSince.Load() < oldest[i-1].idleSince.Load(); i-- {
			oldest[i], oldest[i-1] = oldest[i-1], oldest[i]
		}
	}
	s.connsMu.Unlock()
	closed := 0
	for _, fc := range oldest[:k] {
		// Bytes already in its socket make a connection busy: skipped.
		// A request's first byte may still win the race: then it is
		// served.
		if !fc.pending() && fc.state.CompareAndSwap(connIdle, connEvicting) {
			if f := whileEvicting.Load(); f != nil {
				(*f)()
			}
			fc.life.slot.release()
			fc.c.SetReadDeadline(time.Now())
			// Evicted once its deadline is set: a TLS connection whose
			// request arrived meanwhile (waitIdle) sets its own after it.
			fc.state.Store(connEvicted)
			closed++
		}
	}
	if closed > 0 {
		s.env.metrics.evicted.WithLabelValues(s.name).Add(float64(closed))
	}
	return closed
}

// whileEvicting, when set (tests only), runs in evictIdle after a
// connection is marked connEvicting and before its deadline is set: where
// a TLS connection that read a request meanwhile must wait for it.
var whileEvicting atomic.Pointer[func()]

// logAtLimit says, at most every 10 seconds, that a limit was reached and
// what was done since the last time.
func (s *listener) logAtLimit(reason string) {
	now := time.Now().UnixNano()
	last := s.atLimit.lastLog.Load()
	if now-last < int64(10*time.Second) || !s.atLimit.lastLog.CompareAndSwap(last, now) {
		return
	}
	s.log.Warn("client connection limit reached: idle connections closed to make room, new ones refused when none was idle",
		"listener", s.name, "limit", reason, "evicted", s.atLimit.evicted.Swap(0), "refused", s.atLimit.refused.Swap(0),
		"connections", s.count.n.Load(), "max_connections", s.count.max.Load(),
		"process_connections", s.env.process.n.Load(), "process_max_connections", s.env.process.max.Load())
}

// track adds fc to the connections drain waits for, or removes it. Once
// drain has begun, an add is refused (false): the connection (one that
// finished its TLS handshake just then) is closed unserved, and drain's
// wait never sees an Add after it started.
func (s *listener) track(fc *fastConn, add bool) bool {
	s.connsMu.Lock()
	defer s.connsMu.Unlock()
	if add {
		if s.closing.Load() {
			return false
		}
		s.conns[fc] = struct{}{}
		s.connsWG.Add(1)
	} else {
		delete(s.conns, fc)
		s.connsWG.Done()
	}
	return true
}

// drain stops the fast path: idle connections close at once, busy ones
// after their request; when ctx ends, the rest are closed.
func (s *listener) drain(ctx context.Context) error {
	s.closing.Store(true)
	s.connsMu.Lock()
	for fc := range s.conns {
		// Wakes a connection waiting for its next request; a busy one
		// sees closing after its response. (It sets idle before it reads
		// closing, and drain sets closing before it reads idle: one of
		// the two sees the other.)
		if fc.state.Load() == connIdle {
			fc.c.SetReadDeadline(time.Now())
		}
	}
	s.connsMu.Unlock()
	done := make(chan struct{})
	go func() { s.connsWG.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.connsMu.Lock()
		for fc := range s.conns {
			fc.c.Close()
		}
		s.connsMu.Unlock()
		<-done
		return ctx.Err()
	}
}

func (s *listener) serveConn(c net.Conn, life *connLife) {
	// The listener in force when the connection came: its TLS settings
	// take the handshake.
	l := s.cur.Load()
	var ct *connTLS
	var tc *tls.Conn
	if l.tls != nil {
		var ok bool
		if tc, ct, ok = l.handshake(c); !ok {
			life.slot.release()
			return
		}
		if tc.ConnectionState().NegotiatedProtocol == "h2" {
			// HTTP/2 (gRPC, browsers) is net/http's, from the start.
			s.give(l, tc, life)
			return
		}
		c = tc
	}
	fc, ok := s.newConn(l, c, life, ct, tc)
	if !ok {
		return
	}
	s.serveFast(fc, tc)
}

// newConn makes the fast path's connection for c and counts it among the
// listener's connections, as waiting for its first request: a plaintext
// one from its accept on, so that at a connection limit it can be closed
// to make room before its goroutine first runs (under load that can take
// long enough for a burst of new connections to find none to close, and
// be refused). false: the listener drains, and c is closed.
func (s *listener) newConn(l *frontend, c net.Conn, life *connLife, ct *connTLS, tc *tls.Conn) (*fastConn, bool) {
	fc := newFastConn(c, life)
	fc.closing, fc.l, fc.tls = &s.closing, l, ct
	if ap, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		fc.peer = ap.AddrPort()
		fc.peer = netip.AddrPortFrom(fc.peer.Addr().Unmap(), fc.peer.Port())
	}
	fc.peerAddr = fc.peer.Addr().String()
	fc.idleSince.Store(life.born.UnixNano() - 1<<62) // never used: first to go
	fc.state.Store(connIdle)
	if !s.track(fc, true) {
		c.Close()
		fc.done()
		return nil, false
	}
	return fc, true
}

// serveFast serves fc's requests on the fast path until it closes or
// hands off; tc is the TLS connection under fc, if any.
func (s *listener) serveFast(fc *fastConn, tc *tls.Conn) {
	c, life := fc.c, fc.life
	defer s.track(fc, false)
	for {
		// The wait for a head runs on the timeouts of the listener that
		// served the last request; the request on the one in force when
		// its head is here.
		n, ok := fc.readHead()
		if !ok {
			// Not idle any more (it may be, after max_connection_age or
			// drain): no eviction counts it as room made.
			fc.state.Store(connBusy)
			c.Close()
			fc.done()
			return
		}
		fc.l = s.cur.Load()
		fc.carrier.hide = !fc.l.trusted
		switch fc.serveRequest(n) {
		case keepAlive:
			fc.served = true
		case closeConn:
			c.Close()
			fc.done()
			return
		case closeLinger:
			lingerClose(c)
			fc.done()
			return
		case handOff:
			c.SetReadDeadline(time.Time{})
			// The read buffer goes with the connection, which gives up
			// its place in the counts when net/http closes it.
			rc := replayConn{Conn: c, br: fc.br, life: life}
			fc.br = nil
			if tc != nil {
				s.give(fc.l, &tlsReplayConn{rc, tc}, life)
			} else {
				s.give(fc.l, &rc, life)
			}
			return
		}
	}
}

// give hands c to l's net/http server. A handoff closes when a reload
// retires its listener: the connection goes to the one in force.
func (s *listener) give(l *frontend, c net.Conn, life *connLife) {
	for !l.handoff.give(c, life) {
		if s.closing.Load() {
			c.Close()
			life.slot.release()
			return
		}
		time.Sleep(time.Millisecond)
		l = s.cur.Load()
	}
}
