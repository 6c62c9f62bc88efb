package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/tracehop/tracehop/proxy/config"
	"github.com/tracehop/tracehop/proxy/internal/h1"
	"github.com/tracehop/tracehop/proxy/internal/upstream"
)

type route struct {
	name     string
	prefix   string
	path     string
	method   string // "": any
	headers  []config.HeaderMatch
	cluster  *upstream.Cluster
	spanName *nameTemplate // nil: the default name
	timeout  time.Duration
	metrics  *routeMetrics
	tracing  *routeTracing // the route's own tracing, or nil
	// maxBody answers 413 to a larger request body; bufferBody reads a
	// body up to that size whole before dialing (0: no bound, no
	// buffering). The route's settings, else its listener's.
	maxBody    int64
	bufferBody int64
	rule       int32 // its sampling rule slot (Tracer.ruleSlot)
}

func (rt *route) untraced() bool { return rt.tracing != nil && rt.tracing.off }

func (rt *route) matches(r *http.Request) bool {
	p := r.URL.Path
	if rt.path != "" && p != rt.path || rt.prefix != "" && !strings.HasPrefix(p, rt.prefix) || rt.method != "" && r.Method != rt.method {
		return false
	}
	for _, h := range rt.headers {
		v, ok := r.Header[h.Name]
		if h.Name == "Host" {
			// net/http keeps Host out of the header map (and puts the
			// absolute-form target's host there, which wins): match
			// what the fast path matches, whichever path a request
			// takes.
			v, ok = []string{r.Host}, r.Host != ""
		}
		if !ok || h.Value != "" && (len(v) == 0 || v[0] != h.Value) {
			return false
		}
	}
	return true
}

// matchesFast is route.matches for the fast path's parsed head.
func (rt *route) matchesFast(method, path string, hs []h1.Header) bool {
	if rt.path != "" && path != rt.path || rt.prefix != "" && !strings.HasPrefix(path, rt.prefix) || rt.method != "" && method != rt.method {
		return false
	}
	for _, m := range rt.headers {
		found := false
		for _, h := range hs {
			if h1.EqualFold(h.Name, m.Name) {
				found = m.Value == "" || str(h.Value) == m.Value
				break // net/http compares the first value
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// errUpstreamTimeout is the cause of a request cancelled by its route
// timeout.
var errUpstreamTimeout = errors.New("upstream did not answer within the route timeout")

// errUpstreamReset marks a response the upstream broke off midway.
var errUpstreamReset = errors.New("the upstream broke the response off midway")

// upstreamStatus maps an upstream failure to the status the client gets and
// a short reason: the route's timeout is 504, a failed connect 503 (Envoy's
// "upstream connect error"), the cluster's connect_timeout included,
// anything else 502.
func upstreamStatus(err error) (int, string) {
	var op *net.OpError
	switch {
	case errors.Is(err, errUpstreamTimeout):
		return http.StatusGatewayTimeout, "upstream request timeout"
	case errors.Is(err, syscall.ECONNREFUSED), errors.As(err, &op) && op.Op == "dial":
		// Before the deadline's case: a dial the connect timeout cut
		// short says "i/o timeout" and, as the Go version and the
		// moment go, may match context.DeadlineExceeded too.
		return http.StatusServiceUnavailable, "upstream connect error"
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, "upstream request timeout"
	case errors.As(err, new(*upstream.TLSError)):
		// Envoy's words; a handshake that failed is not a connect error:
		// the upstream is there, but it is not who it should be (or does
		// not speak TLS). Not retried: another try fails alike.
		return http.StatusBadGateway, "upstream TLS error"
	}
	return http.StatusBadGateway, "upstream error"
}
