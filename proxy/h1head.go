package proxy

// A request head on the fast path: waiting for it, reading what it says,
// handing the connection to net/http when the fast path will not serve it,
// and the answers tracehop writes itself.

import (
	"bytes"
	"errors"
	"net/http"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/tracehop/tracehop/proxy/internal/h1"
	"golang.org/x/net/http/httpguts"
)

// outcome says what a connection does after a request.
type outcome int

const (
	keepAlive outcome = iota
	closeConn
	// closeLinger closes a connection whose client may still be sending
	// a body tracehop did not read.
	closeLinger
	handOff
)

// readHead waits for a whole request head in the buffer and returns its
// length; -1 (with ok) means the fast path will not read one: the head is
// too large or its first line is no request line (handOff decides what
// then); headTimedOut, that read_header_timeout passed with a part of one.
func (fc *fastConn) readHead() (int, bool) {
	l := fc.l
	deadline := false
	if fc.br == nil || fc.br.Buffered() == 0 {
		wait := l.idleTimeout
		if fc.life.requests.Load() == 0 && l.headerTimeout > 0 {
			// The first head is due read_header_timeout after the
			// connection's start, as with nginx's client_header_timeout:
			// a client that sends nothing is not held for idle_timeout.
			wait, deadline = l.headerTimeout, true
		}
		if l.maxAge > 0 {
			left := l.maxAge - time.Since(fc.life.born)
			if left <= 0 {
				return 0, false // max_connection_age: it closes idle
			}
			if wait <= 0 || left < wait {
				wait = left
			}
		}
		if wait > 0 {
			fc.rd.Set(fc.c, wait)
		}
		if !fc.waitIdle(wait) {
			return 0, false
		}
	}
	for {
		buf, _ := fc.br.Peek(fc.br.Buffered())
		if n := h1.HeadLen(buf); n >= 0 {
			return n, true
		}
		if len(buf) == fc.br.Size() {
			return -1, true
		}
		if noRequestLine(buf) {
			return -1, true // no head will come: handOff refuses it now
		}
		if !deadline && l.headerTimeout > 0 {
			fc.rd.Set(fc.c, l.headerTimeout)
			deadline = true
		}
		if err := fc.more(len(buf)); err != nil {
			if len(buf) > 0 && errors.Is(err, os.ErrDeadlineExceeded) && !fc.closing.Load() {
				return headTimedOut, true
			}
			return 0, false
		}
	}
}

// reqInfo is what serveRequest learns from the request's headers.
type reqInfo struct {
	host, requestID, userAgent, contentType []byte
	hosts                                   int
	length                                  int64
	lengths                                 int
	te                                      bool // a Transfer-Encoding header
	close                                   bool
	unsupported                             bool
}

func (fc *fastConn) scanRequest() (ri reqInfo) {
	for _, h := range fc.req.Headers {
		n, v := h.Name, h.Value
		switch len(n) {
		case 4:
			if h1.EqualFold(n, "Host") {
				ri.host, ri.hosts = v, ri.hosts+1
			}
		case 14:
			if h1.EqualFold(n, "Content-Length") {
				var ok bool
				ri.lengths++
				if ri.length, ok = h1.ParseLength(v); !ok {
					ri.unsupported = true
				}
			}
		case 10:
			if h1.EqualFold(n, "Connection") {
				switch {
				case h1.EqualFold(v, "close"):
					ri.close = true
				case h1.EqualFold(v, "keep-alive"):
				default:
					ri.unsupported = true // options naming headers: net/http
				}
			} else if h1.EqualFold(n, "User-Agent") {
				ri.userAgent = v
			}
		case 12:
			if h1.EqualFold(n, "X-Request-Id") {
				ri.requestID = v
			} else if h1.EqualFold(n, "Content-Type") {
				ri.contentType = v
			}
		case 17:
			if h1.EqualFold(n, "Transfer-Encoding") {
				ri.te, ri.unsupported = true, true
			}
		case 7, 6, 2:
			if h1.EqualFold(n, "Upgrade") || h1.EqualFold(n, "Expect") || h1.EqualFold(n, "Te") {
				ri.unsupported = true
			}
		}
	}
	// net/http answers the rest: 400 for a missing, repeated or malformed
	// Host (the same answer whichever path a request takes; a Host with two
	// ports is refused by sanitize), its own framing for two
	// Content-Lengths.
	if ri.hosts != 1 || len(ri.host) == 0 || ri.lengths > 1 || !httpguts.ValidHostHeader(str(ri.host)) || !validHostPort(str(ri.host)) {
		ri.unsupported = true
	}
	return ri
}

// headTimedOut is readHead's answer for a head that did not arrive in
// time.
const headTimedOut = -2

// handOff gives the connection to net/http, except for what net/http
// would take differently from a conformant server when it is handed a
// connection in the middle, as if new: it refuses those itself, at once.
func (fc *fastConn) handOff() outcome {
	buf, _ := fc.br.Peek(fc.br.Buffered())
	line, _, complete := bytes.Cut(buf, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	switch {
	case bytes.HasPrefix(buf, http2Preface):
		if fc.served {
			// RFC 9113 §3.4: the preface starts a connection; after
			// HTTP/1.1 requests net/http would still switch to HTTP/2.
			return fc.refuse(http.StatusBadRequest, prefaceRefusal)
		}
	case complete && !requestLineLike(line):
		// HTTP/0.9, a bare "GET /", garbage: net/http would first wait
		// out read_header_timeout for 14 bytes of a possible HTTP/2
		// preface.
		return fc.refuse(http.StatusBadRequest, "malformed request line")
	case bytes.HasSuffix(line, []byte(" HTTP/1.0")) && hasFieldNamed(buf, "Transfer-Encoding"):
		// A head the fast path could not parse (bare LF, folding, too
		// many fields) still must not reach net/http, which ignores
		// Transfer-Encoding in HTTP/1.0.
		return fc.refuse(http.StatusBadRequest, http10TERefusal)
	}
	return handOff
}

// http2Preface's first line is all that is needed to know it.
var http2Preface = []byte("PRI * HTTP/2.0\r\n")

// hasFieldNamed says whether a line of the head in buf, past the request
// line, is a field named name, read leniently (whitespace before the colon,
// any line end).
func hasFieldNamed(buf []byte, name string) bool {
	_, rest, _ := bytes.Cut(buf, []byte("\n"))
	for len(rest) > 0 {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte("\n"))
		if n, _, ok := bytes.Cut(line, []byte(":")); ok && h1.EqualFold(bytes.TrimRight(bytes.TrimSpace(n), "\r"), name) {
			return true
		}
		if len(bytes.TrimSpace(line)) == 0 {
			break // the head's end
		}
	}
	return false
}

func (fc *fastConn) hasUnderscoreHeader() bool {
	for _, h := range fc.req.Headers {
		if slices.Contains(h.Name, '_') {
			return true
		}
	}
	return false
}

// abort records a response that broke off midway: the client went away
// (DC) or the upstream did (UR). The connection is closed.
func (fc *fastConn) abort(st *reqState, v *reqView, flags string) outcome {
	st.aborted, st.flags = true, flags
	if flags == "UR" {
		st.upstreamErr, st.errReason = errUpstreamReset, "upstream reset"
	}
	if v.status == 0 {
		v.status = 499
	}
	return closeConn
}

// fail answers the client for an upstream that could not be reached or
// did not answer properly: 503, 504 or 502, as the net/http path does.
func (fc *fastConn) fail(st *reqState, v *reqView, err error, out outcome) outcome {
	code, reason := upstreamStatus(err)
	st.upstreamErr, st.errReason = err, reason
	return fc.answer(st, v, code, reason+" (cluster "+st.clusterName()+")", "", out)
}

// clientFault answers a request whose body the client did not deliver:
// 408 when it stalled past body_read_timeout (Envoy's SI flag), 400 when
// it ended early (DPE). Neither is the upstream's fault: the span carries
// no upstream error.
func (fc *fastConn) clientFault(st *reqState, v *reqView, err error) outcome {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fc.answer(st, v, http.StatusRequestTimeout, "the request body did not arrive within body_read_timeout", "SI", closeLinger)
	}
	return fc.answer(st, v, http.StatusBadRequest, "the request body ended before its Content-Length", "DPE", closeLinger)
}

// answer writes a plain-text answer of tracehop's own and records it.
func (fc *fastConn) answer(st *reqState, v *reqView, code int, msg, flags string, out outcome) outcome {
	if flags != "" {
		st.flags = flags
	}
	v.status, v.respBytes = code, int64(len("tracehop: \n")+len(msg))
	if out == keepAlive && (fc.closeAfter || fc.closing.Load()) {
		out = closeConn // and the answer says so
	}
	if !fc.writeAnswer(code, msg, out != keepAlive, &st.reqTrace) {
		return closeConn
	}
	return out
}

// refuse answers a request the fast path will not pass on, before it is
// routed, and closes the connection (its framing cannot be trusted).
func (fc *fastConn) refuse(code int, msg string) outcome {
	fc.writeAnswer(code, msg, true, nil)
	return closeLinger
}

// writeAnswer writes a plain-text response and reports whether it could;
// tr is the request's tracing (nil before the request is routed).
func (fc *fastConn) writeAnswer(code int, msg string, close bool, tr *reqTrace) bool {
	w := append(fc.out[:0], "HTTP/1.1 "...)
	w = strconv.AppendInt(w, int64(code), 10)
	w = append(w, ' ')
	w = append(w, http.StatusText(code)...)
	w = append(w, "\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n"...)
	if tr != nil {
		w = fc.appendTraceresponse(w, tr)
	}
	if close {
		w = append(w, "Connection: close\r\n"...)
	}
	w = appendLength(w, int64(len("tracehop: ")+len(msg)+1))
	w = append(w, "\r\ntracehop: "...)
	w = append(append(w, msg...), '\n')
	fc.out = w[:0]
	return fc.write(w) == nil
}

// appendTraceresponse appends the traceresponse header field of a traced
// request, on a listener that sends it.
func (fc *fastConn) appendTraceresponse(w []byte, tr *reqTrace) []byte {
	if !fc.l.traceresponse || !tr.traced {
		return w
	}
	w = append(w, "Traceresponse: "...)
	w = tr.appendTraceresponse(w)
	return append(w, "\r\n"...)
}
