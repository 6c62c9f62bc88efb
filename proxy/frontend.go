package proxy

import (
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tracehop/tracehop/core/propagation"
	"github.com/tracehop/tracehop/proxy/config"
)

// frontend is one configured listener (an entry of listeners:) as a
// snapshot built it: its routes, tracer and settings, never modified once
// built. Its listener serves the fast path on the frontend in force; the
// connections the fast path hands to net/http stay with the frontend that
// took them (srv), until a reload retires it.
type frontend struct {
	name    string
	ingress bool
	trusted bool
	// baggageTrusted keeps a client's baggage header (baggage.trust;
	// by default as trusted); otherwise it is removed, never tagged or
	// linked.
	baggageTrusted bool
	routes         []*route
	tracer         *Tracer // nil without tracing
	proxy          *httputil.ReverseProxy
	log            *slog.Logger
	accessLog      bool
	noRoute        *routeMetrics
	srv            *http.Server // serves what the fast path hands off
	handoff        *handoff     // srv's listener, made when the listener is bound

	idleTimeout   time.Duration
	headerTimeout time.Duration
	bodyTimeout   time.Duration
	// maxConns bounds the listener's client connections (0: none but the
	// process's); maxRequests and maxAge, each connection's requests and
	// age (0: none).
	maxConns      int64
	maxRequests   int64
	maxAge        time.Duration
	underscores   string // config.Underscores*
	traceresponse bool   // answers carry W3C traceresponse
	// slowPathOnly hands every request to net/http after the fast path's
	// first checks: the conformance tests run each case through both paths.
	slowPathOnly bool
	// tls makes the listener HTTPS (nil: plaintext); see tls.go. A
	// reload builds it anew, so that certificate settings follow the same
	// rule as the rest: new connections take the listener in force.
	tls              *tls.Config
	handshakeTimeout time.Duration
	xfcc             string // config.XFCC*
	tlsFailures      *prometheus.CounterVec
}

// lastRequest says whether a request that started at start is the last
// its connection carries: max_requests_per_connection and
// max_connection_age (its answer then says Connection: close). Its
// callers add a connection that gave up its place in the counts
// (connSlot.given), each path by itself: with that here, it would no
// longer be inlined, which cost 23 instructions a request.
func (l *frontend) lastRequest(life *connLife, requests int64, start time.Time) bool {
	return l.maxRequests > 0 && requests >= l.maxRequests || l.maxAge > 0 && start.Sub(life.born) >= l.maxAge
}

// untrustedHeaders are removed from requests on listeners that do not trust
// their clients: trace context, request id, trace forcing, and a client
// certificate's identity (x-forwarded-client-cert) nobody verified here.
var untrustedHeaders = append(propagation.AllHeaders(), headerRequestID, headerForceTrace, headerClientTraceID, headerXFCC)

// headerXFCC is Envoy's x-forwarded-client-cert: who the client's
// verified certificate names, for the upstream to authorize by.
const headerXFCC = "X-Forwarded-Client-Cert"

// forwardClientXFCC reports whether an x-forwarded-client-cert the client
// sent is passed on (forward_client_cert: forward_only); otherwise it is
// removed, never trusted.
func (l *frontend) forwardClientXFCC() bool { return l.xfcc == config.XFCCForwardOnly }

// handoff is the net.Listener through which the fast path gives
// connections to net/http.
type handoff struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
	// given counts the connections handed over, for tests that check
	// which path served them.
	given atomic.Int64
	// lives holds the connLife of connections given as they are (a
	// *tls.Conn that chose h2: net/http must see its type), which no
	// wrapper's Close can release: the server's ConnState hook does.
	lives sync.Map
}

func newHandoff(addr net.Addr) *handoff {
	return &handoff{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (h *handoff) Accept() (net.Conn, error) {
	select {
	case c := <-h.ch:
		return c, nil
	case <-h.done:
		return nil, net.ErrClosed
	}
}

func (h *handoff) Close() error { h.once.Do(func() { close(h.done) }); return nil }

func (h *handoff) Addr() net.Addr { return h.addr }

// give hands c to net/http; false when the handoff is closed (its
// snapshot was retired), and c is still the caller's.
func (h *handoff) give(c net.Conn, life *connLife) bool {
	h.given.Add(1)
	_, wrapped := c.(lifeCarrier)
	if !wrapped {
		h.lives.Store(c, life)
	}
	select {
	case h.ch <- c:
		return true
	case <-h.done:
		h.lives.Delete(c)
		return false
	}
}

// lifeOf is the connLife of a connection net/http serves: its wrapper's
// or, for one given as it is, the one recorded.
func (h *handoff) lifeOf(c net.Conn) *connLife {
	if lc, ok := c.(lifeCarrier); ok {
		return lc.lifeOf()
	}
	if v, ok := h.lives.Load(c); ok {
		return v.(*connLife)
	}
	return nil
}

// closed gives up the place in the counts of a connection given as it is,
// when net/http has closed it.
func (h *handoff) closed(c net.Conn) {
	if v, ok := h.lives.LoadAndDelete(c); ok {
		v.(*connLife).slot.release()
	}
}
