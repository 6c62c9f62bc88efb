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
	underscores   string // config.Underscores*
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
func (h *handoff) give(c net.Conn) bool {
	h.given.Add(1)
	select {
	case h.ch <- c:
		return true
	case <-h.done:
		return false
	}
}
