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
// route, h2c clusters. The connection then stays with net/http, so a
// client's later requests on it are served there too.

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/tracehop/tracehop/core/propagation"
	"github.com/tracehop/tracehop/proxy/internal/h1"
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
	l        *listener
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
	spanBuf  spanBuf
	rd       readDeadline
}

// handoff is the net.Listener through which the fast path gives
// connections to net/http.
type handoff struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
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

func (h *handoff) give(c net.Conn) {
	select {
	case h.ch <- c:
	case <-h.done:
		c.Close()
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

// serve accepts connections until ln is closed.
func (l *listener) serve(ln net.Listener) error {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of file descriptors and the like: back off as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.log.Warn("accept failed; retrying", "listener", l.name, "error", err, "in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		go l.serveConn(c)
	}
}

func (l *listener) track(fc *fastConn, add bool) {
	l.connsMu.Lock()
	defer l.connsMu.Unlock()
	if add {
		l.conns[fc] = struct{}{}
		l.connsWG.Add(1)
	} else {
		delete(l.conns, fc)
		l.connsWG.Done()
	}
}

// drain stops the fast path: idle connections close at once, busy ones
// after their request; when ctx ends, the rest are closed.
func (l *listener) drain(ctx context.Context) error {
	l.closing.Store(true)
	l.connsMu.Lock()
	for fc := range l.conns {
		// Wakes a connection waiting for its next request; a busy one
		// fails its next read, after the response.
		fc.c.SetReadDeadline(time.Now())
	}
	l.connsMu.Unlock()
	done := make(chan struct{})
	go func() { l.connsWG.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		l.connsMu.Lock()
		for fc := range l.conns {
			fc.c.Close()
		}
		l.connsMu.Unlock()
		<-done
		return ctx.Err()
	}
}

// outcome says what a connection does after a request.
type outcome int

const (
	keepAlive outcome = iota
	closeConn
	handOff
)

func (l *listener) serveConn(c net.Conn) {
	fc := &fastConn{l: l, c: c, br: bufio.NewReaderSize(c, connBufSize)}
	if ap, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		fc.peer = ap.AddrPort()
		fc.peer = netip.AddrPortFrom(fc.peer.Addr().Unmap(), fc.peer.Port())
	}
	fc.peerAddr = fc.peer.Addr().String()
	fc.carrier.hide = !l.trusted
	l.track(fc, true)
	defer l.track(fc, false)
	for {
		n, ok := fc.readHead()
		if !ok {
			c.Close()
			return
		}
		switch fc.serveRequest(n) {
		case keepAlive:
		case closeConn:
			c.Close()
			return
		case handOff:
			c.SetReadDeadline(time.Time{})
			l.handoff.give(&replayConn{Conn: c, br: fc.br})
			return
		}
	}
}

// readHead waits for a whole request head in the buffer and returns its
// length; -1 (with ok) means the head is too large for the fast path.
func (fc *fastConn) readHead() (int, bool) {
	l := fc.l
	if fc.br.Buffered() == 0 {
		if l.idleTimeout > 0 {
			fc.rd.set(fc.c, l.idleTimeout)
		}
		if l.closing.Load() {
			return 0, false
		}
		if _, err := fc.br.Peek(1); err != nil {
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
		if !deadline && l.headerTimeout > 0 {
			fc.rd.set(fc.c, l.headerTimeout)
			deadline = true
		}
		if _, err := fc.br.Peek(len(buf) + 1); err != nil {
			if len(buf) > 0 && errors.Is(err, os.ErrDeadlineExceeded) && !l.closing.Load() {
				return -1, true // net/http answers the slow client
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
		case 17, 7, 6, 2:
			if h1.EqualFold(n, "Transfer-Encoding") || h1.EqualFold(n, "Upgrade") || h1.EqualFold(n, "Expect") || h1.EqualFold(n, "Te") {
				ri.unsupported = true
			}
		}
	}
	if ri.hosts != 1 || len(ri.host) == 0 || ri.lengths > 1 {
		ri.unsupported = true
	}
	return ri
}

// str views b as a string without a copy; it is valid while b is.
func str(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

func (fc *fastConn) serveRequest(headLen int) outcome {
	l := fc.l
	if headLen < 0 {
		return handOff
	}
	buf, _ := fc.br.Peek(headLen)
	fc.head = append(fc.head[:0], buf...)
	if h1.ParseRequest(fc.head, &fc.req) != nil || fc.req.Minor != 1 {
		return handOff
	}
	ri := fc.scanRequest()
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
	if rt == nil || rt.cluster.h2c {
		return handOff
	}
	fc.br.Discard(headLen)

	st := &fc.st
	*st = reqState{listener: l, route: rt, start: time.Now(), peer: fc.peer, peerAddr: fc.peerAddr, buf: &fc.spanBuf}
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
	if l.tracer != nil {
		l.tracer.begin(st, &v)
		l.tracer.prop.InjectInto(&fc.mut, st.out)
	}
	out := fc.proxy(st, &v, &ri)
	l.done(st, &v)
	if out == keepAlive && (ri.close || l.closing.Load()) {
		out = closeConn
	}
	return out
}

// proxy sends the request upstream and relays the response.
func (fc *fastConn) proxy(st *reqState, v *reqView, ri *reqInfo) outcome {
	rt := st.route
	cl := rt.cluster
	ep := cl.pick()
	st.endpoint = ep
	// The request body goes in the head's write when it is here already.
	inline := ri.length == 0 || ri.length <= inlineBody && int64(fc.br.Buffered()) >= ri.length
	var uc *upstreamConn
	var err error
	for attempt := 0; ; attempt++ {
		if attempt == 0 {
			uc, err = ep.pool.get(cl.dialer)
		} else {
			uc, err = ep.pool.dial(cl.dialer)
		}
		if err != nil {
			if ri.length > 0 {
				return fc.fail(st, v, err, closeConn)
			}
			return fc.fail(st, v, err, keepAlive)
		}
		st.upstreamStart = time.Now()
		err = fc.send(uc, st, ri, inline)
		if err == nil {
			err = fc.readResponseHead(uc, rt.timeout)
		}
		if err == nil {
			break
		}
		uc.close()
		// A kept-alive connection the upstream closed meanwhile fails
		// before any answer: try once more on a new one if the request can
		// be sent again. The idle ones older than it went through the same
		// (an upstream's idle timeout, a restart): they go too.
		// A timeout is a slow upstream, not a stale connection.
		timeout := errors.Is(err, os.ErrDeadlineExceeded)
		stale := uc.reused && !uc.answered && !timeout
		if stale {
			ep.pool.dropIdleSince(uc.idleSince)
		}
		if !stale || !inline || attempt > 0 {
			if timeout {
				err = errUpstreamTimeout
			}
			return fc.fail(st, v, err, closeConn)
		}
	}
	if inline && ri.length > 0 {
		fc.br.Discard(int(ri.length))
	}
	return fc.relay(uc, st, v)
}

// send writes the upstream request: the head, rewritten, and the body.
func (fc *fastConn) send(uc *upstreamConn, st *reqState, ri *reqInfo, inline bool) error {
	l := fc.l
	tracing := l.tracer != nil
	w := append(uc.wb[:0], fc.req.Method...)
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
		w = appendHeader(w, h.Name, h.Value)
	}
	// X-Forwarded-For and -Proto, as the net/http path writes them (no
	// X-Forwarded-Host: Host is kept).
	w = append(w, "X-Forwarded-For: "...)
	for _, v := range xff {
		w = append(append(w, v...), ", "...)
	}
	w = st.peer.Addr().AppendTo(w)
	w = append(w, "\r\nX-Forwarded-Proto: http\r\nX-Request-Id: "...)
	w = append(w, st.requestID...)
	w = append(w, "\r\n"...)
	if tracing {
		for i := range fc.mut.Len() {
			if k, v, del, final := fc.mut.At(i); final && !del {
				w = append(w, k...)
				w = append(w, ": "...)
				w = append(append(w, v...), "\r\n"...)
			}
		}
	}
	w = append(w, "\r\n"...)
	if inline && ri.length > 0 {
		body, _ := fc.br.Peek(int(ri.length))
		w = append(w, body...)
	}
	uc.wb = w
	if _, err := uc.c.Write(w); err != nil {
		return err
	}
	if !inline {
		if _, err := h1.CopyN(uc.c, fc.br, ri.length, nil); err != nil {
			return err
		}
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

// readResponseHead waits for the upstream's response head, at most timeout.
func (fc *fastConn) readResponseHead(uc *upstreamConn, timeout time.Duration) error {
	if timeout > 0 {
		uc.rd.set(uc.c, timeout)
	} else {
		uc.rd.clear(uc.c)
	}
	for {
		buf, err := uc.br.Peek(1)
		if err != nil {
			return err
		}
		uc.answered = true
		buf, _ = uc.br.Peek(uc.br.Buffered())
		if n := h1.HeadLen(buf); n >= 0 {
			// The deadline stays: relay clears it before it reads a body
			// from the network. An answer already in the buffer (most)
			// costs no timer update.
			uc.headLen = n
			return nil
		}
		if len(buf) == uc.br.Size() {
			return errors.New("the upstream's response head is larger than 16 KiB")
		}
		if _, err := uc.br.Peek(len(buf) + 1); err != nil {
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

// relay writes the response to the client.
func (fc *fastConn) relay(uc *upstreamConn, st *reqState, v *reqView) outcome {
	for {
		buf, _ := uc.br.Peek(uc.headLen)
		if err := h1.ParseResponse(buf, &fc.resp); err != nil {
			uc.close()
			return fc.fail(st, v, errors.New("the upstream sent a malformed response head"), closeConn)
		}
		if s := fc.resp.Status; s >= 100 && s < 200 && s != 101 {
			// Informational (103 Early Hints): pass it on, read on.
			if _, err := fc.c.Write(buf); err != nil {
				uc.close()
				return fc.abort(st, v, "DC")
			}
			uc.br.Discard(uc.headLen)
			if err := fc.readResponseHead(uc, st.route.timeout); err != nil {
				uc.close()
				return fc.fail(st, v, err, closeConn)
			}
			continue
		}
		break
	}
	resp := &fc.resp
	if resp.Status == 101 {
		uc.close()
		return fc.fail(st, v, errors.New("the upstream switched protocols unasked"), closeConn)
	}
	kind, length := bodyUntilClose, int64(-1)
	upstreamClose := resp.Minor == 0
	var connTokens [4]string
	nTokens := 0
	w := append(fc.out[:0], "HTTP/1.1 "...)
	w = strconv.AppendInt(w, int64(resp.Status), 10)
	w = append(w, ' ')
	w = append(w, resp.Reason...)
	w = append(w, "\r\n"...)
	for _, h := range resp.Headers {
		switch {
		case h1.EqualFold(h.Name, "Content-Length"):
			n, ok := h1.ParseLength(h.Value)
			if !ok || length >= 0 && n != length {
				uc.close()
				return fc.fail(st, v, errors.New("the upstream sent an invalid Content-Length"), closeConn)
			}
			length = n
		case h1.EqualFold(h.Name, "Transfer-Encoding"):
			if !h1.EqualFold(h.Value, "chunked") {
				uc.close()
				return fc.fail(st, v, errors.New("the upstream sent a Transfer-Encoding other than chunked"), closeConn)
			}
			kind = bodyChunked
			continue
		case h1.EqualFold(h.Name, "Connection"):
			for tok := range strings.SplitSeq(str(h.Value), ",") {
				tok = strings.TrimSpace(tok)
				if strings.EqualFold(tok, "close") {
					upstreamClose = true
				} else if nTokens < len(connTokens) {
					connTokens[nTokens] = tok
					nTokens++
				}
			}
			continue
		case h1.EqualFold(h.Name, "Keep-Alive"), h1.EqualFold(h.Name, "Proxy-Connection"), h1.EqualFold(h.Name, "Te"),
			h1.EqualFold(h.Name, "Upgrade"), h1.EqualFold(h.Name, "Proxy-Authenticate"):
			continue
		case h1.EqualFold(h.Name, "Grpc-Status"):
			v.grpcStatus = string(h.Value)
		}
		skip := false
		for _, t := range connTokens[:nTokens] {
			skip = skip || h1.EqualFold(h.Name, t)
		}
		if !skip {
			w = appendHeader(w, h.Name, h.Value)
		}
	}
	switch {
	case resp.Status == 204 || resp.Status == 304 || v.method == "HEAD":
		kind = bodyNone
	case kind == bodyChunked:
		w = append(w, "Transfer-Encoding: chunked\r\n"...)
	case length >= 0:
		kind = bodyLength
	}
	out := keepAlive
	if kind == bodyUntilClose {
		// Only the end of the connection ends the body.
		w = append(w, "Connection: close\r\n"...)
		out = closeConn
	}
	w = append(w, "\r\n"...)
	uc.br.Discard(uc.headLen)
	v.status = resp.Status

	var err error
	var sent int64
	var upErr bool
	switch kind {
	case bodyNone:
		_, err = fc.c.Write(w)
	case bodyLength:
		if length <= inlineBody && int64(uc.br.Buffered()) >= length {
			body, _ := uc.br.Peek(int(length))
			w = append(w, body...)
			uc.br.Discard(int(length))
			_, err = fc.c.Write(w)
			sent = length
		} else if _, err = fc.c.Write(w); err == nil {
			uc.rd.clear(uc.c)
			sent, err = h1.CopyN(fc.c, uc.br, length, nil)
			upErr = err != nil && sent < length && !isWriteErr(err)
		}
	case bodyChunked:
		if fc.bw == nil {
			fc.bw = bufio.NewWriterSize(fc.c, 8<<10)
		}
		fc.bw.Write(w)
		uc.rd.clear(uc.c)
		sent, err = h1.CopyChunked(fc.bw, uc.br, fc.bw.Flush)
		upErr = err != nil && !isWriteErr(err)
		if err == nil {
			err = fc.bw.Flush()
		} else {
			fc.bw.Reset(fc.c)
		}
	case bodyUntilClose:
		if _, err = fc.c.Write(w); err == nil {
			uc.rd.clear(uc.c)
			sent, err = h1.CopyN(fc.c, uc.br, -1, nil)
			upErr = err != nil && !isWriteErr(err)
		}
		upstreamClose = true
	}
	fc.out = w[:0]
	v.respBytes = sent
	if err != nil {
		uc.close()
		if upErr {
			return fc.abort(st, v, "UR")
		}
		return fc.abort(st, v, "DC")
	}
	if upstreamClose {
		uc.close()
	} else {
		st.endpoint.pool.put(uc)
	}
	return out
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
	body := "tracehop: " + reason + " (cluster " + st.clusterName() + ")\n"
	w := append(fc.out[:0], "HTTP/1.1 "...)
	w = strconv.AppendInt(w, int64(code), 10)
	w = append(w, ' ')
	w = append(w, http.StatusText(code)...)
	w = append(w, "\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nContent-Length: "...)
	w = strconv.AppendInt(w, int64(len(body)), 10)
	if out == closeConn {
		w = append(w, "\r\nConnection: close"...)
	}
	w = append(w, "\r\n\r\n"...)
	w = append(w, body...)
	fc.out = w[:0]
	v.status, v.respBytes = code, int64(len(body))
	if _, err := fc.c.Write(w); err != nil {
		return closeConn
	}
	return out
}

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

// upstreamConn is a kept-alive HTTP/1.1 connection to an endpoint.
type upstreamConn struct {
	c        net.Conn
	br       *bufio.Reader
	wb       []byte
	pool     *connPool
	reused   bool // it served a request before
	answered bool // the upstream sent bytes for this request
	headLen  int
	rd       readDeadline
	// idleSince is when it last went back to the pool.
	idleSince time.Time
}

func (uc *upstreamConn) close() { uc.c.Close() }

// connPool keeps an endpoint's idle connections, most recent first.
type connPool struct {
	addr    string
	mu      sync.Mutex
	idle    []*upstreamConn // oldest first
	maxIdle int
	// Connections idle longer than idleTimeout are closed, as net/http's
	// Transport does for the other path: an upstream that scaled down, or
	// traffic that stopped, leaves no sockets open for good. The reaper
	// timer runs only while there are idle connections.
	idleTimeout time.Duration
	reaper      *time.Timer
	closed      bool
}

// upstreamIdleTimeout matches the net/http path's IdleConnTimeout.
const upstreamIdleTimeout = 90 * time.Second

func (p *connPool) get(d *net.Dialer) (*upstreamConn, error) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		uc := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		uc.reused, uc.answered = true, false
		return uc, nil
	}
	p.mu.Unlock()
	return p.dial(d)
}

// dial opens a new connection, bypassing the idle ones.
func (p *connPool) dial(d *net.Dialer) (*upstreamConn, error) {
	c, err := d.Dial("tcp", p.addr)
	if err != nil {
		return nil, err
	}
	return &upstreamConn{c: c, br: bufio.NewReaderSize(c, connBufSize), pool: p}, nil
}

func (p *connPool) put(uc *upstreamConn) {
	if uc.br.Buffered() > 0 {
		uc.close() // the upstream sent more than the response
		return
	}
	p.mu.Lock()
	if len(p.idle) < p.maxIdle && !p.closed {
		uc.idleSince = time.Now()
		p.idle = append(p.idle, uc)
		uc = nil
		if p.idleTimeout > 0 && p.reaper == nil {
			p.reaper = time.AfterFunc(p.idleTimeout, p.reap)
		}
	}
	p.mu.Unlock()
	if uc != nil {
		uc.close()
	}
}

// reap closes the connections idle for idleTimeout, and comes back when the
// oldest left will be.
func (p *connPool) reap() {
	p.mu.Lock()
	if p.reaper == nil { // closeIdle stopped it as it fired
		p.mu.Unlock()
		return
	}
	now := time.Now()
	stale := p.takeIdleUntil(now.Add(-p.idleTimeout))
	if len(p.idle) > 0 {
		p.reaper.Reset(p.idleTimeout - now.Sub(p.idle[0].idleSince))
	} else {
		p.reaper = nil
	}
	p.mu.Unlock()
	for _, uc := range stale {
		uc.close()
	}
}

// dropIdleSince closes the idle connections that have been idle since t or
// longer.
func (p *connPool) dropIdleSince(t time.Time) {
	p.mu.Lock()
	stale := p.takeIdleUntil(t)
	p.mu.Unlock()
	for _, uc := range stale {
		uc.close()
	}
}

// takeIdleUntil removes from the pool the connections idle since t or
// earlier (the oldest, at the front) and returns them. p.mu is held.
func (p *connPool) takeIdleUntil(t time.Time) []*upstreamConn {
	n := 0
	for n < len(p.idle) && !p.idle[n].idleSince.After(t) {
		n++
	}
	stale := slices.Clone(p.idle[:n])
	p.idle = slices.Delete(p.idle, 0, n)
	return stale
}

// closeIdle closes every idle connection, for good: connections handed
// back later are closed too.
func (p *connPool) closeIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	if p.reaper != nil {
		p.reaper.Stop()
		p.reaper = nil
	}
	p.mu.Unlock()
	for _, uc := range idle {
		uc.close()
	}
}

// readDeadline moves a connection's read deadline only when it has to. A
// deadline already within [want, want+slack] is kept, so that a busy
// keep-alive connection re-arms its runtime timer about once per slack
// rather than for every request: a timeout then fires up to slack late,
// never early. Whoever else sets the deadline (drain) leaves this stale,
// which errs toward an earlier wake-up only.
type readDeadline struct{ at time.Time }

func (d *readDeadline) set(c net.Conn, timeout time.Duration) {
	slack := min(timeout/32, 250*time.Millisecond)
	want := time.Now().Add(timeout)
	if !d.at.Before(want) && d.at.Sub(want) <= slack {
		return
	}
	d.at = want.Add(slack)
	c.SetReadDeadline(d.at)
}

func (d *readDeadline) clear(c net.Conn) {
	if !d.at.IsZero() {
		d.at = time.Time{}
		c.SetReadDeadline(time.Time{})
	}
}
