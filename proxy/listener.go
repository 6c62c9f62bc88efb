package proxy

import (
	"bufio"
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
	ln   net.Listener
	log  *slog.Logger
	cur  atomic.Pointer[frontend]

	closing atomic.Bool
	connsMu sync.Mutex
	conns   map[*fastConn]struct{}
	connsWG sync.WaitGroup
}

func newListener(name, addr string, log *slog.Logger) *listener {
	return &listener{name: name, addr: addr, log: log, conns: map[*fastConn]struct{}{}}
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
		go s.serveConn(c)
	}
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
		if fc.idle.Load() {
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

func (s *listener) serveConn(c net.Conn) {
	// The listener in force when the connection came: its TLS settings
	// take the handshake.
	l := s.cur.Load()
	var ct *connTLS
	var tc *tls.Conn
	if l.tls != nil {
		var ok bool
		if tc, ct, ok = l.handshake(c); !ok {
			return
		}
		if tc.ConnectionState().NegotiatedProtocol == "h2" {
			// HTTP/2 (gRPC, browsers) is net/http's, from the start.
			s.give(l, tc)
			return
		}
		c = tc
	}
	fc := &fastConn{closing: &s.closing, l: l, c: c, br: bufio.NewReaderSize(c, connBufSize), tls: ct}
	if ap, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		fc.peer = ap.AddrPort()
		fc.peer = netip.AddrPortFrom(fc.peer.Addr().Unmap(), fc.peer.Port())
	}
	fc.peerAddr = fc.peer.Addr().String()
	if !s.track(fc, true) {
		c.Close()
		return
	}
	defer s.track(fc, false)
	for {
		// The wait for a head runs on the timeouts of the listener that
		// served the last request; the request on the one in force when
		// its head is here.
		n, ok := fc.readHead()
		if !ok {
			c.Close()
			return
		}
		fc.l = s.cur.Load()
		fc.carrier.hide = !fc.l.trusted
		switch fc.serveRequest(n) {
		case keepAlive:
			fc.served = true
		case closeConn:
			c.Close()
			return
		case closeLinger:
			lingerClose(c)
			return
		case handOff:
			c.SetReadDeadline(time.Time{})
			if tc != nil {
				s.give(fc.l, &tlsReplayConn{replayConn{Conn: c, br: fc.br}, tc})
			} else {
				s.give(fc.l, &replayConn{Conn: c, br: fc.br})
			}
			return
		}
	}
}

// give hands c to l's net/http server. A handoff closes when a reload
// retires its listener: the connection goes to the one in force.
func (s *listener) give(l *frontend, c net.Conn) {
	for !l.handoff.give(c) {
		if s.closing.Load() {
			c.Close()
			return
		}
		time.Sleep(time.Millisecond)
		l = s.cur.Load()
	}
}
