package proxy

import (
	"errors"
	"net/http"
	"os"
	"strconv"

	"github.com/tracehop/tracehop/core/propagation"
	"github.com/tracehop/tracehop/proxy/config"
	"github.com/tracehop/tracehop/proxy/internal/h1"
	"github.com/tracehop/tracehop/proxy/internal/upstream"
)

// proxy sends the request upstream and relays the response.
func (fc *fastConn) proxy(st *reqState, v *reqView, ri *reqInfo) outcome {
	l := fc.l
	rt := st.route
	cl := rt.cluster
	ep := cl.Pick()
	st.endpoint = ep
	// A body that fits the connection's buffer is read whole before
	// anything goes upstream: it then travels in the head's write, and the
	// request can be sent again on a new connection if a kept-alive one
	// turns out dead. Clients that write the head and the body apart
	// (Go's, Node's, Python's) are served alike. A larger body streams.
	inline := ri.length <= int64(fc.br.Size())
	if inline && ri.length > int64(fc.br.Buffered()) {
		if l.bodyTimeout > 0 {
			fc.rd.Set(fc.c, l.bodyTimeout)
		}
		if _, err := fc.br.Peek(int(ri.length)); err != nil {
			return fc.clientFault(st, v, err)
		}
	}
	// Whatever happens now, an inline body is consumed: the client's
	// connection stays in step.
	unread := closeLinger
	if inline {
		unread = keepAlive
		defer fc.br.Discard(int(ri.length))
	}
	var uc *upstream.Conn
	var err error
	for attempt := 0; ; attempt++ {
		if attempt == 0 {
			uc, err = ep.Get()
		} else {
			uc, err = ep.Dial()
		}
		if err != nil {
			return fc.fail(st, v, err, unread)
		}
		if st.traced { // only the upstream span has a use for it
			st.upstreamStart = since(st.start)
		}
		err = fc.send(uc, st, ri, inline)
		if err == nil {
			if !inline {
				return fc.stream(uc, st, v, ri)
			}
			err = fc.readResponseHead(uc, rt.timeout)
		}
		if err == nil {
			break
		}
		uc.Close()
		// A kept-alive connection the upstream closed just as it was
		// taken (the pool checks each one, so only a close that crossed
		// the request on the wire is left) fails before any answer: try
		// once more on a new one; nothing of a streamed body has been
		// read yet. The idle ones older than it went through the same (an
		// upstream's idle timeout, a restart): they go too. A timeout is
		// a slow upstream, not a stale connection.
		timeout := errors.Is(err, os.ErrDeadlineExceeded)
		// RFC 9110 §9.2.2: a request that may have reached the upstream
		// is sent again only when it is safe to (net/http's rule, so that
		// both paths agree): none of it was written, or it is replayable.
		var se *upstream.SendError
		replay := errors.As(err, &se) && se.Written == 0 || fc.replayable(ri)
		stale := uc.Reused() && !uc.Answered && !timeout && replay
		if stale {
			ep.DropIdleSince(uc.IdleSince())
		}
		if !stale || attempt > 0 {
			if timeout {
				err = errUpstreamTimeout
			}
			// The client's connection stays in step when its request
			// was read whole: it may go on, as with nginx and HAProxy.
			return fc.fail(st, v, err, unread)
		}
	}
	return fc.relay(uc, st, v, nil)
}

// replayable says whether the request may be sent again after it may have
// reached the upstream, as net/http's Transport decides (for the net/http
// path): GET, HEAD, OPTIONS and TRACE, or a request with an idempotency
// key; without a body, which ReverseProxy cannot send twice.
func (fc *fastConn) replayable(ri *reqInfo) bool {
	if ri.length > 0 {
		return false
	}
	switch str(fc.req.Method) {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	for _, h := range fc.req.Headers {
		if h1.EqualFold(h.Name, "Idempotency-Key") || h1.EqualFold(h.Name, "X-Idempotency-Key") {
			return true
		}
	}
	return false
}

// send writes the upstream request head, rewritten, with the body when it
// is inline.
func (fc *fastConn) send(uc *upstream.Conn, st *reqState, ri *reqInfo, inline bool) error {
	l := fc.l
	tracing := st.traced
	w := append(uc.WriteBuf[:0], fc.req.Method...)
	w = append(w, ' ')
	w = append(w, fc.req.Target...)
	w = append(w, " HTTP/1.1\r\n"...)
	var xff [][]byte
	for _, h := range fc.req.Headers {
		if skipRequestHeader(h.Name, l.trusted) {
			if l.trusted && h1.EqualFold(h.Name, "X-Forwarded-For") {
				xff = append(xff, h.Value)
			}
			continue
		}
		if tracing && maybeTraceHeader(h.Name) && fc.mut.Touches(str(h.Name)) {
			continue
		}
		if fc.req.Underscore && dropUnderscored(str(h.Name), l.underscores) {
			continue
		}
		if fc.tls != nil && h1.EqualFold(h.Name, headerXFCC) && !l.forwardClientXFCC() {
			continue // never trusted unless forward_client_cert says so
		}
		if !l.baggageTrusted && h1.EqualFold(h.Name, propagation.BaggageHeader) {
			continue // an untrusted client's baggage stops here
		}
		w = appendHeader(w, h.Name, h.Value)
	}
	if ri.lengths > 0 {
		// The parsed value, canonically: "0005" and "010" are 5 and 10 to
		// tracehop, and must be to the upstream (some read 010 as octal).
		w = append(w, "Content-Length: "...)
		w = strconv.AppendInt(w, ri.length, 10)
		w = append(w, "\r\n"...)
	}
	// X-Forwarded-For and -Proto, as the net/http path writes them (no
	// X-Forwarded-Host: Host is kept).
	w = append(w, "X-Forwarded-For: "...)
	for _, v := range xff {
		w = append(append(w, v...), ", "...)
	}
	if st.peerAddr != "" && st.peer.Addr().IsValid() {
		w = append(w, st.peerAddr...) // made once per connection
	} else {
		w = st.peer.Addr().AppendTo(w)
	}
	if fc.tls == nil {
		w = append(w, "\r\nX-Forwarded-Proto: http\r\nX-Request-Id: "...)
	} else {
		w = append(w, "\r\nX-Forwarded-Proto: https\r\nX-Request-Id: "...)
	}
	w = append(w, st.requestID...)
	w = append(w, "\r\n"...)
	if fc.tls != nil && fc.tls.id != nil && l.xfcc == config.XFCCSanitizeSet {
		w = append(w, headerXFCC+": "...)
		w = append(w, fc.tls.id.XFCC...)
		w = append(w, "\r\n"...)
	}
	if tracing {
		for i := range fc.mut.Len() {
			if k, v, ok := fc.mut.Written(i); ok {
				w = append(w, k...)
				w = append(w, ": "...)
				w = append(append(w, v...), "\r\n"...)
			}
		}
	}
	if st.baggage != "" {
		w = append(w, "Baggage: "...)
		w = append(append(w, st.baggage...), "\r\n"...)
	}
	w = append(w, "\r\n"...)
	if inline && ri.length > 0 {
		body, _ := fc.br.Peek(int(ri.length))
		w = append(w, body...)
	}
	uc.WriteBuf = w
	if inline {
		return uc.Send(w) // perhaps written by the read of its answer
	}
	if n, err := uc.NetConn.Write(w); err != nil {
		return &upstream.SendError{Written: n, Err: err}
	}
	return nil
}

// stream sends a body too large to hold while it waits for the answer: an
// upstream may answer early (413, or 200 without reading on), and that
// answer is relayed at once, as net/http and HAProxy do, instead of
// leaving the client with none. Timeouts blame the side that is slow: the
// client's body gets body_read_timeout between reads (408), the upstream
// gets the route timeout for each write it does not take and, as for any
// request, from the end of the body to its response head (504).
func (fc *fastConn) stream(uc *upstream.Conn, st *reqState, v *reqView, ri *reqInfo) outcome {
	timeout := st.route.timeout
	uc.ReadDeadline.Clear(uc.NetConn)
	up := &upload{done: make(chan error, 1)}
	go up.run(fc, uc, ri.length, timeout)
	err := fc.readResponseHead(uc, -1)
	up.mu.Lock()
	up.headSeen = true
	up.mu.Unlock()
	// The upload may have set a deadline before it saw headSeen.
	uc.ReadDeadline.Forget()
	if err != nil {
		var bodyErr error
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// Only the upload sets a deadline here: it is over.
			bodyErr = <-up.done
		} else {
			bodyErr = up.stop(fc, uc)
			if errors.Is(bodyErr, errUploadStopped) {
				bodyErr = nil // the upstream failed first
			}
		}
		fc.rd.Forget()
		uc.Close()
		switch {
		case bodyErr != nil && !isWriteErr(bodyErr):
			return fc.clientFault(st, v, bodyErr)
		case bodyErr != nil:
			err = bodyErr // the upstream stopped reading and did not answer
		case errors.Is(err, os.ErrDeadlineExceeded):
			err = errUpstreamTimeout
		}
		return fc.fail(st, v, err, closeLinger)
	}
	out := fc.relay(uc, st, v, up)
	if up.stop(fc, uc) != nil || !up.ok {
		out = closeLinger
	}
	fc.rd.Forget()
	return out
}

// skipRequestHeader reports whether a request header is not forwarded:
// hop by hop, or a trace header (among others) from an untrusted client.
func skipRequestHeader(name []byte, trusted bool) bool {
	return hopHeaderSet.has(name) || !trusted && untrustedHeaderSet.has(name)
}

var hopHeaderSet, untrustedHeaderSet = newHeaderSet(requestHopHeaders), newHeaderSet(untrustedHeaders)

// headerSet is a set of header names, grouped by length: a request
// header is compared, case-insensitively, only with the names of its own
// length (of 15 hop-by-hop and 21 untrusted names, at most three share
// one), not with all of them, for every header of every request.
type headerSet [64][]string

func newHeaderSet(names []string) *headerSet {
	var s headerSet
	for _, n := range names {
		if len(n) >= len(s) {
			panic("proxy: header name too long for a headerSet: " + n)
		}
		s[len(n)] = append(s[len(n)], n)
	}
	return &s
}

func (s *headerSet) has(name []byte) bool {
	if len(name) >= len(s) {
		return false
	}
	for _, h := range s[len(name)] {
		if h1.EqualFold(name, h) {
			return true
		}
	}
	return false
}

// maybeTraceHeader is a quick filter before Mutations.Touches: every trace
// header of every format starts with b, o, t or x.
func maybeTraceHeader(name []byte) bool {
	switch name[0] | 0x20 {
	case 'b', 'o', 't', 'x':
		return true
	}
	return false
}
