package proxy

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/netip"
	"net/textproto"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/http/httpguts"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/core/propagation"
	"github.com/tracehop/tracehop/proxy/config"
	"github.com/tracehop/tracehop/proxy/internal/h1"
	"github.com/tracehop/tracehop/proxy/internal/tlsconf"
	"github.com/tracehop/tracehop/proxy/internal/upstream"
)

// listener is one configured listener as a snapshot built it: its routes,
// tracer and settings, never modified once built. Its socket serves the
// fast path on the listener in force; the connections the fast path hands
// to net/http stay with the listener that took them (srv), until a reload
// retires it.
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
	handoff   *handoff     // srv's listener, made when the socket is bound

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

type route struct {
	name      string
	prefix    string
	path      string
	headers   []config.HeaderMatch
	cluster   *upstream.Cluster
	operation string
	timeout   time.Duration
	metrics   *routeMetrics
	tracing   *routeTracing // the route's own tracing, or nil
}

func (rt *route) untraced() bool { return rt.tracing != nil && rt.tracing.off }

func (rt *route) matches(r *http.Request) bool {
	p := r.URL.Path
	if rt.path != "" && p != rt.path || rt.prefix != "" && !strings.HasPrefix(p, rt.prefix) {
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

// reqState is everything tracehop knows about one request in flight.
type reqState struct {
	listener      *listener
	route         *route
	endpoint      *upstream.Endpoint
	start         time.Time
	upstreamStart time.Time
	peer          netip.AddrPort
	peerAddr      string   // the address as text, when the connection has it already
	tls           *connTLS // the client's TLS connection, or nil
	requestID     string
	reqBytes      atomic.Int64
	buf           *spanBuf // the connection's, on the fast path; else pooled

	traced  bool // tracing is on, and not off for the route
	sampled bool
	linked  bool
	// baggage is the ingress request's, restored on an egress request
	// linked to it that lost it (link_by_request_id); bagBuf, when not
	// nil, holds it (the fast path's, reused).
	baggage      string
	bagBuf       *[]byte
	registered   bool
	span         core.Span
	upstreamSpan core.Span
	out          propagation.Context

	upstreamErr error
	errReason   string
	aborted     bool          // the response broke off midway
	flags       string        // Envoy-style response flags: DC, UR, DPE, SI
	clientFault atomic.Int32  // the net/http path: the client's body failed (clientBody*)
	body        *countingBody // the net/http path: the request body, if any
}

func (st *reqState) clusterName() string {
	if st.route == nil {
		return "none"
	}
	return st.route.cluster.Name()
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
// their clients: trace context, request id, trace forcing, and a client
// certificate's identity (x-forwarded-client-cert) nobody verified here.
var untrustedHeaders = append(propagation.AllHeaders(), headerRequestID, headerForceTrace, headerClientTraceID, headerXFCC)

func (l *listener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := &reqState{listener: l, start: time.Now(), peer: peerAddr(r)}
	if !l.trusted {
		for _, k := range untrustedHeaders {
			delete(r.Header, k)
		}
	}
	if r.TLS != nil {
		st.tls = &connTLS{id: tlsconf.ClientIdentity(r.TLS)}
		if !l.forwardClientXFCC() {
			delete(r.Header, headerXFCC)
		}
	}
	rw := &responseWriter{ResponseWriter: w, http10: !r.ProtoAtLeast(1, 1)}
	refusal, refusalStatus := l.sanitize(rw, r)
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
	st.traced = l.tracer != nil && (st.route == nil || !st.route.untraced())
	if st.traced {
		l.tracer.begin(st, &v)
	}
	if r.Body != nil && r.Body != http.NoBody {
		st.body = &countingBody{ReadCloser: r.Body, st: st, rc: http.NewResponseController(w), timeout: l.bodyTimeout}
		r.Body = st.body
	}
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
	switch {
	case refusal != "":
		st.flags = "DPE"
		http.Error(rw, "tracehop: "+refusal, refusalStatus)
	case st.route == nil:
		http.Error(rw, "tracehop: no route for "+r.URL.Path, http.StatusNotFound)
	default:
		l.proxy.ServeHTTP(rw, r.WithContext(context.WithValue(r.Context(), stateKey{}, st)))
	}
	l.complete(st, r, &v, rw)
}

// sanitize applies to a request on the net/http path what the fast path
// applies to its own, so that no answer depends on the path a request
// took. It returns why the request is refused, and the status to refuse
// it with, or "".
func (l *listener) sanitize(w *responseWriter, r *http.Request) (string, int) {
	if r.Method == http.MethodConnect {
		// tracehop is not a forward proxy: a tunnel would carry bytes
		// past every route and check, and an upstream's 2xx to CONNECT
		// makes its connection a tunnel (RFC 9112 §6.3), whatever it
		// says of its length. (Over HTTP/2 the stream is refused, not
		// the connection.)
		w.close = r.ProtoMajor == 1
		return connectRefusal, http.StatusMethodNotAllowed
	}
	if r.Method == "PRI" && r.RequestURI == "*" {
		// An HTTP/2 preface in the middle of an HTTP/1.1 connection
		// (RFC 9113 §3.4: only its first bytes), as the fast path answers.
		w.close = true
		return prefaceRefusal, http.StatusBadRequest
	}
	if r.ProtoMajor == 1 {
		// The request-target (RFC 9112 §3.2): never a fragment; in
		// absolute-form, an http or https URI without userinfo (RFC 9110
		// §4.2.4), since its host replaces Host.
		if strings.IndexByte(r.RequestURI, '#') >= 0 {
			return "a request-target has no fragment (#)", http.StatusBadRequest
		}
		if r.URL.User != nil || r.URL.Scheme != "" && r.URL.Scheme != "http" && r.URL.Scheme != "https" {
			return "an absolute-form request-target must be an http or https URI without userinfo", http.StatusBadRequest
		}
	}
	for k := range r.Header {
		if strings.IndexByte(k, '_') < 0 {
			continue
		}
		if l.underscores == config.UnderscoresReject {
			return underscoreRefusal, http.StatusBadRequest
		}
		if dropUnderscored(k, l.underscores) {
			delete(r.Header, k)
		}
	}
	if r.ProtoMajor == 1 {
		// An HTTP/1.1 upgrade to h2c is not passed on: an upstream that
		// took it would speak HTTP/2 on a connection tracehop relays as
		// opaque bytes, past every route and check (h2c smuggling).
		if httpguts.HeaderValuesContainsToken(r.Header["Upgrade"], "h2c") {
			r.Header.Del("Upgrade")
			r.Header.Del("Http2-Settings")
		}
		// A chunked request may have come with a Content-Length too, which
		// net/http removes without a word: RFC 9112 §6.3 wants the
		// connection closed after the response, and it cannot be told
		// apart here, so every chunked request's connection closes.
		if len(r.TransferEncoding) > 0 {
			w.close = true
		}
		// net/http ignores (and deletes) Transfer-Encoding in an HTTP/1.0
		// request and frames its body by Content-Length, where RFC 9112
		// §6.1 wants the framing treated as faulty and the connection
		// closed. It cannot be told apart here either: every HTTP/1.0
		// request with a body closes its connection, so that no bytes a
		// Transfer-Encoding framed are read as a next request.
		if r.ProtoMinor == 0 && r.ContentLength != 0 {
			w.close = true
		}
	}
	return "", 0
}

// prefaceRefusal is the answer to an HTTP/2 preface after HTTP/1.1
// requests, on both paths.
const prefaceRefusal = "an HTTP/2 connection preface is only valid as a connection's first bytes"

// connectRefusal is the answer to CONNECT, on both paths.
const connectRefusal = "CONNECT is not supported: tracehop is a reverse proxy, not a tunnel"

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
	if st.traced && st.sampled && l.tracer.wantsResponse(st.route) {
		v.respHeader = propagation.HeaderCarrier(rw.Header())
	}
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
	if st.traced {
		l.tracer.finish(st, v)
	}
	status := cmp.Or(v.status, http.StatusOK)
	m := l.noRoute
	if st.route != nil {
		m = st.route.metrics
	}
	m.observe(status, st.start, st.sampled, &st.span.TraceID)
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
		attrs = append(attrs, slog.String("upstream", st.endpoint.Addr()))
	}
	if st.traced {
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
	ep := st.route.cluster.Pick()
	st.endpoint = ep
	pr.SetURL(ep.URL())
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
	if st.tls != nil && st.tls.id != nil && l.xfcc == config.XFCCSanitizeSet {
		pr.Out.Header.Set(headerXFCC, st.tls.id.XFCC)
	}
	if st.traced {
		l.tracer.inject(st, pr.Out.Header)
	}
	if st.baggage != "" {
		pr.Out.Header.Set(propagation.BaggageHeader, st.baggage)
	}
	st.upstreamStart = time.Now()
}

// errUpstreamTimeout is the cause of a request cancelled by its route
// timeout.
var errUpstreamTimeout = errors.New("upstream did not answer within the route timeout")

// upstreamStatus maps an upstream failure to the status the client gets and
// a short reason: a timeout is 504, a failed connect 503 (Envoy's
// "upstream connect error"), anything else 502.
func upstreamStatus(err error) (int, string) {
	var op *net.OpError
	switch {
	case errors.Is(err, errUpstreamTimeout), errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, "upstream request timeout"
	case errors.Is(err, syscall.ECONNREFUSED), errors.As(err, &op) && op.Op == "dial":
		return http.StatusServiceUnavailable, "upstream connect error"
	case errors.As(err, new(*upstream.TLSError)):
		// Envoy's words; a handshake that failed is not a connect error:
		// the upstream is there, but it is not who it should be (or does
		// not speak TLS). Not retried: another try fails alike.
		return http.StatusBadGateway, "upstream TLS error"
	}
	return http.StatusBadGateway, "upstream error"
}

func (l *listener) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	st := stateOf(r)
	switch st.clientFault.Load() {
	case clientBodyTimeout:
		st.flags = "SI"
		http.Error(w, "tracehop: the request body did not arrive within body_read_timeout", http.StatusRequestTimeout)
		return
	case clientBodyBroken:
		// A request body that ended early or was malformed (chunked) is
		// the client's fault, not the upstream's.
		st.flags = "DPE"
		http.Error(w, "tracehop: the request body is malformed or ended early", http.StatusBadRequest)
		return
	}
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
// wait for the upstream by the route timeout. The timeout counts while
// tracehop waits for the upstream only: it stops while the request body is
// read from the client (whose slowness body_read_timeout bounds), and
// starts again after each part of it.
func (l *listener) RoundTrip(req *http.Request) (*http.Response, error) {
	st := stateOf(req)
	t := st.route.cluster.Transport()
	ctx, cancel := context.WithCancelCause(req.Context())
	// An upstream that wrongly writes a body after an answer without one
	// (to HEAD, a 204, a 304) writes it at once, and net/http's Transport
	// lends the connection out again as soon as it has read the answer:
	// the next request would read those bytes as its own answer, and every
	// later one on it would be one late. Such answers are few: their
	// HTTP/1.1 connections are not reused (HTTP/2 frames cannot carry such
	// bytes, and its connection is shared). A HEAD says so in its request;
	// a 204 or 304 closes the connection it came on, and a request the
	// Transport had already given it fails its write and goes on a new one.
	var conn net.Conn
	http1 := !st.route.cluster.HTTP2()
	ctx = traceExchange(ctx, cancel, http1, &conn)
	timer := &routeTimer{d: st.route.timeout, cancel: cancel}
	if st.route.timeout > 0 {
		if st.body != nil { // ReverseProxy wraps it: found through st
			st.body.timer = timer
		}
		timer.resume()
	}
	out := req.WithContext(ctx)
	if req.Method == http.MethodHead && http1 {
		out.Close = true
	}
	resp, err := t.RoundTrip(out)
	if err == nil && conn != nil && (resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusNotModified) {
		conn.Close()
	}
	timedOut := timer.stop()
	if err == nil && errors.Is(context.Cause(ctx), errTooMany1xx) {
		// The final answer came in the same read as the 1xx flood.
		resp.Body.Close()
		resp, err = nil, errTooMany1xx
	}
	if err != nil {
		cause := context.Cause(ctx)
		cancel(nil)
		switch {
		case timedOut:
			return nil, fmt.Errorf("%w (%s)", errUpstreamTimeout, st.route.timeout)
		case errors.Is(cause, errTooMany1xx):
			return nil, errTooMany1xx
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

// canonicalLength writes a response's Content-Length as the number
// net/http parsed ("0005" becomes 5), as the fast path does: the client
// must read the length tracehop framed.
func canonicalLength(resp *http.Response) error {
	if _, ok := resp.Header["Content-Length"]; ok && resp.ContentLength >= 0 {
		resp.Header["Content-Length"] = []string{strconv.FormatInt(resp.ContentLength, 10)}
	}
	return nil
}

// modifyResponse is ReverseProxy's ModifyResponse: the canonical
// Content-Length, and no trailer field that frames, routes or
// authenticates (RFC 9110 §6.5.1), as the fast path's h1.CopyChunked
// drops them: those announced are removed now, the rest once the body is
// read, when the transport has filled resp.Trailer and before ReverseProxy
// copies it.
func modifyResponse(resp *http.Response) error {
	if len(resp.Trailer) > 0 {
		dropForbiddenTrailers(resp.Trailer)
	}
	if resp.Body != nil && resp.Body != http.NoBody && (len(resp.TransferEncoding) > 0 || resp.ProtoMajor == 2) {
		resp.Body = &trailerFilter{ReadCloser: resp.Body, resp: resp}
	}
	return canonicalLength(resp)
}

func dropForbiddenTrailers(t http.Header) {
	for k := range t {
		if h1.ForbiddenTrailerName(k) {
			delete(t, k)
		}
	}
}

// trailerFilter removes forbidden trailers when the body is closed:
// ReverseProxy closes it, then reads resp.Trailer.
type trailerFilter struct {
	io.ReadCloser
	resp *http.Response
}

func (f *trailerFilter) Close() error {
	err := f.ReadCloser.Close()
	dropForbiddenTrailers(f.resp.Trailer)
	return err
}

// errTooMany1xx ends an exchange whose upstream keeps sending
// informational responses.
var errTooMany1xx = errors.New("the upstream sent too many 1xx responses")

// traceExchange stops a round trip after max1xx informational responses,
// as the fast path does. (ReverseProxy's own trace hook relays them and its
// result is the one net/http heeds, so the bound cancels the round trip.)
//
// With conns, it also records in *conn the HTTP/1.1 connection the request
// went on. One trace for both: each one added composes with those already
// in ctx (ReverseProxy's) through reflection.
func traceExchange(ctx context.Context, cancel context.CancelCauseFunc, conns bool, conn *net.Conn) context.Context {
	n := 0
	trace := &httptrace.ClientTrace{Got1xxResponse: func(int, textproto.MIMEHeader) error {
		if n++; n >= max1xx {
			cancel(errTooMany1xx)
			return errTooMany1xx
		}
		return nil
	}}
	if conns {
		trace.GotConn = func(info httptrace.GotConnInfo) { *conn = info.Conn }
	}
	return httptrace.WithClientTrace(ctx, trace)
}

// routeTimer is a route timeout that can pause while tracehop waits for
// the client rather than the upstream.
type routeTimer struct {
	mu     sync.Mutex
	d      time.Duration
	t      *time.Timer
	done   bool // the response head is here (or the round trip failed)
	fired  bool
	cancel context.CancelCauseFunc
}

func (rt *routeTimer) resume() {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.done {
		return
	}
	if rt.t == nil {
		rt.t = time.AfterFunc(rt.d, rt.fire)
	} else {
		rt.t.Reset(rt.d)
	}
}

func (rt *routeTimer) pause() {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.t != nil {
		rt.t.Stop()
	}
}

func (rt *routeTimer) fire() {
	rt.mu.Lock()
	if rt.done {
		rt.mu.Unlock()
		return
	}
	rt.fired = true
	rt.mu.Unlock()
	rt.cancel(errUpstreamTimeout)
}

// stop ends the timer for good and reports whether it had fired.
func (rt *routeTimer) stop() bool {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.done = true
	if rt.t != nil {
		rt.t.Stop()
	}
	return rt.fired
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

// countingBody is a request body on the net/http path: it counts bytes,
// bounds each wait for the client by body_read_timeout, pauses the route
// timeout meanwhile, and notes a failure as the client's, so that it is
// answered 400 or 408 rather than blamed on the upstream.
type countingBody struct {
	io.ReadCloser
	st      *reqState
	rc      *http.ResponseController
	timeout time.Duration
	timer   *routeTimer // set by RoundTrip when the route has a timeout
}

func (c *countingBody) Read(p []byte) (int, error) {
	if c.timeout > 0 {
		c.rc.SetReadDeadline(time.Now().Add(c.timeout))
	}
	if c.timer != nil {
		c.timer.pause()
	}
	n, err := c.ReadCloser.Read(p)
	if c.timer != nil {
		c.timer.resume()
	}
	c.st.reqBytes.Add(int64(n))
	if err != nil && err != io.EOF {
		kind := clientBodyBroken
		if errors.Is(err, os.ErrDeadlineExceeded) {
			kind = clientBodyTimeout
		}
		c.st.clientFault.CompareAndSwap(0, kind)
	}
	return n, err
}

// What clientFault records.
const (
	clientBodyBroken  int32 = 1 + iota // ended early or malformed
	clientBodyTimeout                  // stalled past body_read_timeout
)

// responseWriter records the status and size of a response. Unwrap keeps
// http.ResponseController (Flush, Hijack, deadlines) working through it, so
// streaming, gRPC and WebSocket upgrades pass unchanged.
type responseWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
	http10 bool // the client spoke HTTP/1.0
	// close: the final answer says Connection: close, whatever came
	// before it (ReverseProxy clears the header map after each 1xx).
	close bool
}

func (w *responseWriter) WriteHeader(code int) {
	if code < 200 && code != http.StatusSwitchingProtocols && w.http10 {
		// RFC 9110 §15.2: no 1xx to an HTTP/1.0 client, which would take
		// it for the final answer. (ReverseProxy relays an upstream's
		// through here and clears the header after.)
		return
	}
	if w.close && code >= 200 {
		w.Header().Set("Connection", "close")
	}
	if _, ok := w.Header()["Content-Type"]; !ok && code >= 200 {
		// No Content-Type is the upstream's choice (RFC 9110 §8.3):
		// net/http would sniff the body and invent one; a nil value is
		// its documented way to prevent that. The fast path adds none.
		w.Header()["Content-Type"] = nil
	}
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
	labels   [3]string // listener, route, cluster
	// nextExemplar is when (Unix ns) a sampled request may next leave its
	// trace id on the duration histogram as an OpenMetrics exemplar.
	nextExemplar atomic.Int64
}

// exemplarEvery spaces a route's exemplars: Prometheus keeps one per
// bucket anyway, a dashboard needs a few to link a latency to traces, and
// the labels an exemplar takes are allocated: one a second costs the hot
// path nothing measurable.
const exemplarEvery = time.Second

// observe records a request that started at start and ends now.
func (m *routeMetrics) observe(status int, start time.Time, sampled bool, traceID *core.TraceID) {
	d := time.Since(start)
	class := status/100 - 1
	if class < 0 || class > 4 {
		class = 5
	}
	m.byClass[class].Inc()
	if sampled {
		now := start.UnixNano() + int64(d) // the clock was read once, for d
		if next := m.nextExemplar.Load(); now >= next && m.nextExemplar.CompareAndSwap(next, now+int64(exemplarEvery)) {
			if eo, ok := m.duration.(prometheus.ExemplarObserver); ok {
				eo.ObserveWithExemplar(d.Seconds(), prometheus.Labels{"trace_id": traceID.String()})
				return
			}
		}
	}
	m.duration.Observe(d.Seconds())
}
