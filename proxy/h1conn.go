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
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tracehop/tracehop/core/propagation"
	"github.com/tracehop/tracehop/proxy/internal/deadline"
	"github.com/tracehop/tracehop/proxy/internal/h1"
	"golang.org/x/net/http/httpguts"
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
	closing *atomic.Bool // its listener's: drain has begun
	l       *frontend    // the listener's frontend in force for this request
	c       net.Conn
	life    *connLife // its age, requests and place in the connection counts
	// br is a pooled read buffer, held while a request is read and
	// served; nil while a plaintext connection waits with nothing
	// buffered (see waitIdle). Its bytes are the connection's.
	br *bufio.Reader
	// src is what br reads from; raw, the socket under a plaintext
	// connection (nil on TLS, which keeps its buffer).
	src     connSource
	raw     syscall.RawConn
	sock    syscall.RawConn       // the TCP socket, under TLS too: pending peeks it
	tryFill func(fd uintptr) bool // fc.fill, made once
	fillErr error
	// stash is the start of a head that came in parts, set aside while
	// the connection waits for the rest without a buffer.
	stash    []byte
	bw       *bufio.Writer // for chunked responses, made on first use
	peer     netip.AddrPort
	peerAddr string // once per connection, for the spans
	head     []byte // the request head, copied out of br
	out      []byte // the head (and body) written to the client
	req      h1.Request
	resp     h1.Response
	st       reqState
	mut      *propagation.Mutations // made for the first traced request: 3 KiB an idle connection need not hold
	carrier  h1Carrier
	respCap  respCapture
	bagBuf   []byte // baggage restored from an ingress request (link)
	spanBuf  spanBuf
	rd       deadline.Read
	tls      *connTLS // nil on a plaintext listener
	// respHeadLen is the length of the response head that
	// readResponseHead found in the upstream connection's buffer.
	respHeadLen int
	// closeAfter: the request in hand said Connection: close, or is the
	// last its connection may carry (max_requests_per_connection,
	// max_connection_age).
	closeAfter bool
	// served: the fast path has answered a request on the connection.
	served bool
	// state is connIdle while the connection waits for the first byte of
	// a request: only then may drain wake it, or the listener close it to
	// make room (connEvicted), so that no request is cut.
	state atomic.Int32
	// idleSince orders idle connections for eviction, oldest first: those
	// that never sent a request before those that did.
	idleSince atomic.Int64
}

// What fastConn.state says.
const (
	connBusy int32 = iota
	connIdle
	connEvicted
)

// readers are the fast path's read buffers. A connection takes one when
// bytes arrive and gives it back when it waits with none buffered, so an
// idle connection, or one that sends its head a few bytes at a time, holds
// no 16 KiB buffer (issue 26: allocated at accept, they made idle floods
// cost 12-15 KiB a connection).
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, connBufSize) }}

// stashMax is the largest start of a head set aside while the rest is
// awaited without a buffer; a larger one in progress keeps its buffer.
const stashMax = 4 << 10

// connSource is what a connection's pooled reader reads: the stash first,
// then the connection, or, inside fill, the socket without blocking.
type connSource struct {
	c       net.Conn
	fd      int
	raw     bool // inside fill: read fd without blocking
	pending []byte
}

// errWouldBlock is a non-blocking read that found nothing.
var errWouldBlock = errors.New("no bytes yet")

func (s *connSource) Read(p []byte) (int, error) {
	if len(s.pending) > 0 {
		n := copy(p, s.pending)
		s.pending = s.pending[n:]
		return n, nil
	}
	if !s.raw {
		return s.c.Read(p)
	}
	for {
		n, err := syscall.Read(s.fd, p)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return 0, errWouldBlock
		case err != nil:
			return 0, os.NewSyscallError("read", err)
		case n == 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

// newFastConn prepares a connection for the fast path. A plaintext one
// gets its read buffer when bytes arrive; a TLS one (whose own layer
// buffers records anyway) at once.
func newFastConn(c net.Conn, life *connLife) *fastConn {
	fc := &fastConn{c: c, life: life}
	fc.src.c = c
	if sc, ok := c.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			fc.raw, fc.sock = raw, raw
			fc.tryFill = fc.fill
		}
	} else if tc, ok := c.(*tls.Conn); ok {
		if sc, ok := tc.NetConn().(syscall.Conn); ok {
			fc.sock, _ = sc.SyscallConn()
		}
	}
	if fc.raw == nil {
		fc.takeReader()
	}
	return fc
}

// done is the end of a connection the fast path closed: its buffer back
// to the pool, its place in the counts given up.
func (fc *fastConn) done() {
	fc.putReader()
	fc.life.slot.release()
}

func (fc *fastConn) takeReader() {
	fc.br = readers.Get().(*bufio.Reader)
	fc.br.Reset(&fc.src)
}

// putReader gives the read buffer back, with whatever it held: only when
// nothing is buffered, or the connection is done.
func (fc *fastConn) putReader() {
	if fc.br != nil {
		fc.br.Reset(nil)
		readers.Put(fc.br)
		fc.br = nil
	}
}

// awaitBytes waits without a read buffer until bytes beyond the stash
// arrive, or the read deadline passes; then fc.br holds the stash and
// them.
func (fc *fastConn) awaitBytes() error {
	fc.fillErr = nil
	if err := fc.raw.Read(fc.tryFill); err != nil {
		return err
	}
	return fc.fillErr
}

// fill is awaitBytes's try, when the socket may be readable: it reads
// into a pooled buffer without blocking and keeps the buffer only if
// bytes came (true), so that waiting holds none. The rest of a head in
// parts is read into the stash itself until the head may be whole.
func (fc *fastConn) fill(fd uintptr) bool {
	if len(fc.stash) > 0 {
		return fc.fillStash(int(fd))
	}
	fc.takeReader()
	fc.src.fd, fc.src.raw = int(fd), true
	_, err := fc.br.Peek(1)
	fc.src.raw = false
	if err == errWouldBlock {
		fc.putReader()
		return false
	}
	fc.fillErr = err
	return true
}

// fillStash reads the next bytes of a head in parts into the stash,
// without a read buffer: a slow client (a slowloris) costs what it sent.
// Once readHead has something to decide (the head's end, the stash's
// bound, a first line that is no request line), the stash goes into a
// pooled buffer (true).
func (fc *fastConn) fillStash(fd int) bool {
	if cap(fc.stash)-len(fc.stash) < 512 {
		fc.stash = slices.Grow(fc.stash, 512)
	}
	fc.src.fd, fc.src.raw = fd, true
	n, err := fc.src.Read(fc.stash[len(fc.stash):cap(fc.stash)])
	fc.src.raw = false
	switch {
	case err == errWouldBlock:
		return false
	case err != nil:
		fc.fillErr = err
		return true
	}
	fc.stash = fc.stash[:len(fc.stash)+n]
	if h1.HeadLen(fc.stash) < 0 && len(fc.stash) <= stashMax && !noRequestLine(fc.stash) {
		return false // the rest is awaited
	}
	fc.takeReader()
	fc.src.pending = fc.stash
	fc.br.Peek(len(fc.stash))
	fc.src.pending, fc.stash = nil, fc.stash[:0]
	return true
}

// noRequestLine says whether buf's first line is whole and no request
// line: no head will come (handOff refuses it).
func noRequestLine(buf []byte) bool {
	line, _, ok := bytes.Cut(buf, []byte("\n"))
	return ok && !requestLineLike(bytes.TrimSuffix(line, []byte("\r")))
}

// pending says whether bytes wait in the connection's socket that its
// goroutine has not read yet: such a connection is not idle, whatever its
// state says (a peek, made only at a connection limit).
func (fc *fastConn) pending() bool {
	if fc.sock == nil {
		return false
	}
	var n int
	fc.sock.Control(func(fd uintptr) {
		var b [1]byte
		n, _, _ = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	})
	return n > 0
}

// waitIdle waits for the first byte of a request, as a connection that
// may be closed meanwhile, by drain or to make room (evict); false: it
// is to close. A plaintext connection holds no read buffer while it
// waits.
func (fc *fastConn) waitIdle() bool {
	since := fc.life.born.UnixNano() - 1<<62 // never used: first to go
	if !fc.st.start.IsZero() {
		since = fc.st.start.UnixNano()
	}
	fc.idleSince.Store(since)
	fc.state.Store(connIdle)
	if fc.closing.Load() {
		return false
	}
	var err error
	if fc.raw != nil {
		fc.putReader()
		err = fc.awaitBytes()
	} else {
		_, err = fc.br.Peek(1)
	}
	if !fc.state.CompareAndSwap(connIdle, connBusy) {
		return false // evicted
	}
	return err == nil
}

// more waits for bytes beyond the n buffered, of a head not whole yet. A
// small start is set aside and the rest awaited without a buffer (see
// fillStash), so that a slow client costs its few bytes, not 16 KiB.
func (fc *fastConn) more(n int) error {
	if fc.raw == nil || n == 0 || n > stashMax {
		_, err := fc.br.Peek(n + 1)
		return err
	}
	buf, _ := fc.br.Peek(n)
	fc.stash = append(fc.stash[:0], buf...)
	fc.putReader()
	return fc.awaitBytes()
}

// replayConn is a connection whose first bytes were read into br already,
// handed to net/http: its Close gives up its place in the connection
// counts.
type replayConn struct {
	net.Conn
	br   *bufio.Reader
	life *connLife
}

func (c *replayConn) lifeOf() *connLife { return c.life }

func (c *replayConn) Close() error {
	c.life.slot.release()
	return c.Conn.Close()
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
		if !fc.waitIdle() {
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
	_, err := fc.c.Write(w)
	return err == nil
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

func isWriteErr(err error) bool { var we h1.WriteError; return errors.As(err, &we) }

func appendLength(w []byte, n int64) []byte {
	w = append(w, "Content-Length: "...)
	w = strconv.AppendInt(w, n, 10)
	return append(w, "\r\n"...)
}
