package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strconv"

	"github.com/tracehop/tracehop/proxy/internal/h1"
)

// RoundTrip sends the request through its cluster's transport, bounding the
// wait for the upstream by the route timeout. The timeout counts while
// tracehop waits for the upstream only: it stops while the request body is
// read from the client (whose slowness body_read_timeout bounds), and
// starts again after each part of it.
func (l *frontend) RoundTrip(req *http.Request) (*http.Response, error) {
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
	// traceresponse, when set, is the final answer's traceresponse (it
	// replaces the upstream's).
	traceresponse string
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
	if w.traceresponse != "" && code >= 200 {
		w.Header().Set("Traceresponse", w.traceresponse)
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
