package proxy

// The HTTP/1.1 fast path.
//
// Profiles of tracehop on net/http (issue 6) showed most of its CPU outside
// the kernel going to net/http's machinery: a Request and header maps per
// request, http.Transport's two goroutines and channels per round trip,
// context and timer plumbing. The fast path serves the common case itself:
// a keep-alive HTTP/1.1 request with at most a Content-Length body, to an
// HTTP/1.1 cluster. It parses the head in place, writes the upstream
// request with one write, reads the response on the same goroutine and
// relays it with one write when it fits.
//
// Everything else is handed to net/http untouched, with the bytes read so
// far replayed: HTTP/1.0, HTTP/2 (prior knowledge), upgrades (WebSocket),
// Expect, chunked request bodies, Connection options, heads the fast path
// does not accept (obsolete folding, bare LF, huge heads), requests with no
// route, h2c and h2 clusters. The connection then stays with net/http, so a
// client's later requests on it are served there too.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/net/http/httpguts"

	"github.com/tracehop/tracehop/core/propagation"
	"github.com/tracehop/tracehop/proxy/config"
	"github.com/tracehop/tracehop/proxy/internal/deadline"
	"github.com/tracehop/tracehop/proxy/internal/h1"
	"github.com/tracehop/tracehop/proxy/internal/upstream"
)

const (
	// connBufSize is each connection's read buffer: a head that does not
	// fit goes to net/http.
	connBufSize = 16 << 10
	// inlineBody is the largest body sent in the same write as its head.
	inlineBody = 64 << 10
)

// fastConn is one client connection on the fast path. It serves one
// request at a time, so it owns one request's state and buffers.
type fastConn struct {
	sock     *socket
	l        *listener // the socket's listener in force for this request
	c        net.Conn
	br       *bufio.Reader
	bw       *bufio.Writer // for chunked responses, made on first use
	peer     netip.AddrPort
	peerAddr string // once per connection, for the spans
	head     []byte // the request head, copied out of br
	out      []byte // the head (and body) written to the client
	req      h1.Request
	resp     h1.Response
	st       reqState
	mut      propagation.Mutations
	carrier  h1Carrier
	respCap  respCapture
	bagBuf   []byte // baggage restored from an ingress request (link)
	spanBuf  spanBuf
	rd       deadline.Read
	tls      *connTLS // nil on a plaintext listener
	// respHeadLen is the length of the response head that
	// readResponseHead found in the upstream connection's buffer.
	respHeadLen int
	// closeAfter: the request in hand said Connection: close.
	closeAfter bool
	// served: the fast path has answered a request on the connection.
	served bool
	// idle is set while the connection waits for the first byte of a
	// request: only then may drain wake it, so that no request is cut.
	idle atomic.Bool
}

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

func (h *handoff) Close() error   { h.once.Do(func() { close(h.done) }); return nil }
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

// replayConn is a connection whose first bytes were read into br already.
type replayConn struct {
	net.Conn
	br *bufio.Reader
}

func (c *replayConn) Read(p []byte) (int, error) {
	if c.br != nil {
		if c.br.Buffered() > 0 {
			return c.br.Read(p)
		}
		c.br = nil
	}
	return c.Conn.Read(p)
}

// CloseWrite lets net/http close a connection gracefully.
func (c *replayConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

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
	if fc.br.Buffered() == 0 {
		if l.idleTimeout > 0 {
			fc.rd.Set(fc.c, l.idleTimeout)
		}
		fc.idle.Store(true)
		if fc.sock.closing.Load() {
			return 0, false
		}
		_, err := fc.br.Peek(1)
		fc.idle.Store(false)
		if err != nil {
			return 0, false
		}
	}
	deadline := false
	for {
		buf, _ := fc.br.Peek(fc.br.Buffered())
		if n := h1.HeadLen(buf); n >= 0 {
			return n, true
		}
		if len(buf) == fc.br.Size() {
			return -1, true
		}
		if line, _, ok := bytes.Cut(buf, []byte("\n")); ok && !requestLineLike(bytes.TrimSuffix(line, []byte("\r"))) {
			return -1, true // no head will come: handOff refuses it now
		}
		if !deadline && l.headerTimeout > 0 {
			fc.rd.Set(fc.c, l.headerTimeout)
			deadline = true
		}
		if _, err := fc.br.Peek(len(buf) + 1); err != nil {
			if len(buf) > 0 && errors.Is(err, os.ErrDeadlineExceeded) && !fc.sock.closing.Load() {
				return headTimedOut, true
			}
			return 0, false
		}
	}
}

// reqInfo is what serveRequest learns from the request's headers.
type reqInfo struct {
	host, requestID, userAgent []byte
	hosts                      int
	length                     int64
	lengths                    int
	te                         bool // a Transfer-Encoding header
	close                      bool
	unsupported                bool
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
	// Host (the same answer whichever path a request takes), its own
	// framing for two Content-Lengths.
	if ri.hosts != 1 || len(ri.host) == 0 || ri.lengths > 1 || !httpguts.ValidHostHeader(str(ri.host)) {
		ri.unsupported = true
	}
	return ri
}

// str views b as a string without a copy; it is valid while b is.
func str(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// headTimedOut is readHead's answer for a head that did not arrive in
// time.
const headTimedOut = -2

func (fc *fastConn) serveRequest(headLen int) outcome {
	l := fc.l
	if headLen == headTimedOut {
		// As HAProxy does, and at once: handed to net/http, the client
		// would get read_header_timeout once more.
		return fc.refuse(http.StatusRequestTimeout, "the request head did not arrive within read_header_timeout")
	}
	if headLen < 0 {
		return fc.handOff()
	}
	buf, _ := fc.br.Peek(headLen)
	fc.head = append(fc.head[:0], buf...)
	if h1.ParseRequest(fc.head, &fc.req) != nil {
		return fc.handOff()
	}
	ri := fc.scanRequest()
	if ri.te && fc.req.Minor == 0 {
		return fc.refuse(http.StatusBadRequest, http10TERefusal)
	}
	if str(fc.req.Method) == http.MethodConnect {
		return fc.refuse(http.StatusMethodNotAllowed, connectRefusal)
	}
	if fc.req.Minor != 1 || l.slowPathOnly {
		return handOff
	}
	path, _, _ := strings.Cut(str(fc.req.Target), "?")
	if ri.unsupported || strings.IndexByte(path, '%') >= 0 {
		return handOff
	}
	var rt *route
	for _, r := range l.routes {
		if r.matchesFast(path, fc.req.Headers) {
			rt = r
			break
		}
	}
	if rt == nil || rt.cluster.HTTP2() {
		return handOff
	}
	fc.br.Discard(headLen)
	fc.closeAfter = ri.close

	st := &fc.st
	*st = reqState{listener: l, route: rt, start: time.Now(), peer: fc.peer, peerAddr: fc.peerAddr, buf: &fc.spanBuf, bagBuf: &fc.bagBuf, tls: fc.tls}
	if id := ri.requestID; l.trusted && validRequestID(str(id)) {
		st.requestID = string(id)
	} else {
		st.requestID = newRequestID()
	}
	st.reqBytes.Store(ri.length)
	fc.carrier.hs = fc.req.Headers
	v := reqView{
		method: str(fc.req.Method), host: str(ri.host), uri: str(fc.req.Target), proto: "HTTP/1.1",
		userAgent: str(ri.userAgent), header: &fc.carrier, volatile: true,
	}
	st.traced = l.tracer != nil && !rt.untraced()
	if st.traced {
		l.tracer.begin(st, &v)
		l.tracer.prop.InjectInto(&fc.mut, st.out)
	}
	var out outcome
	if fc.req.Underscore && l.underscores == config.UnderscoresReject && fc.hasUnderscoreHeader() {
		out = fc.answer(st, &v, http.StatusBadRequest, underscoreRefusal, "DPE", closeLinger)
	} else {
		out = fc.proxy(st, &v, &ri)
	}
	l.done(st, &v)
	if out == keepAlive && (ri.close || fc.sock.closing.Load()) {
		out = closeConn
	}
	return out
}

// http10TERefusal answers an HTTP/1.0 request with Transfer-Encoding: RFC
// 9112 §6.1 makes its framing faulty, whatever else the head says
// (net/http would frame it by Content-Length and keep the connection).
const http10TERefusal = "Transfer-Encoding is not defined for HTTP/1.0"

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

// requestLineLike says whether line ends as a request line does, in an
// HTTP version (net/http refuses anything else with 400, after its wait).
func requestLineLike(line []byte) bool {
	n := len(line)
	return n >= len("A / HTTP/1.1") && string(line[n-8:n-3]) == "HTTP/" && line[n-2] == '.'
}

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

// underscoreRefusal is the answer to a header name with an underscore on
// a listener with headers_with_underscores: reject.
const underscoreRefusal = "header names with underscores are refused here (headers_with_underscores: reject)"

func (fc *fastConn) hasUnderscoreHeader() bool {
	for _, h := range fc.req.Headers {
		if slices.Contains(h.Name, '_') {
			return true
		}
	}
	return false
}

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
		st.upstreamStart = time.Now()
		sendErr := fc.send(uc, st, ri, inline)
		err = sendErr
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
		var nothing errNothingWritten
		replay := errors.As(sendErr, &nothing) || fc.replayable(ri)
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

// errNothingWritten is a failed write of a request of which no byte left:
// the upstream cannot have seen it, and it may go again whatever it is.
type errNothingWritten struct{ error }

func (e errNothingWritten) Unwrap() error { return e.error }

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
	w = st.peer.Addr().AppendTo(w)
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
			if k, v, del, final := fc.mut.At(i); final && !del {
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
	if n, err := uc.NetConn.Write(w); err != nil {
		if n == 0 {
			return errNothingWritten{err}
		}
		return err
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

// upload is a request body on its way upstream beside the response.
type upload struct {
	done     chan error
	mu       sync.Mutex
	headSeen bool // the response head is here: the upload no longer sets deadlines on the upstream's reads
	finished bool
	ok       bool // the whole body went upstream
	err      error
}

func (up *upload) run(fc *fastConn, uc *upstream.Conn, n int64, timeout time.Duration) {
	err := copyBody(uc.NetConn, fc.br, fc.c, n, fc.l.bodyTimeout, timeout)
	up.mu.Lock()
	if !up.headSeen {
		switch {
		case err == nil && timeout > 0:
			// The route timeout counts from the end of the request.
			uc.NetConn.SetReadDeadline(time.Now().Add(timeout))
		case err == nil:
		case isWriteErr(err):
			// The upstream stopped reading: its early answer may still
			// be on the way.
			uc.NetConn.SetReadDeadline(time.Now().Add(earlyAnswerGrace))
		default:
			// The client failed: stop waiting for the upstream.
			uc.NetConn.SetReadDeadline(time.Now())
		}
	}
	up.mu.Unlock()
	up.done <- err
}

// earlyAnswerGrace is how long an upstream that stopped reading a body has
// to send its answer.
const earlyAnswerGrace = time.Second

// errUploadStopped is the error of an upload that tracehop cut short.
var errUploadStopped = errors.New("the request body's upload was stopped")

// stop ends the upload if it still runs (the response is complete, or the
// upstream failed) and returns its error: errUploadStopped if it had to be
// cut. The client's connection may then hold body bytes nobody read.
func (up *upload) stop(fc *fastConn, uc *upstream.Conn) error {
	if up.finished {
		return up.err
	}
	select {
	case up.err = <-up.done:
	default:
		fc.c.SetReadDeadline(time.Now())
		uc.NetConn.SetWriteDeadline(time.Now())
		if err := <-up.done; err != nil {
			up.err = errUploadStopped
		}
	}
	up.finished, up.ok = true, up.err == nil
	return up.err
}

// running reports whether the upload goes on, without waiting.
func (up *upload) running() bool {
	if up.finished {
		return false
	}
	select {
	case up.err = <-up.done:
		up.finished, up.ok = true, up.err == nil
		return false
	default:
		return true
	}
}

// copyBody copies n bytes of a request body from the client (src, read
// through br) to the upstream (dst). Each wait for the client is bounded by
// readTimeout, each write to the upstream by writeTimeout. Failures to
// write are h1.WriteErrors; anything else is the client's.
func copyBody(dst net.Conn, br *bufio.Reader, src net.Conn, n int64, readTimeout, writeTimeout time.Duration) error {
	var rd deadline.Read
	for done := int64(0); done < n; {
		if br.Buffered() == 0 {
			if readTimeout > 0 {
				rd.Set(src, readTimeout)
			}
			if _, err := br.Peek(1); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return err
			}
		}
		b, _ := br.Peek(int(min(int64(br.Buffered()), n-done)))
		if writeTimeout > 0 {
			dst.SetWriteDeadline(time.Now().Add(writeTimeout))
		}
		m, err := dst.Write(b)
		br.Discard(m)
		done += int64(m)
		if err != nil {
			return h1.WriteError{Err: err}
		}
	}
	if writeTimeout > 0 {
		dst.SetWriteDeadline(time.Time{})
	}
	return nil
}

func appendHeader(w, name, value []byte) []byte {
	w = append(w, name...)
	w = append(w, ": "...)
	w = append(w, value...)
	return append(w, "\r\n"...)
}

// requestHopHeaders are not forwarded: hop-by-hop headers (as
// httputil.ReverseProxy removes them) and those tracehop writes itself.
var requestHopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer",
	"Transfer-Encoding", "Upgrade", "Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", headerRequestID,
	"Content-Length",
}

func skipRequestHeader(name []byte, trusted bool) bool {
	for _, h := range requestHopHeaders {
		if h1.EqualFold(name, h) {
			return true
		}
	}
	if !trusted {
		for _, h := range untrustedHeaders {
			if h1.EqualFold(name, h) {
				return true
			}
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

// readResponseHead waits for the upstream's response head, at most timeout
// (a negative timeout leaves the connection's deadline as it is).
func (fc *fastConn) readResponseHead(uc *upstream.Conn, timeout time.Duration) error {
	if timeout > 0 {
		uc.ReadDeadline.Set(uc.NetConn, timeout)
	} else if timeout == 0 {
		uc.ReadDeadline.Clear(uc.NetConn)
	}
	for {
		buf, err := uc.Reader.Peek(1)
		if err != nil {
			return err
		}
		uc.Answered = true
		buf, _ = uc.Reader.Peek(uc.Reader.Buffered())
		if n := h1.HeadLen(buf); n >= 0 {
			// The deadline stays: relay clears it before it reads a body
			// from the network. An answer already in the buffer (most)
			// costs no timer update.
			fc.respHeadLen = n
			return nil
		}
		if len(buf) == uc.Reader.Size() {
			return fmt.Errorf("the upstream's response head is larger than %d KiB", uc.Reader.Size()>>10)
		}
		if _, err := uc.Reader.Peek(len(buf) + 1); err != nil {
			return err
		}
	}
}

type bodyKind int

const (
	bodyNone bodyKind = iota
	bodyLength
	bodyChunked
	bodyUntilClose
)

// max1xx bounds the informational responses relayed for one request, as
// net/http's Transport does.
const max1xx = 5

// relay writes the response to the client. up is the upload of a streamed
// request body, or nil.
func (fc *fastConn) relay(uc *upstream.Conn, st *reqState, v *reqView, up *upload) outcome {
	for n1xx := 0; ; n1xx++ {
		buf, _ := uc.Reader.Peek(fc.respHeadLen)
		if err := h1.ParseResponse(buf, &fc.resp); err != nil {
			uc.Close()
			return fc.fail(st, v, errors.New("the upstream sent a malformed response head"), closeLinger)
		}
		s := fc.resp.Status
		if s < 100 || s >= 200 || s == 101 {
			break
		}
		// Informational (103 Early Hints): pass it on, written again
		// without hop-by-hop or framing fields, and read on.
		if n1xx == max1xx {
			uc.Close()
			return fc.fail(st, v, errors.New("the upstream sent too many 1xx responses"), closeLinger)
		}
		w := fc.appendStatusLine(fc.out[:0])
		for _, h := range fc.resp.Headers {
			if !hopResponseHeader(h.Name) && !h1.EqualFold(h.Name, "Content-Length") && !h1.EqualFold(h.Name, "Transfer-Encoding") {
				w = appendHeader(w, h.Name, h.Value)
			}
		}
		w = append(w, "\r\n"...)
		fc.out = w[:0]
		if _, err := fc.c.Write(w); err != nil {
			uc.Close()
			return fc.abort(st, v, "DC")
		}
		uc.Reader.Discard(fc.respHeadLen)
		if err := fc.readResponseHead(uc, st.route.timeout); err != nil {
			uc.Close()
			if errors.Is(err, os.ErrDeadlineExceeded) {
				err = errUpstreamTimeout
			}
			return fc.fail(st, v, err, closeLinger)
		}
	}
	resp := &fc.resp
	if resp.Status == 101 {
		uc.Close()
		return fc.fail(st, v, errors.New("the upstream switched protocols unasked"), closeLinger)
	}
	kind, length := bodyUntilClose, int64(-1)
	upstreamClose := resp.Minor == 0
	// RFC 9110 §7.6.1: every field Connection names goes, wherever it
	// stands, so the options are read first.
	connOptions := false
	for _, h := range resp.Headers {
		if h1.EqualFold(h.Name, "Connection") {
			for tok := range strings.SplitSeq(str(h.Value), ",") {
				switch tok = strings.TrimSpace(tok); {
				case strings.EqualFold(tok, "close"):
					upstreamClose = true
				case tok != "" && !strings.EqualFold(tok, "keep-alive"):
					connOptions = true
				}
			}
		}
	}
	w := fc.appendStatusLine(fc.out[:0])
	for _, h := range resp.Headers {
		switch {
		case h1.EqualFold(h.Name, "Content-Length"):
			// Written again below, once and canonically, where it may be.
			n, ok := h1.ParseLength(h.Value)
			if !ok || length >= 0 && n != length {
				uc.Close()
				return fc.fail(st, v, errors.New("the upstream sent an invalid Content-Length"), closeLinger)
			}
			length = n
			continue
		case h1.EqualFold(h.Name, "Transfer-Encoding"):
			if !h1.EqualFold(h.Value, "chunked") || resp.Minor == 0 {
				// RFC 9112 §6.1: in HTTP/1.0, Transfer-Encoding means
				// faulty framing.
				uc.Close()
				return fc.fail(st, v, errors.New("the upstream sent a Transfer-Encoding other than chunked"), closeLinger)
			}
			kind = bodyChunked
			continue
		case h1.EqualFold(h.Name, "Connection"), hopResponseHeader(h.Name):
			continue
		case connOptions && connectionNames(resp.Headers, h.Name):
			continue
		case h1.EqualFold(h.Name, "Grpc-Status"):
			v.grpcStatus = string(h.Value)
		}
		w = appendHeader(w, h.Name, h.Value)
	}
	switch {
	case resp.Status == 204 || resp.Status == 304 || v.method == "HEAD":
		// No body. A 204 has no Content-Length (RFC 9110 §8.6); a 304 or
		// an answer to HEAD may say what the body would be.
		if length >= 0 && resp.Status != 204 && kind != bodyChunked {
			w = appendLength(w, length)
		}
		kind = bodyNone
		// A wrong upstream writes a body anyway, at once: the pool parks
		// the connection after a 204 or 304; after a HEAD (fewer, and
		// under load a parked connection was still measured to fall an
		// answer behind now and then) it is not reused at all.
		uc.Bodiless = true
		upstreamClose = upstreamClose || v.method == http.MethodHead
	case kind == bodyChunked:
		// RFC 9112 §6.3: Transfer-Encoding overrides Content-Length, and
		// an intermediary removes the Content-Length before it forwards.
		// Such an answer may be an attack: the connection is not reused.
		w = append(w, "Transfer-Encoding: chunked\r\n"...)
		upstreamClose = upstreamClose || length >= 0
	case length >= 0:
		kind = bodyLength
		w = appendLength(w, length)
	}
	out := keepAlive
	if kind == bodyUntilClose {
		// Only the end of the connection ends the body.
		w = append(w, "Connection: close\r\n"...)
		out = closeConn
	} else if up != nil && up.running() {
		// The upstream answered before it had the whole body: the
		// client's connection cannot be reused (RFC 9112 §9.5).
		w = append(w, "Connection: close\r\n"...)
		out = closeLinger
	} else if fc.closeAfter || fc.sock.closing.Load() {
		// The client asked to close, or tracehop is draining: say so
		// (RFC 9112 §9.6), as net/http does, so that a client does not
		// send its next request into a closing connection.
		w = append(w, "Connection: close\r\n"...)
		out = closeConn
	}
	w = append(w, "\r\n"...)
	if st.sampled && fc.l.tracer.wantsResponse(st.route) {
		// The head is gone once the body is read: keep what the span's
		// response-header tags read.
		fc.respCap.capture(resp.Headers, fc.l.tracer, st.route)
		v.respHeader = &fc.respCap
	}
	uc.Reader.Discard(fc.respHeadLen)
	v.status = resp.Status

	var err error
	var sent int64
	var upErr bool
	switch kind {
	case bodyNone:
		_, err = fc.c.Write(w)
	case bodyLength:
		if length <= inlineBody && int64(uc.Reader.Buffered()) >= length {
			body, _ := uc.Reader.Peek(int(length))
			w = append(w, body...)
			uc.Reader.Discard(int(length))
			_, err = fc.c.Write(w)
			sent = length
		} else if _, err = fc.c.Write(w); err == nil {
			uc.ReadDeadline.Clear(uc.NetConn)
			sent, err = h1.CopyN(fc.c, uc.Reader, length, nil)
			upErr = err != nil && sent < length && !isWriteErr(err)
		}
	case bodyChunked:
		if fc.bw == nil {
			fc.bw = bufio.NewWriterSize(fc.c, 8<<10)
		}
		fc.bw.Write(w)
		uc.ReadDeadline.Clear(uc.NetConn)
		sent, err = h1.CopyChunked(fc.bw, uc.Reader, fc.bw.Flush)
		upErr = err != nil && !isWriteErr(err)
		if err == nil {
			err = fc.bw.Flush()
		} else {
			fc.bw.Reset(fc.c)
		}
	case bodyUntilClose:
		if _, err = fc.c.Write(w); err == nil {
			uc.ReadDeadline.Clear(uc.NetConn)
			sent, err = h1.CopyN(fc.c, uc.Reader, -1, nil)
			upErr = err != nil && !isWriteErr(err)
		}
		upstreamClose = true
	}
	fc.out = w[:0]
	v.respBytes = sent
	if err != nil {
		uc.Close()
		if upErr {
			return fc.abort(st, v, "UR")
		}
		return fc.abort(st, v, "DC")
	}
	if up != nil && (up.running() || !up.ok) {
		upstreamClose = true // the request never ended on it
	}
	if upstreamClose {
		uc.Close()
	} else {
		st.endpoint.Put(uc)
	}
	return out
}

// connectionNames says whether a Connection field of hs names name.
func connectionNames(hs []h1.Header, name []byte) bool {
	for _, h := range hs {
		if h1.EqualFold(h.Name, "Connection") {
			for tok := range strings.SplitSeq(str(h.Value), ",") {
				if h1.EqualFold(name, strings.TrimSpace(tok)) {
					return true
				}
			}
		}
	}
	return false
}

// appendStatusLine writes the status line of fc.resp as HTTP/1.1, with
// the standard reason phrase rather than the upstream's, as net/http's
// server does: a reason means nothing to a client (RFC 9110 §15), and a
// bare CR in one is a line end to some (a header injected).
func (fc *fastConn) appendStatusLine(w []byte) []byte {
	w = append(w, "HTTP/1.1 "...)
	w = strconv.AppendInt(w, int64(fc.resp.Status), 10)
	w = append(w, ' ')
	if text := http.StatusText(fc.resp.Status); text != "" {
		w = append(w, text...)
	} else {
		w = append(w, "status code "...)
		w = strconv.AppendInt(w, int64(fc.resp.Status), 10)
	}
	return append(w, "\r\n"...)
}

func appendLength(w []byte, n int64) []byte {
	w = append(w, "Content-Length: "...)
	w = strconv.AppendInt(w, n, 10)
	return append(w, "\r\n"...)
}

// hopResponseHeader names the hop-by-hop response headers that are never
// relayed (Connection and Transfer-Encoding are handled apart).
func hopResponseHeader(name []byte) bool {
	return h1.EqualFold(name, "Keep-Alive") || h1.EqualFold(name, "Proxy-Connection") || h1.EqualFold(name, "Te") ||
		h1.EqualFold(name, "Upgrade") || h1.EqualFold(name, "Proxy-Authenticate")
}

func isWriteErr(err error) bool { var we h1.WriteError; return errors.As(err, &we) }

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
	if !fc.writeAnswer(code, msg, out != keepAlive) {
		return closeConn
	}
	return out
}

// refuse answers a request the fast path will not pass on, before it is
// routed, and closes the connection (its framing cannot be trusted).
func (fc *fastConn) refuse(code int, msg string) outcome {
	fc.writeAnswer(code, msg, true)
	return closeLinger
}

// writeAnswer writes a plain-text response and reports whether it could.
func (fc *fastConn) writeAnswer(code int, msg string, close bool) bool {
	w := append(fc.out[:0], "HTTP/1.1 "...)
	w = strconv.AppendInt(w, int64(code), 10)
	w = append(w, ' ')
	w = append(w, http.StatusText(code)...)
	w = append(w, "\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n"...)
	if close {
		w = append(w, "Connection: close\r\n"...)
	}
	w = appendLength(w, int64(len("tracehop: ")+len(msg)+1))
	w = append(w, "\r\ntracehop: "...)
	w = append(append(w, msg...), '\n')
	fc.out = w[:0]
	_, err := fc.c.Write(w)
	return err == nil
}

// lingerClose closes a connection whose client may still be sending: a
// close with unread bytes makes the kernel answer with a reset, which can
// destroy the response before the client reads it. So the write side is
// shut, what arrives is read and dropped for a moment, then it closes (as
// net/http's server does).
func lingerClose(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	c.SetReadDeadline(time.Now().Add(lingerTime))
	io.Copy(io.Discard, io.LimitReader(c, 1<<20))
	c.Close()
}

// lingerTime bounds lingerClose's wait.
const lingerTime = 500 * time.Millisecond

// matchesFast is route.matches for the fast path's parsed head.
func (rt *route) matchesFast(path string, hs []h1.Header) bool {
	if rt.path != "" && path != rt.path || rt.prefix != "" && !strings.HasPrefix(path, rt.prefix) {
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

// respCapture holds the response headers that response-header tags read,
// copied out of the upstream connection's buffer, which the body reuses.
type respCapture struct {
	buf    []byte
	fields [][3]int // name start, value start, value end in buf
}

// capture keeps the fields of hs that a custom tag of t or of rt reads.
func (c *respCapture) capture(hs []h1.Header, t *Tracer, rt *route) {
	c.buf, c.fields = c.buf[:0], c.fields[:0]
	wanted := func(name []byte, tags []customTag) bool {
		for _, ct := range tags {
			if ct.respHeader != "" && h1.EqualFold(name, ct.respHeader) {
				return true
			}
		}
		return false
	}
	for _, h := range hs {
		if wanted(h.Name, t.customTags) || rt != nil && rt.tracing != nil && wanted(h.Name, rt.tracing.customTags) {
			start := len(c.buf)
			c.buf = append(c.buf, h.Name...)
			mid := len(c.buf)
			c.buf = append(c.buf, h.Value...)
			c.fields = append(c.fields, [3]int{start, mid, len(c.buf)})
		}
	}
}

// Get returns the first captured value of key.
func (c *respCapture) Get(key string) string {
	for _, f := range c.fields {
		if h1.EqualFold(c.buf[f[0]:f[1]], key) {
			return str(c.buf[f[1]:f[2]])
		}
	}
	return ""
}

// h1Carrier reads trace headers from the fast path's parsed head.
type h1Carrier struct {
	hs   []h1.Header
	hide bool // an untrusted listener: trace headers are not there
}

func (c *h1Carrier) hidden(key string) bool {
	if !c.hide {
		return false
	}
	for _, h := range untrustedHeaders {
		if h == key {
			return true
		}
	}
	return false
}

// Get implements propagation.Carrier.
func (c *h1Carrier) Get(key string) string {
	for _, h := range c.hs {
		if h1.EqualFold(h.Name, key) {
			if c.hidden(key) {
				return ""
			}
			return str(h.Value)
		}
	}
	return ""
}

// GetJoined implements propagation.Carrier.
func (c *h1Carrier) GetJoined(key string) string {
	var first []byte
	var joined []byte
	for _, h := range c.hs {
		if !h1.EqualFold(h.Name, key) {
			continue
		}
		switch {
		case first == nil:
			first = h.Value
		case joined == nil:
			joined = append(append(append(joined, first...), ','), h.Value...)
		default:
			joined = append(append(joined, ','), h.Value...)
		}
	}
	if first == nil || c.hidden(key) {
		return ""
	}
	if joined != nil {
		return string(joined)
	}
	return str(first)
}
