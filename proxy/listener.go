package proxy

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/core/propagation"
	"github.com/tracehop/tracehop/proxy/config"
)

// listener serves one configured address.
type listener struct {
	name      string
	ingress   bool
	trusted   bool
	routes    []*route
	tracer    *Tracer // nil without tracing
	proxy     *httputil.ReverseProxy
	log       *slog.Logger
	accessLog bool
	noRoute   *routeMetrics
	srv       *http.Server // serves what the fast path hands off

	ln            net.Listener
	handoff       *handoff
	idleTimeout   time.Duration
	headerTimeout time.Duration
	closing       atomic.Bool
	connsMu       sync.Mutex
	conns         map[*fastConn]struct{}
	connsWG       sync.WaitGroup
}

type route struct {
	name      string
	prefix    string
	path      string
	headers   []config.HeaderMatch
	cluster   *cluster
	operation string
	timeout   time.Duration
	metrics   *routeMetrics
}

func (rt *route) matches(r *http.Request) bool {
	p := r.URL.Path
	if rt.path != "" && p != rt.path || rt.prefix != "" && !strings.HasPrefix(p, rt.prefix) {
		return false
	}
	for _, h := range rt.headers {
		v, ok := r.Header[h.Name]
		if !ok || h.Value != "" && (len(v) == 0 || v[0] != h.Value) {
			return false
		}
	}
	return true
}

// reqState is everything tracehop knows about one request in flight.
type reqState struct {
	listener      *listener
	route         *route
	endpoint      *endpoint
	start         time.Time
	upstreamStart time.Time
	peer          netip.AddrPort
	peerAddr      string // the address as text, when the connection has it already
	requestID     string
	reqBytes      atomic.Int64
	buf           *spanBuf // the connection's, on the fast path; else pooled

	sampled      bool
	linked       bool
	registered   bool
	span         core.Span
	upstreamSpan core.Span
	out          propagation.Context

	upstreamErr error
	errReason   string
	aborted     bool   // the response broke off midway
	flags       string // Envoy-style response flags: DC, UR
}

func (st *reqState) clusterName() string {
	if st.route == nil {
		return "none"
	}
	return st.route.cluster.name
}

// operation names the request's span: the route's operation, else Envoy's
// default: "ingress", or "egress HOST".
func (st *reqState) operation(host string) string {
	if st.route != nil && st.route.operation != "" {
		return st.route.operation
	}
	if st.listener.ingress {
		return "ingress"
	}
	return "egress " + host
}

type stateKey struct{}

func stateOf(r *http.Request) *reqState {
	st, _ := r.Context().Value(stateKey{}).(*reqState)
	return st
}

// untrustedHeaders are removed from requests on listeners that do not trust
// their clients: trace context, request id and trace forcing.
var untrustedHeaders = append(propagation.AllHeaders(), headerRequestID, headerForceTrace, headerClientTraceID)

func (l *listener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := &reqState{listener: l, start: time.Now(), peer: peerAddr(r)}
	if !l.trusted {
		for _, k := range untrustedHeaders {
			delete(r.Header, k)
		}
	}
	if id := r.Header.Get(headerRequestID); validRequestID(id) {
		st.requestID = id
	} else {
		st.requestID = newRequestID()
	}
	for _, rt := range l.routes {
		if rt.matches(r) {
			st.route = rt
			break
		}
	}
	v := viewOf(r)
	if l.tracer != nil {
		l.tracer.begin(st, &v)
	}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = &countingBody{ReadCloser: r.Body, n: &st.reqBytes}
	}
	rw := &responseWriter{ResponseWriter: w}
	// ReverseProxy aborts a response that breaks midway (the client went
	// away, the upstream reset) by panicking with http.ErrAbortHandler:
	// finish the span on the way out, then let the panic go on to the
	// server, which resets the stream.
	defer func() {
		if p := recover(); p != nil {
			st.aborted = true
			l.complete(st, r, &v, rw)
			panic(p)
		}
	}()
	if st.route == nil {
		http.Error(rw, "tracehop: no route for "+r.URL.Path, http.StatusNotFound)
	} else {
		l.proxy.ServeHTTP(rw, r.WithContext(context.WithValue(r.Context(), stateKey{}, st)))
	}
	l.complete(st, r, &v, rw)
}

// complete finishes the request's span, metrics and access log line.
func (l *listener) complete(st *reqState, r *http.Request, v *reqView, rw *responseWriter) {
	if st.aborted {
		if r.Context().Err() != nil {
			st.flags = "DC" // downstream connection terminated, as Envoy says
		} else {
			st.flags = "UR" // upstream reset mid-response
			st.upstreamErr, st.errReason = errUpstreamReset, "upstream reset"
		}
	}
	v.status, v.respBytes = rw.status, rw.bytes
	v.grpcStatus = rw.Header().Get("Grpc-Status")
	if v.grpcStatus == "" {
		// An unannounced trailer, as gRPC's always is over HTTP/2.
		v.grpcStatus = rw.Header().Get(http.TrailerPrefix + "Grpc-Status")
	}
	l.done(st, v)
}

// done records a finished request, from either HTTP path: its spans, its
// metrics and its access log line.
func (l *listener) done(st *reqState, v *reqView) {
	if l.tracer != nil {
		l.tracer.finish(st, v)
	}
	status := cmp.Or(v.status, http.StatusOK)
	m := l.noRoute
	if st.route != nil {
		m = st.route.metrics
	}
	m.observe(status, time.Since(st.start))
	if l.accessLog {
		l.logRequest(st, v, status)
	}
}

// errUpstreamReset marks a response the upstream broke off midway.
var errUpstreamReset = errors.New("the upstream broke the response off midway")

func (l *listener) logRequest(st *reqState, v *reqView, status int) {
	path, _, _ := strings.Cut(v.uri, "?")
	attrs := []slog.Attr{
		slog.String("listener", l.name), slog.String("method", v.method), slog.String("path", path),
		slog.Int("status", status), slog.Duration("duration", time.Since(st.start)),
		slog.Int64("bytes_in", st.reqBytes.Load()), slog.Int64("bytes_out", v.respBytes),
		slog.String("request_id", st.requestID),
	}
	if st.endpoint != nil {
		attrs = append(attrs, slog.String("upstream", st.endpoint.addr))
	}
	if l.tracer != nil {
		attrs = append(attrs, slog.String("trace_id", st.span.TraceID.String()), slog.String("span_id", st.span.SpanID.String()),
			slog.Bool("sampled", st.sampled))
	}
	if st.upstreamErr != nil {
		attrs = append(attrs, slog.String("error", st.upstreamErr.Error()))
	}
	if st.flags != "" {
		attrs = append(attrs, slog.String("response_flags", st.flags))
	}
	l.log.LogAttrs(context.Background(), slog.LevelInfo, "request", attrs...)
}

// rewrite prepares the upstream request: endpoint, Host, X-Forwarded-*,
// request id and trace context. ReverseProxy has already removed hop-by-hop
// headers.
func (l *listener) rewrite(pr *httputil.ProxyRequest) {
	st := stateOf(pr.In)
	ep := st.route.cluster.pick()
	st.endpoint = ep
	pr.SetURL(ep.url)
	pr.Out.Host = pr.In.Host // a sidecar keeps the Host the client asked for
	if l.trusted {
		// Continue the X-Forwarded-For chain of trusted hops.
		if xff, ok := pr.In.Header["X-Forwarded-For"]; ok {
			pr.Out.Header["X-Forwarded-For"] = xff
		}
	}
	pr.SetXForwarded()
	// Host is kept, so X-Forwarded-Host would only repeat it; like Envoy,
	// tracehop sends X-Forwarded-For and -Proto only. Every header costs
	// the application a little to parse, on every request.
	pr.Out.Header.Del("X-Forwarded-Host")
	pr.Out.Header.Set(headerRequestID, st.requestID)
	if l.tracer != nil {
		l.tracer.inject(st, pr.Out.Header)
	}
	st.upstreamStart = time.Now()
}

func (l *listener) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	st := stateOf(r)
	if cause := context.Cause(r.Context()); errors.Is(err, context.Canceled) && cause != nil && !errors.Is(cause, errUpstreamTimeout) {
		// The client went away: nobody to answer.
		st.upstreamErr, st.errReason = err, "downstream disconnected"
		w.WriteHeader(499)
		return
	}
	code, reason := upstreamStatus(err)
	st.upstreamErr, st.errReason = err, reason
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprintf(w, "tracehop: %s (cluster %s)\n", reason, st.clusterName())
}

// RoundTrip sends the request through its cluster's transport, bounding the
// wait for response headers by the route timeout.
func (l *listener) RoundTrip(req *http.Request) (*http.Response, error) {
	st := stateOf(req)
	t := st.route.cluster.transport
	if st.route.timeout <= 0 {
		return t.RoundTrip(req)
	}
	ctx, cancel := context.WithCancelCause(req.Context())
	timer := time.AfterFunc(st.route.timeout, func() { cancel(errUpstreamTimeout) })
	resp, err := t.RoundTrip(req.WithContext(ctx))
	timedOut := !timer.Stop()
	if err != nil {
		cancel(nil)
		if timedOut {
			return nil, fmt.Errorf("%w (%s)", errUpstreamTimeout, st.route.timeout)
		}
		return nil, err
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// ReverseProxy needs the upgraded body's Write; the context ends
		// with the request.
		return resp, nil
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelCauseFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel(nil)
	return err
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// responseWriter records the status and size of a response. Unwrap keeps
// http.ResponseController (Flush, Hijack, deadlines) working through it, so
// streaming, gRPC and WebSocket upgrades pass unchanged.
type responseWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *responseWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	} else if code == http.StatusSwitchingProtocols {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack is how ReverseProxy takes over the connection of an upgrade
// (WebSocket); it writes the 101 to the connection itself, so record it here.
func (w *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil && w.status == 0 {
		w.status = http.StatusSwitchingProtocols
	}
	return conn, brw, err
}

// Flush is here as well as behind Unwrap for code that asserts
// http.Flusher directly.
func (w *responseWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	http.NewResponseController(w.ResponseWriter).Flush()
}

// routeMetrics are one route's request counters, resolved once so that a
// request does no label lookup.
type routeMetrics struct {
	byClass  [6]prometheus.Counter // 1xx..5xx, other
	duration prometheus.Observer
}

func (m *routeMetrics) observe(status int, d time.Duration) {
	class := status/100 - 1
	if class < 0 || class > 4 {
		class = 5
	}
	m.byClass[class].Inc()
	m.duration.Observe(d.Seconds())
}
