package proxy

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strings"
	"time"

	"github.com/tracehop/tracehop/core/propagation"
	"github.com/tracehop/tracehop/proxy/config"
	"github.com/tracehop/tracehop/proxy/internal/tlsconf"
	"golang.org/x/net/http/httpguts"
)

func (l *frontend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := &reqState{frontend: l, reqTrace: reqTrace{ingress: l.ingress, trusted: l.trusted, baggageTrusted: l.baggageTrusted, start: time.Now(), peer: peerAddr(r)}}
	if !l.trusted {
		for _, k := range untrustedHeaders {
			delete(r.Header, k)
		}
	}
	if !l.baggageTrusted {
		delete(r.Header, propagation.BaggageHeader)
	}
	if r.TLS != nil {
		st.tls = &connTLS{id: tlsconf.ClientIdentity(r.TLS)}
		if !l.forwardClientXFCC() {
			delete(r.Header, headerXFCC)
		}
	}
	rw := &responseWriter{ResponseWriter: w, http10: !r.ProtoAtLeast(1, 1), close: l.lastRequestOn(r, st.start)}
	refusal, refusalStatus := l.sanitize(rw, r)
	if id := r.Header.Get(headerRequestID); validRequestID(id) {
		st.requestID = id
	} else {
		st.requestID = newRequestID()
	}
	for _, rt := range l.routes {
		if rt.matches(r) {
			st.setRoute(rt)
			break
		}
	}
	v := viewOf(r)
	st.traced = st.traceOn(l)
	if st.traced {
		l.tracer.begin(&st.reqTrace, &v)
	}
	if st.traced && l.traceresponse {
		rw.traceresponse = string(st.appendTraceresponse(nil))
	}

	if r.Body != nil && r.Body != http.NoBody {
		st.body = &countingBody{ReadCloser: r.Body, bytes: &st.reqBytes, fault: &st.clientFault, rc: http.NewResponseController(w), timeout: l.bodyTimeout}
		if st.route != nil {
			st.body.limit = st.route.maxBody
		}
		r.Body = st.body
		defer st.body.handlerDone()
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
	case st.route.maxBody > 0 && r.ContentLength > st.route.maxBody:
		// Announced: refused before any of it is read.
		rw.close = r.ProtoMajor == 1
		http.Error(rw, "tracehop: "+bodyTooLarge(st.route.maxBody), http.StatusRequestEntityTooLarge)
	case st.route.bufferBody > 0 && st.body != nil && !l.bufferBody(st, rw, r):
		// The client failed while its body was read: answered.
	default:
		l.proxy.ServeHTTP(rw, r.WithContext(context.WithValue(r.Context(), stateKey{}, st)))
	}
	l.complete(st, r, &v, rw)
}

// connLifeKey is the context key of a connection's connLife on the
// net/http path.
type connLifeKey struct{}

// connContext is the net/http server's ConnContext: the connection's
// life travels to each of its requests.
func (l *frontend) connContext(ctx context.Context, c net.Conn) context.Context {
	if life := l.handoff.lifeOf(c); life != nil {
		return context.WithValue(ctx, connLifeKey{}, life)
	}
	return ctx
}

// connState is the net/http server's ConnState hook: a connection it
// closed gives up its place in the counts (those it was handed wrapped do
// on Close).
func (l *frontend) connState(c net.Conn, s http.ConnState) {
	if s == http.StateClosed {
		l.handoff.closed(c)
	}
}

// lastRequestOn counts a request on its connection and says whether it is
// the connection's last (max_requests_per_connection,
// max_connection_age, or evicted as the request arrived); then its answer
// says Connection: close, which on
// HTTP/2 net/http turns into a GOAWAY, the connection closing once its
// streams are done.
func (l *frontend) lastRequestOn(r *http.Request, start time.Time) bool {
	life, _ := r.Context().Value(connLifeKey{}).(*connLife)
	if life == nil {
		return false
	}
	return l.lastRequest(life, life.requests.Add(1), start) || life.slot.given()
}

// bufferBody reads a request body of at most the route's
// buffer_request_body whole before the upstream is dialed, so that a slow
// upload holds no upstream connection (nginx's proxy_request_buffering); a
// longer one (chunked, it turns out) streams on, its start first. false:
// the client failed meanwhile, and has its answer.
func (l *frontend) bufferBody(st *reqState, rw *responseWriter, r *http.Request) bool {
	limit := st.route.bufferBody
	if r.ContentLength > limit {
		return true // announced larger: it streams
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	if _, err := buf.ReadFrom(io.LimitReader(st.body, limit+1)); err != nil {
		rw.close = r.ProtoMajor == 1
		switch st.clientFault.Load() {
		case clientBodyTimeout:
			st.flags = "SI"
			http.Error(rw, "tracehop: the request body did not arrive within body_read_timeout", http.StatusRequestTimeout)
		case clientBodyTooLarge:
			http.Error(rw, "tracehop: "+bodyTooLarge(st.route.maxBody), http.StatusRequestEntityTooLarge)
		default:
			st.flags = "DPE"
			http.Error(rw, "tracehop: the request body is malformed or ended early", http.StatusBadRequest)
		}
		return false
	}
	if int64(buf.Len()) > limit {
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(&buf, st.body), st.body}
		return true
	}
	r.Body, r.ContentLength, r.TransferEncoding = io.NopCloser(&buf), int64(buf.Len()), nil
	if r.ContentLength == 0 {
		r.Body = http.NoBody
	}
	return true
}

// sanitize applies to a request on the net/http path what the fast path
// applies to its own, so that no answer depends on the path a request
// took. It returns why the request is refused, and the status to refuse
// it with, or "".
func (l *frontend) sanitize(w *responseWriter, r *http.Request) (string, int) {
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
	if !validHostPort(r.Host) {
		// net/http checked the characters only. Refused as a malformed
		// Host is, with a close.
		w.close = r.ProtoMajor == 1
		return hostRefusal, http.StatusBadRequest
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

// complete finishes the request's span, metrics and access log line.
func (l *frontend) complete(st *reqState, r *http.Request, v *reqView, rw *responseWriter) {
	if st.aborted {
		if r.Context().Err() != nil {
			st.flags = "DC" // downstream connection terminated, as Envoy says
		} else {
			st.flags = "UR" // upstream reset mid-response
			st.upstreamErr, st.errReason = errUpstreamReset, "upstream reset"
		}
	}
	v.status, v.respBytes = rw.status, rw.bytes
	if st.traced && st.sampled && l.tracer.wantsResponse(st.routeTracing) {
		v.respHeader = propagation.HeaderCarrier(rw.Header())
	}
	// In the head (a trailers-only answer) or an unannounced trailer, as
	// gRPC's always are over HTTP/2.
	v.grpcStatus = cmp.Or(rw.Header().Get("Grpc-Status"), rw.Header().Get(http.TrailerPrefix+"Grpc-Status"))
	if v.grpcStatus != "" {
		v.grpcMessage = cmp.Or(rw.Header().Get("Grpc-Message"), rw.Header().Get(http.TrailerPrefix+"Grpc-Message"))
	}
	l.done(st, v)
}

// rewrite prepares the upstream request: endpoint, Host, X-Forwarded-*,
// request id and trace context. ReverseProxy has already removed hop-by-hop
// headers.
func (l *frontend) rewrite(pr *httputil.ProxyRequest) {
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
		l.tracer.inject(&st.reqTrace, pr.Out.Header)
	}
	if st.baggage != "" {
		pr.Out.Header.Set(propagation.BaggageHeader, st.baggage)
	}
	if st.traced { // only the upstream span has a use for it
		st.upstreamStart = since(st.start)
	}
}

func (l *frontend) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	st := stateOf(r)
	switch st.clientFault.Load() {
	case clientBodyTimeout:
		st.flags = "SI"
		http.Error(w, "tracehop: the request body did not arrive within body_read_timeout", http.StatusRequestTimeout)
		return
	case clientBodyTooLarge:
		if r.ProtoMajor == 1 {
			w.Header().Set("Connection", "close") // the rest of it is not read
		}
		http.Error(w, "tracehop: "+bodyTooLarge(st.route.maxBody), http.StatusRequestEntityTooLarge)
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

// viewOf is the reqView of a net/http request.
func viewOf(r *http.Request) reqView {
	return reqView{
		method: r.Method, host: r.Host, uri: r.URL.RequestURI(), proto: protocolName(r), userAgent: r.UserAgent(),
		contentType: r.Header.Get("Content-Type"), header: propagation.HeaderCarrier(r.Header),
	}
}

// peerAddr parses a request's RemoteAddr.
func peerAddr(r *http.Request) netip.AddrPort {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func protocolName(r *http.Request) string {
	if r.ProtoMajor == 2 {
		return "HTTP/2"
	}
	return r.Proto
}
