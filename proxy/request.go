package proxy

import (
	"cmp"
	"context"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/proxy/config"
)

// reqState is everything tracehop knows about one request in flight,
// whichever path serves it.
type reqState struct {
	// reqTrace is what tracing reads of the request and decides for it;
	// its fields are the request's own (the request id, the upstream, the
	// outcome), promoted here.
	reqTrace
	frontend    *frontend
	route       *route
	aborted     bool          // the response broke off midway
	clientFault atomic.Int32  // the net/http path: the client's body failed (clientBody*)
	body        *countingBody // the net/http path: the request body, if any
}

// setRoute records the route a request matched, and tells tracing what it
// reads of it.
func (st *reqState) setRoute(rt *route) {
	st.route = rt
	st.cluster, st.routeTracing, st.spanName, st.rule = rt.cluster, rt.tracing, rt.spanName, rt.rule
}

// traceOn says whether a request is traced: tracing is on, and not off for
// its route.
func (st *reqState) traceOn(l *frontend) bool {
	return l.tracer != nil && (st.route == nil || !st.route.untraced())
}

type stateKey struct{}

func stateOf(r *http.Request) *reqState {
	st, _ := r.Context().Value(stateKey{}).(*reqState)
	return st
}

// newRequestID returns a random UUIDv4 as a new string (the net/http
// path's; the fast path writes it into its connection's memory).
func newRequestID() string {
	var id [36]byte
	putRequestID(&id)
	return string(id[:])
}

// putRequestID writes a random UUIDv4 into id, from two random words by
// the span ids' hex writer (8 digits per instruction sequence, no table):
// a byte at a time through a table cost about 600 instructions a request.
func putRequestID(id *[36]byte) { formatUUID(id, rand.Uint64(), rand.Uint64()) }

// formatUUID writes the 128 bits hi, lo into out as a UUID of version 4
// (the version and variant bits set over them).
func formatUUID(out *[36]byte, hi, lo uint64) {
	hi = hi&^(0xf<<12) | 0x4<<12 // version 4
	lo = lo&^(0x3<<62) | 0x2<<62 // variant 10
	var h [32]byte
	core.SpanID(lo).AppendHex(core.SpanID(hi).AppendHex(h[:0]))
	copy(out[0:8], h[0:8])
	copy(out[9:13], h[8:12])
	copy(out[14:18], h[12:16])
	copy(out[19:23], h[16:20])
	copy(out[24:36], h[20:32])
	out[8], out[13], out[18], out[23] = '-', '-', '-', '-'
}

// validRequestID accepts what a sane client or proxy sends: 1 to 128
// printable ASCII characters.
func validRequestID(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// validHostPort says whether a Host (or :authority) has the shape
// uri-host [":" port] (RFC 9110 §7.2, RFC 3986 §3.2.2): an IP literal in
// brackets or a name without a colon, then at most one port, of digits.
// httpguts.ValidHostHeader checks the characters only, so a.test:80:80 or
// an IPv6 address without brackets would pass it; the upstream and
// tracehop could then read different hosts and ports from the same field.
func validHostPort(h string) bool {
	if len(h) > 0 && h[0] == '[' {
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return false
		}
		h = h[end+1:]
		if h == "" {
			return true
		}
		if h[0] != ':' {
			return false
		}
		return digitsOnly(h[1:])
	}
	colon := strings.IndexByte(h, ':')
	return colon < 0 || digitsOnly(h[colon+1:])
}

// digitsOnly: RFC 3986's port is *DIGIT, so "" is one.
func digitsOnly(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// hostRefusal is the answer to a Host that is not uri-host [":" port], on
// both paths.
const hostRefusal = "the Host header must be a host and at most one port (RFC 9110 §7.2)"

// guardedHeaders are the request headers that frame, route or identify a
// request, or carry its trace. A name with underscores that reads as one of
// them once '_' is '-' (Content_Length, X_Forwarded_For) is never
// forwarded: CGI-style applications (PHP, WSGI, Rack) map '-' and '_' to
// the same variable, so the look-alike would pass for the real header that
// tracehop checked or wrote.
// (untrustedHeaders holds every propagation format's headers.)
var guardedHeaders = func() map[string]bool {
	m := map[string]bool{}
	for _, h := range append(append([]string{"Content-Length", "Host", "Expect", "X-Real-Ip"}, requestHopHeaders...), untrustedHeaders...) {
		m[http.CanonicalHeaderKey(h)] = true
	}
	return m
}()

// dropUnderscored reports whether a header name is not forwarded under the
// listener's headers_with_underscores mode (reject is answered before).
func dropUnderscored(name, mode string) bool {
	if strings.IndexByte(name, '_') < 0 {
		return false
	}
	return mode != config.UnderscoresAllow || guardedHeaders[http.CanonicalHeaderKey(strings.ReplaceAll(name, "_", "-"))]
}

// requestHopHeaders are not forwarded: hop-by-hop headers (as
// httputil.ReverseProxy removes them) and those tracehop writes itself.
var requestHopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer",
	"Transfer-Encoding", "Upgrade", "Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", headerRequestID,
	"Content-Length",
}

// prefaceRefusal is the answer to an HTTP/2 preface after HTTP/1.1
// requests, on both paths.
const prefaceRefusal = "an HTTP/2 connection preface is only valid as a connection's first bytes"

// connectRefusal is the answer to CONNECT, on both paths.
const connectRefusal = "CONNECT is not supported: tracehop is a reverse proxy, not a tunnel"

// http10TERefusal answers an HTTP/1.0 request with Transfer-Encoding: RFC
// 9112 §6.1 makes its framing faulty, whatever else the head says
// (net/http would frame it by Content-Length and keep the connection).
const http10TERefusal = "Transfer-Encoding is not defined for HTTP/1.0"

// bodyTooLarge is the answer to a request body over max_request_body_bytes,
// on both paths.
func bodyTooLarge(limit int64) string {
	return "the request body is larger than max_request_body_bytes (" + strconv.FormatInt(limit, 10) + " bytes)"
}

// underscoreRefusal is the answer to a header name with an underscore on
// a listener with headers_with_underscores: reject.
const underscoreRefusal = "header names with underscores are refused here (headers_with_underscores: reject)"

// since returns the time now as start plus the time elapsed since it by
// the monotonic clock: one clock reading where time.Now takes two (the
// wall clock too; each about 40 ns on these machines), and a span's end
// that never goes before its start when the wall clock is stepped, as
// OpenTelemetry's SDKs do. A zero start gets time.Now.
func since(start time.Time) time.Time {
	if start.IsZero() {
		return time.Now()
	}
	return start.Add(time.Since(start))
}

// done records a finished request, from either HTTP path: its spans, its
// metrics and its access log line.
func (l *frontend) done(st *reqState, v *reqView) {
	// One clock reading ends both the span and the duration metric.
	end := since(st.start)
	if st.traced {
		l.tracer.finish(&st.reqTrace, v, end)
	}
	status := cmp.Or(v.status, http.StatusOK)
	m := l.noRoute
	if st.route != nil {
		m = st.route.metrics
	}
	m.observe(status, st.start, end, st.sampled, &st.span.TraceID)
	if l.accessLog {
		l.logRequest(st, v, status, end.Sub(st.start))
	}
}

func (l *frontend) logRequest(st *reqState, v *reqView, status int, took time.Duration) {
	path, _, _ := strings.Cut(v.uri, "?")
	attrs := []slog.Attr{
		slog.String("listener", l.name), slog.String("method", v.method), slog.String("path", path),
		slog.Int("status", status), slog.Duration("duration", took),
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
