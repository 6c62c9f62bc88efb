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
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tracehop/tracehop/core/propagation"
	"github.com/tracehop/tracehop/proxy/internal/deadline"
	"github.com/tracehop/tracehop/proxy/internal/h1"
	"github.com/tracehop/tracehop/proxy/internal/sock"
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
	src connSource
	// yield says whether waitIdle lets the other ready goroutines run
	// first: with one processor (GOMAXPROCS 1) when the connection came.
	yield   bool
	raw     syscall.RawConn
	sock    syscall.RawConn       // the TCP socket, under TLS too: pending peeks it
	tryFill func(fd uintptr) bool // fc.fill, made once
	fillErr error
	// toClient is what writeStep has yet to write, and writeErr how it
	// failed: write's state while the poller waits for room.
	toClient []byte
	writeErr error
	tryWrite func(fd uintptr) bool // fc.writeStep, made once
	// stash is the start of a head that came in parts, set aside while
	// the connection waits for the rest without a buffer.
	stash    []byte
	bw       *bufio.Writer // for chunked responses, made on first use
	peer     netip.AddrPort
	peerAddr string // once per connection, for the spans
	// reqID holds the request id of the request in hand (st.requestID
	// points into it, as the request's other strings point into its head):
	// a new string per request was the untraced fast path's one
	// allocation. idBuf holds a trusted client's id, longer than a UUID.
	reqID   [36]byte
	idBuf   []byte
	head    []byte // the request head, copied out of br
	out     []byte // the head (and body) written to the client
	req     h1.Request
	resp    h1.Response
	st      reqState
	mut     *propagation.Mutations // made for the first traced request: 3 KiB an idle connection need not hold
	carrier h1Carrier
	respCap respCapture
	bagBuf  []byte // baggage restored from an ingress request (link)
	spanBuf spanBuf
	rd      deadline.Read
	tls     *connTLS // nil on a plaintext listener
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
	// make room (connEvicted), so that no request is cut. On a plaintext
	// connection each read attempt makes it busy first (fill).
	state atomic.Int32
	// waiting: waitIdle's wait is under way (fill minds the state).
	waiting bool
	// idleSince orders idle connections for eviction, oldest first: those
	// that never sent a request before those that did.
	idleSince atomic.Int64
}

// What fastConn.state says.
const (
	connBusy int32 = iota
	connIdle
	connEvicted
	// connEvicting: closed to make room, its deadline not yet set (see
	// listener.evictIdle).
	connEvicting
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
	n, err := sock.Read(s.fd, p)
	switch {
	case err == syscall.EAGAIN:
		return 0, errWouldBlock
	case err != nil:
		return 0, os.NewSyscallError("read", err)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
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
			fc.tryFill, fc.tryWrite = fc.fill, fc.writeStep
			fc.yield = runtime.GOMAXPROCS(0) == 1
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

// write writes w whole to the client. On a plaintext connection each
// write is the system call alone (package sock), the poller waiting only
// while the socket's buffer is full; on TLS, the TLS layer writes.
func (fc *fastConn) write(w []byte) error {
	if fc.raw == nil {
		_, err := fc.c.Write(w)
		return err
	}
	fc.toClient, fc.writeErr = w, nil
	err := fc.raw.Write(fc.tryWrite)
	fc.toClient = nil
	if err != nil {
		return err
	}
	return fc.writeErr
}

// writeStep is write's try, each time the socket may take bytes: false
// to wait for room.
func (fc *fastConn) writeStep(fd uintptr) bool {
	for len(fc.toClient) > 0 {
		n, err := sock.Write(int(fd), fc.toClient)
		switch {
		case err == syscall.EAGAIN:
			return false
		case err != nil:
			fc.writeErr = &net.OpError{Op: "write", Net: "tcp", Source: fc.c.LocalAddr(), Addr: fc.c.RemoteAddr(), Err: os.NewSyscallError("write", err)}
			return true
		}
		fc.toClient = fc.toClient[n:]
	}
	return true
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
	if fc.waiting { // (never with a stash: a head in parts is busy)
		// Busy before the read, not after it: between a read that took a
		// request's first bytes and the change of state, an eviction
		// would have found the connection idle and its socket empty, and
		// closed it with the request half read (TestConnectionLimit, under
		// load). An evicted connection reads nothing more.
		if !fc.state.CompareAndSwap(connIdle, connBusy) {
			fc.fillErr = errEvicted
			return true
		}
	}
	if len(fc.stash) > 0 {
		return fc.fillStash(int(fd))
	}
	fc.takeReader()
	fc.src.fd, fc.src.raw = int(fd), true
	_, err := fc.br.Peek(1)
	fc.src.raw = false
	if err == errWouldBlock {
		fc.putReader()
		if fc.waiting {
			fc.state.Store(connIdle)
			// Drain sets closing, then wakes the connections it finds
			// idle: one busy for this read was not woken, and sees it here.
			if fc.closing.Load() {
				fc.fillErr = errEvicted
				return true
			}
		}
		return false
	}
	fc.fillErr = err
	return true
}

// errEvicted ends the wait of a connection closed to make room, or woken
// by drain: it serves nothing more.
var errEvicted = errors.New("connection closed while idle")

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
// waits. wait is the read timeout readHead set for the wait (0: none).
func (fc *fastConn) waitIdle(wait time.Duration) bool {
	since := fc.life.born.UnixNano() - 1<<62 // never used: first to go
	if !fc.st.start.IsZero() {
		since = fc.st.start.UnixNano()
	}
	fc.idleSince.Store(since)
	// Idle again after a request; a new connection is idle from its
	// accept on (listener.newConn), and may have been evicted before its
	// goroutine first ran: then it ends here.
	if !fc.state.CompareAndSwap(connBusy, connIdle) && fc.state.Load() != connIdle {
		return false
	}
	if fc.closing.Load() {
		return false
	}
	var err error
	if fc.raw != nil {
		fc.putReader()
		// With one processor, the other ready connections run first, as
		// an event loop serves every ready socket before it polls again.
		// A keep-alive client sends its next request only once it has
		// read this response, so a read made at once failed (EAGAIN) two
		// times in three; made after the others, it more often finds the
		// request, and the upstream and the clients get this process's
		// writes in bursts. Measured in README's Performance ("Since
		// 7cbc40a"): about 0.2-0.9 us less CPU per untraced request, and
		// less in the upstream behind it. With two processors it cost
		// 0.59 us more: Gosched puts the goroutine on the global queue,
		// where the other processor takes it up away from its caches.
		if fc.yield {
			runtime.Gosched()
		}
		fc.waiting = true
		err = fc.awaitBytes()
		fc.waiting = false
	} else {
		_, err = fc.br.Peek(1)
		if f := afterIdleRead.Load(); f != nil {
			(*f)()
		}
	}
	// fill has made it busy if it read; otherwise (a deadline, an error)
	// it is still idle, unless it was evicted.
	if !fc.state.CompareAndSwap(connIdle, connBusy) && fc.state.Load() != connBusy {
		// Evicted. On TLS the read happens inside the TLS layer, so the
		// connection cannot be made busy before it, as fill does on
		// plaintext: an eviction may land after the read took a request's
		// first bytes out of the socket (pending saw it empty). Cutting
		// that request would reset a client that did nothing wrong; it is
		// served instead, as the connection's last (its place in the
		// counts is already given up: the limit is passed by one request
		// for a moment). The eviction's deadline goes.
		if err != nil || fc.raw != nil || fc.br.Buffered() == 0 {
			return false
		}
		// The evictor's deadline (now) first, then the wait's again: the
		// rest of the head reads on it, as any request's does.
		for fc.state.Load() == connEvicting {
			runtime.Gosched()
		}
		fc.state.Store(connBusy) // its request is its last: connSlot.given
		fc.rd.Forget()
		if wait > 0 {
			fc.rd.Set(fc.c, wait)
		} else {
			fc.rd.Clear(fc.c)
		}
		return true
	}
	return err == nil
}

// afterIdleRead, when set (tests only), runs right after a TLS
// connection's idle wait has read, before the connection is marked busy:
// where an eviction can land.
var afterIdleRead atomic.Pointer[func()]

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

// requestLineLike says whether line ends as a request line does, in an
// HTTP version (net/http refuses anything else with 400, after its wait).
func requestLineLike(line []byte) bool {
	n := len(line)
	return n >= len("A / HTTP/1.1") && string(line[n-8:n-3]) == "HTTP/" && line[n-2] == '.'
}
