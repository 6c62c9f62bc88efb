package proxy_test

// The HTTP/1.1 conformance suite: hostile requests and hostile upstream
// responses, written from RFC 9110/9112 and the public research on parser
// discrepancies (the HTTP Garden's findings, smuggler's Transfer-Encoding
// mutations, PortSwigger's desync papers), each run through both HTTP
// paths of a listener: the fast path and net/http. Each says what the
// client must get and what a conformant upstream may see. The upstream
// parses what reaches it with net/http's own reader: a request it frames
// differently from tracehop, a request it never should have seen, or a
// client answered with another's response fails the case.

import (
	"bufio"
	"bytes"
	"cmp"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/proxy"
)

// seenRequest is a request as a conformant upstream framed it.
type seenRequest struct {
	method, target, host string
	header               http.Header
	body                 string
	bodyErr              error
}

// scriptedUpstream parses requests with net/http's reader and answers
// each with the raw bytes its script gives.
type scriptedUpstream struct {
	ln      net.Listener
	mu      sync.Mutex
	seen    []seenRequest
	desyncs []string // what the upstream could not parse as a request
	script  func(r *http.Request) (answer string, late string)
	// lateDelay is how long after an answer its late bytes come (100 ms
	// when 0).
	lateDelay time.Duration
}

func newScriptedUpstream(t testing.TB) *scriptedUpstream {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &scriptedUpstream{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go u.serve(c)
		}
	}()
	return u
}

func (u *scriptedUpstream) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		r, err := http.ReadRequest(br)
		if err != nil {
			if err != io.EOF && !isClosed(err) {
				u.mu.Lock()
				u.desyncs = append(u.desyncs, err.Error())
				u.mu.Unlock()
			}
			return
		}
		body, bodyErr := io.ReadAll(r.Body)
		u.mu.Lock()
		u.seen = append(u.seen, seenRequest{r.Method, r.RequestURI, r.Host, r.Header, string(body), bodyErr})
		script, lateDelay := u.script, cmp.Or(u.lateDelay, 100*time.Millisecond)
		u.mu.Unlock()
		if bodyErr != nil {
			return
		}
		answer, late := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", ""
		if script != nil {
			if a, l := script(r); a != "" {
				answer, late = a, l
			}
		}
		if answer == hangUp {
			return
		}
		if _, err := io.WriteString(c, answer); err != nil {
			return
		}
		if late != "" {
			time.Sleep(lateDelay)
			io.WriteString(c, late)
		}
	}
}

// hangUp, as a script's answer, makes the upstream close the connection
// after reading the request, without a word: a crash mid-handler.
const hangUp = "hang up"

func isClosed(err error) bool {
	return strings.Contains(err.Error(), "use of closed") || strings.Contains(err.Error(), "connection reset")
}

// take returns and forgets what the upstream saw.
func (u *scriptedUpstream) take() ([]seenRequest, []string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	s, d := u.seen, u.desyncs
	u.seen, u.desyncs = nil, nil
	return s, d
}

func (u *scriptedUpstream) setScript(f func(r *http.Request) (string, string)) {
	u.mu.Lock()
	u.script = f
	u.mu.Unlock()
}

// answer is one response a client read, and whether its body arrived
// whole.
type answer struct {
	resp     *http.Response
	body     string
	complete bool
}

// exchange writes raw bytes to addr and reads responses back until it has
// want final ones, the connection ends, or wait passes; then it reports
// whether the connection closed within a moment. closeWrite half-closes
// after writing, as a client that has nothing more to say.
func exchange(t testing.TB, addr, raw string, closeWrite bool, want int, wait time.Duration) (answers []answer, closed bool) {
	t.Helper()
	answers, closed, _ = exchangeRaw(t, addr, raw, closeWrite, want, wait)
	return answers, closed
}

// exchangeRaw is exchange that also returns every byte the client read.
func exchangeRaw(t testing.TB, addr, raw string, closeWrite bool, want int, wait time.Duration) (answers []answer, closed bool, got string) {
	t.Helper()
	return exchangeAfter(t, addr, "", raw, closeWrite, want, wait)
}

// warmUp is a request the fast path answers by handing its connection to
// net/http for good (a Connection option): what follows it on the
// connection reaches net/http as real traffic does, past the fast path's
// own checks.
const warmUp = "GET /warm HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, x-handoff\r\n\r\n"

// exchangeAfter is exchangeRaw on a connection that first sent first (if
// any) and read its answer.
func exchangeAfter(t testing.TB, addr, first, raw string, closeWrite bool, want int, wait time.Duration) (answers []answer, closed bool, got string) {
	t.Helper()
	var seen strings.Builder
	defer func() { got = seen.String() }()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(wait))
	var br *bufio.Reader
	if first != "" {
		io.WriteString(c, first)
		br = bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("warm-up: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("warm-up: %d", resp.StatusCode)
		}
	}
	c.SetWriteDeadline(time.Now().Add(wait))
	io.WriteString(c, raw)
	if closeWrite {
		c.(*net.TCPConn).CloseWrite()
	}
	c.SetReadDeadline(time.Now().Add(wait))
	if br == nil {
		br = bufio.NewReader(io.TeeReader(c, &seen))
	} else {
		// What the warm-up's reader holds already, then the rest.
		held, _ := br.Peek(br.Buffered())
		br = bufio.NewReader(io.MultiReader(io.TeeReader(bytes.NewReader(held), &seen), io.TeeReader(c, &seen)))
	}
	method := strings.SplitN(raw, " ", 2)[0]
	finals := 0
	for finals < want {
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			return answers, !isTimeout(err), ""
		}
		b, err := io.ReadAll(resp.Body)
		answers = append(answers, answer{resp, string(b), err == nil})
		if err != nil {
			return answers, !isTimeout(err), ""
		}
		if resp.StatusCode >= 200 {
			finals++
		}
	}
	// tracehop shuts its side at once when it closes: a moment tells.
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	_, err = br.ReadByte()
	return answers, err != nil && !isTimeout(err), ""
}

// conformancePath is one HTTP path of a tracehop in front of its own
// scripted upstream.
type conformancePath struct {
	addr string
	up   *scriptedUpstream
	// first is sent before each case on its connection: the handed-off
	// path's warm-up.
	first string
}

// conformancePathNames are the paths every case runs through: the fast
// path; net/http as the fast path hands it each request (after its first
// checks); and net/http on a connection handed to it by an earlier
// request, which no check of the fast path's sees.
var conformancePathNames = []string{"fast", "net/http", "handed-off"}

// conformancePaths starts one tracehop per HTTP path ("fast" and
// "net/http"), each in front of its own scripted upstream, with the given
// body_read_timeout, traced or not.
func conformancePaths(tb testing.TB, bodyTimeout string, traced bool) map[string]conformancePath {
	paths := map[string]conformancePath{}
	for _, name := range []string{"fast", "net/http"} {
		up := newScriptedUpstream(tb)
		cfg := fmt.Sprintf(`node: {id: n, service: s}
admin: {address: "127.0.0.1:0"}
listeners:
  - {name: l, address: "127.0.0.1:0", direction: ingress, read_header_timeout: 5s, body_read_timeout: %s,
     routes: [{match: {prefix: /}, cluster: up, timeout: 2s}]}
clusters:
  - {name: up, endpoints: [%s]}
`, bodyTimeout, up.ln.Addr())
		if traced {
			cfg += tracingBlock
		}
		var setup func(*proxy.Server)
		if name == "net/http" {
			setup = proxy.SlowPathOnly
		}
		p := startProxyWith(tb, cfg, core.Capabilities{Propagation: []string{"b3"}}, setup)
		paths[name] = conformancePath{addr: p.addr["l"], up: up}
	}
	paths["handed-off"] = conformancePath{addr: paths["fast"].addr, up: paths["fast"].up, first: warmUp}
	return paths
}

// take returns and forgets what the path's upstream saw, without the
// warm-up.
func (p conformancePath) settle() ([]seenRequest, []string) {
	seen, desyncs := settle(p.up)
	var out []seenRequest
	for _, r := range seen {
		if r.target != "/warm" {
			out = append(out, r)
		}
	}
	return out, desyncs
}

// requestCase is a hostile (or plain) request and what must come of it.
type requestCase struct {
	name string
	raw  string
	// status is the first answer the client must get.
	status int
	// more: the client may get more answers (pipelined requests).
	answers int
	// closes: tracehop must close the connection after its answer(s).
	closes bool
	// then is the status of the second answer, when checked.
	then int
	// handedOff is the status on a handed-off connection where net/http
	// cannot do what the fast path does (0: status), with the reason in
	// the case's comment.
	handedOff int
	// closeWrite: the client half-closes after its bytes (it has no more
	// to send); otherwise it waits, as clients do.
	closeWrite bool
	// upstream checks what the upstream framed; nil: it must see nothing.
	upstream func(seen []seenRequest) error
}

func forwarded(n int, check func(r seenRequest) error) func([]seenRequest) error {
	return func(seen []seenRequest) error {
		if len(seen) != n {
			return fmt.Errorf("the upstream saw %d requests, want %d: %+v", len(seen), n, seen)
		}
		for _, r := range seen {
			if strings.Contains(r.target, "smuggled") {
				return fmt.Errorf("a smuggled request reached the upstream: %s %s", r.method, r.target)
			}
			if check != nil {
				if err := check(r); err != nil {
					return err
				}
			}
		}
		return nil
	}
}

// seenBetween: the upstream saw from least to most requests, none
// smuggled, each passing check: for a case whose paths may differ in
// whether it is forwarded.
func seenBetween(seen []seenRequest, least, most int, check func(seenRequest) error) error {
	if len(seen) < least || len(seen) > most {
		return fmt.Errorf("the upstream saw %d requests, want %d to %d: %+v", len(seen), least, most, seen)
	}
	return forwarded(len(seen), check)(seen)
}

func body(want string) func(seenRequest) error {
	return func(r seenRequest) error {
		if r.body != want || r.bodyErr != nil {
			return fmt.Errorf("upstream body %q (%v), want %q", r.body, r.bodyErr, want)
		}
		if want != "" && r.header.Get("Content-Length") != fmt.Sprint(len(want)) && r.header.Get("Content-Length") != "" {
			return fmt.Errorf("upstream Content-Length %q for a %d-byte body", r.header.Get("Content-Length"), len(want))
		}
		return nil
	}
}

func noHeader(names ...string) func(seenRequest) error {
	return func(r seenRequest) error {
		for _, n := range names {
			if _, ok := r.header[n]; ok {
				return fmt.Errorf("the upstream got %s: %q", n, r.header[n])
			}
		}
		return nil
	}
}

const smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"

var requestCases = []requestCase{
	{name: "plain GET", raw: "GET / HTTP/1.1\r\nHost: x\r\n\r\n", status: 200, upstream: forwarded(1, body(""))},
	{name: "pipelined GETs", raw: "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n", status: 200, answers: 2, upstream: forwarded(2, nil)},
	{name: "POST with its body", raw: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", status: 200, upstream: forwarded(1, body("hello"))},
	// Content-Length: RFC 9110 §8.6, 1*DIGIT, the parsed value forwarded.
	{name: "Content-Length with leading zeros", raw: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0005\r\n\r\nhello", status: 200,
		upstream: forwarded(1, func(r seenRequest) error {
			if cl := r.header.Get("Content-Length"); cl != "5" {
				return fmt.Errorf("upstream Content-Length %q, want 5 written canonically", cl)
			}
			return body("hello")(r)
		})},
	{name: "Content-Length 010 is ten", raw: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 010\r\n\r\n0123456789", status: 200, upstream: forwarded(1, body("0123456789"))},
	{name: "two different Content-Lengths", raw: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!" + smuggled, status: 400, closes: true},
	{name: "Content-Length with a sign", raw: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello", status: 400, closes: true},
	{name: "Content-Length in hex", raw: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\nhello", status: 400, closes: true},
	{name: "Content-Length list", raw: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\nhello!", status: 400, closes: true},
	{name: "Content-Length with inner space", raw: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5 5\r\n\r\nhello", status: 400, closes: true},
	// Transfer-Encoding: RFC 9112 §6.1-6.3 and smuggler's mutations.
	{name: "CL.TE", raw: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 35\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, status: 200, closes: true, upstream: forwarded(1, body(""))},
	{name: "TE.CL", raw: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\n" + smuggled + strings.Repeat("x", 92-len(smuggled)) + "\r\n0\r\n\r\n", status: 200, closes: true,
		upstream: forwarded(1, body(smuggled+strings.Repeat("x", 92-len(smuggled))))},
	{name: "Transfer-Encoding xchunked", raw: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\nContent-Length: 5\r\n\r\nhello", status: 501, closes: true},
	{name: "Transfer-Encoding chunked twice", raw: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", status: 501, closes: true},
	{name: "Transfer-Encoding identity", raw: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello", status: 501, closes: true},
	{name: "Transfer-Encoding with space before the colon", raw: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\nhello", status: 400, closes: true},
	{name: "Transfer-Encoding folded", raw: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 5\r\n\r\nhello", status: 408, closes: true, upstream: anyUpstream},
	// net/http deletes Transfer-Encoding from an HTTP/1.0 head unseen and
	// frames by Content-Length: on a handed-off connection it is forwarded
	// framed so, and the connection closes after it (as after every
	// HTTP/1.0 request with a body there), so nothing follows it in.
	{name: "Transfer-Encoding in HTTP/1.0", raw: "POST / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello" + smuggled, status: 400, closes: true,
		handedOff: 200, upstream: func(seen []seenRequest) error { return seenBetween(seen, 0, 1, body("hello")) }},
	{name: "Transfer-Encoding in HTTP/1.0, bare LF", raw: "POST / HTTP/1.0\nHost: x\nConnection: keep-alive\nTransfer-Encoding: chunked\nContent-Length: 5\n\nhello" + smuggled, status: 400, closes: true,
		handedOff: 200, upstream: func(seen []seenRequest) error { return seenBetween(seen, 0, 1, body("hello")) }},
	{name: "Transfer-Encoding in HTTP/1.0, folded field", raw: "POST / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nX-A: a\r\n b\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello" + smuggled, status: 400, closes: true,
		handedOff: 200, upstream: func(seen []seenRequest) error { return seenBetween(seen, 0, 1, body("hello")) }},
	{name: "HTTP/1.0 body, keep-alive", raw: "POST / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\nhello" + smuggled, status: 200, closes: true, upstream: forwarded(1, body("hello"))},
	{name: "chunked body", raw: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", status: 200, closes: true, upstream: forwarded(1, body("hello"))},
	// Malformed chunked request bodies are the client's fault: 400.
	{name: "chunk size 0x5", raw: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", status: 400, closes: true, upstream: anyUpstream},
	{name: "chunk size +5", raw: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n", status: 400, closes: true, upstream: anyUpstream},
	{name: "chunk size overflow", raw: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\nhello\r\n0\r\n\r\n", status: 400, closes: true, upstream: anyUpstream},
	{name: "chunk without its CRLF", raw: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n", status: 400, closes: true, upstream: anyUpstream},
	{name: "chunk longer than its size", raw: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n", status: 400, closes: true, upstream: anyUpstream},
	{name: "chunk extension with a bare CR", raw: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;a\rb\r\nhello\r\n0\r\n\r\n", status: 400, closes: true, upstream: anyUpstream},
	{name: "body cut short by the client", raw: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello", closeWrite: true, status: 400, closes: true, upstream: anyUpstream},
	{name: "body stalled past body_read_timeout", raw: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello", status: 408, closes: true, upstream: anyUpstream},
	// Host: RFC 9112 §3.2, as net/http validates it.
	{name: "Host with a space", raw: "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", status: 400, closes: true},
	{name: "Host with a path", raw: "GET / HTTP/1.1\r\nHost: evil.test/x\r\n\r\n", status: 400, closes: true},
	{name: "Host list", raw: "GET / HTTP/1.1\r\nHost: a.test, b.test\r\n\r\n", status: 400, closes: true},
	{name: "Host with userinfo", raw: "GET / HTTP/1.1\r\nHost: user@evil.test\r\n\r\n", status: 400, closes: true},
	{name: "Host with markup", raw: "GET / HTTP/1.1\r\nHost: <script>\r\n\r\n", status: 400, closes: true},
	{name: "Host with high bytes", raw: "GET / HTTP/1.1\r\nHost: \xff\xfe.test\r\n\r\n", status: 400, closes: true},
	{name: "two Hosts", raw: "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", status: 400, closes: true},
	// uri-host [":" port] (RFC 9110 §7.2, RFC 3986 §3.2.2): one port at
	// most, digits only; net/http checks only the characters (issue 26).
	{name: "Host with two ports", raw: "GET / HTTP/1.1\r\nHost: a.test:80:80\r\n\r\n", status: 400, closes: true},
	{name: "Host with a port that is no number", raw: "GET / HTTP/1.1\r\nHost: a.test:http\r\n\r\n", status: 400, closes: true},
	{name: "Host IPv6 literal with two ports", raw: "GET / HTTP/1.1\r\nHost: [::1]:80:80\r\n\r\n", status: 400, closes: true},
	{name: "Host IPv6 without brackets", raw: "GET / HTTP/1.1\r\nHost: ::1\r\n\r\n", status: 400, closes: true},
	{name: "Host with its port", raw: "GET / HTTP/1.1\r\nHost: a.test:8080\r\n\r\n", status: 200, upstream: forwarded(1, nil)},
	{name: "Host IPv6 literal with its port", raw: "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", status: 200, upstream: forwarded(1, nil)},
	{name: "no Host", raw: "GET / HTTP/1.1\r\n\r\n", status: 400, closes: true},
	// Line ends and field syntax: RFC 9112 §2.2, §5.
	{name: "bare-LF head answered at once", raw: "GET / HTTP/1.1\nHost: x\n\n", status: 200, upstream: forwarded(1, nil)},
	{name: "bare CR in a field value", raw: "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", status: 400, closes: true},
	{name: "NUL in a field value", raw: "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", status: 400, closes: true},
	{name: "space in a field name", raw: "GET / HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n", status: 400, closes: true},
	{name: "field without a colon", raw: "GET / HTTP/1.1\r\nHost: x\r\nX-A\r\n\r\n", status: 400, closes: true},
	{name: "method that is not a token", raw: "G@T / HTTP/1.1\r\nHost: x\r\n\r\n", status: 400, closes: true},
	{name: "HTTP/1.2 is read as 1.x", raw: "GET / HTTP/1.2\r\nHost: x\r\n\r\n", status: 200, upstream: forwarded(1, nil)},
	{name: "HTTP/2.0 in a request line", raw: "GET / HTTP/2.0\r\nHost: x\r\n\r\n", status: 505, closes: true},
	// Look-alikes of guarded headers (CGI maps '_' and '-' alike).
	{name: "underscore look-alikes of framing headers", raw: "POST / HTTP/1.1\r\nHost: x\r\nContent_Length: 99\r\nTransfer_Encoding: chunked\r\nX_Forwarded_For: 10.0.0.1\r\nX_Custom: kept\r\nContent-Length: 5\r\n\r\nhello", status: 200,
		upstream: forwarded(1, func(r seenRequest) error {
			if err := noHeader("Content_length", "Transfer_encoding", "X_forwarded_for", "Content_Length", "Transfer_Encoding", "X_Forwarded_For")(r); err != nil {
				return err
			}
			if r.header.Get("X_custom")+r.header.Get("X_Custom") == "" {
				return fmt.Errorf("the allowed header X_Custom was dropped: %v", r.header)
			}
			return body("hello")(r)
		})},
	// Upgrades: h2c must not reach the upstream (h2c smuggling).
	{name: "Upgrade h2c", raw: "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n", status: 200,
		upstream: forwarded(1, noHeader("Upgrade", "Http2-Settings"))},
	{name: "absolute-form target", raw: "GET http://x/abs HTTP/1.1\r\nHost: x\r\n\r\n", status: 200, upstream: forwarded(1, nil)},
	// The request-target: RFC 9112 §3.2, RFC 9110 §4.2.4 and §9.3.6.
	{name: "absolute-form with userinfo", raw: "GET http://user@evil.test/x HTTP/1.1\r\nHost: good\r\n\r\n", status: 400},
	{name: "absolute-form that is not http", raw: "GET ftp://evil/x HTTP/1.1\r\nHost: good\r\n\r\n", status: 400},
	{name: "fragment in the target", raw: "GET /a#frag HTTP/1.1\r\nHost: x\r\n\r\n", status: 400},
	{name: "CONNECT in origin-form", raw: "CONNECT /tun HTTP/1.1\r\nHost: x\r\n\r\n" + smuggled, status: 405, closes: true},
	{name: "CONNECT in authority-form", raw: "CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n" + smuggled, status: 405, closes: true},
	// Request lines that are not: answered at once, not after a wait for a
	// head or an HTTP/2 preface.
	{name: "HTTP/0.9 request", raw: "GET /\r\n\r\n", status: 400, closes: true},
	{name: "HTTP/0.9 request without a blank line", raw: "GET /\r\n", status: 400, closes: true},
	{name: "short garbage", raw: "HELLO\r\n\r\n", status: 400, closes: true},
	// RFC 9113 §3.4: the HTTP/2 preface only as a connection's first bytes.
	{name: "HTTP/2 preface after a request", raw: "GET / HTTP/1.1\r\nHost: x\r\n\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00", status: 200, answers: 2, closes: true,
		upstream: forwarded(1, nil), then: 400},
	{name: "huge header block", raw: "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 100<<10) + "\r\n\r\n", status: 431, closes: true},
}

// settle waits until the upstream has recorded what it is still parsing,
// then returns and forgets it.
func settle(u *scriptedUpstream) ([]seenRequest, []string) {
	time.Sleep(30 * time.Millisecond)
	return u.take()
}

// anyUpstream: the upstream may have seen the start of the request (a
// streamed body that then failed); it must not have seen a smuggled one.
func anyUpstream(seen []seenRequest) error {
	for _, r := range seen {
		if strings.Contains(r.target, "smuggled") {
			return fmt.Errorf("a smuggled request reached the upstream")
		}
	}
	return nil
}

// responseCase is a hostile (or plain) upstream answer to GET /r.
type responseCase struct {
	name   string
	answer string
	// status the client must get; 0: the response is cut off (no complete
	// answer).
	status int
	// check inspects what the client got.
	check func(resp *http.Response, body string) error
	// never are byte sequences that must not reach the client: framing
	// relayed verbatim, a header a lenient client would read.
	never []string
	// request is the client's request, when not GET /r in HTTP/1.1.
	request string
}

var responseCases = []responseCase{
	{name: "plain", answer: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", status: 200},
	{name: "CL and TE: TE wins, CL removed", answer: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", status: 200, never: []string{"Content-Length"},
		check: func(resp *http.Response, body string) error {
			if body != "hello" || resp.ContentLength != -1 || len(resp.TransferEncoding) == 0 {
				return fmt.Errorf("body %q, Content-Length %d, Transfer-Encoding %v", body, resp.ContentLength, resp.TransferEncoding)
			}
			return nil
		}},
	{name: "Content-Length with leading zeros", answer: "HTTP/1.1 200 OK\r\nContent-Length: 0005\r\n\r\nhello", status: 200,
		check: func(resp *http.Response, body string) error {
			if v := resp.Header.Get("Content-Length"); v != "5" || body != "hello" {
				return fmt.Errorf("Content-Length %q, body %q", v, body)
			}
			return nil
		}},
	{name: "204 with a Content-Length", answer: "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", status: 204, never: []string{"Content-Length"}},
	{name: "103 with a Content-Length", answer: "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\nContent-Length: 5\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", status: 200, never: []string{"Content-Length: 5"}},
	{name: "bare CR in the reason phrase", answer: "HTTP/1.1 200 OK\rX-Injected: yes\r\nContent-Length: 2\r\n\r\nok", status: 200, never: []string{"X-Injected"}},
	{name: "bare-LF response head", answer: "HTTP/1.1 200 OK\nContent-Length: 2\n\nok", status: 200},
	{name: "bare CR in a field value", answer: "HTTP/1.1 200 OK\r\nX-A: a\rX-Injected: yes\r\nContent-Length: 2\r\n\r\nok", status: 502},
	{name: "two different Content-Lengths", answer: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!", status: 502},
	{name: "Content-Length with a sign", answer: "HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok", status: 502},
	{name: "too many 1xx", answer: strings.Repeat("HTTP/1.1 103 Early Hints\r\n\r\n", 8) + "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", status: 502},
	// Invalid chunked framing: the response is cut off, never relayed.
	{name: "chunk without its CRLF", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n", never: []string{"helloXX"}},
	{name: "whitespace before the chunk size", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n0\r\n\r\n", never: []string{" 5\r\n"}},
	{name: "chunk size with 0x", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", never: []string{"0x5"}},
	{name: "bare CR in a chunk extension", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a\rX-Injected: yes\r\nhello\r\n0\r\n\r\n", never: []string{"X-Injected"}},
	{name: "trailer line that is not a field", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nnot a field\r\n\r\n", never: []string{"not a field"}},
	// RFC 9110 §7.6.1: the fields Connection names go, wherever they are.
	{name: "Connection option before its field", answer: "HTTP/1.1 200 OK\r\nX-Secret: s1\r\nX-Internal: i1\r\nConnection: X-Secret, X-Internal\r\nX-Secret: s2\r\nContent-Length: 2\r\n\r\nok", status: 200, never: []string{"X-Secret", "X-Internal"}},
	{name: "fifth Connection option", answer: "HTTP/1.1 200 OK\r\nConnection: a1, a2, a3, a4, X-Secret\r\nX-Secret: s2\r\nContent-Length: 2\r\n\r\nok", status: 200, never: []string{"X-Secret"}},
	// RFC 9110 §6.5.1: no trailer that frames, routes or authenticates.
	{name: "forbidden trailers", answer: "HTTP/1.1 200 OK\r\nTrailer: X-T, Set-Cookie\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-T: v\r\nSet-Cookie: s=1\r\nContent-Length: 50\r\nHost: evil\r\nAuthorization: x\r\n\r\n", status: 200,
		never: []string{"Set-Cookie:", "Content-Length: 50", "evil", "Authorization"},
		check: func(resp *http.Response, body string) error {
			if body != "ok" || resp.Trailer.Get("X-T") != "v" {
				return fmt.Errorf("body %q, trailer %v: the allowed trailer must pass", body, resp.Trailer)
			}
			return nil
		}},
	// RFC 9110 §8.3: no Content-Type is the sender's to leave out.
	{name: "no Content-Type is not invented", answer: "HTTP/1.1 200 OK\r\nX-Content-Type-Options: nosniff\r\nContent-Length: 31\r\n\r\n<html><script>1</script></html>", status: 200, never: []string{"\r\nContent-Type:"}},
	// RFC 9110 §15.2: no 1xx to an HTTP/1.0 client.
	{name: "1xx to an HTTP/1.0 client", request: "GET /r HTTP/1.0\r\nHost: x\r\n\r\n", answer: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", status: 200, never: []string{" 100 ", " 103 "}},
	{name: "bare CR in a trailer", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-A: a\rX-Injected: yes\r\n\r\n", never: []string{"X-Injected"}},
}

// TestHTTPConformance runs every case through both paths and reports the
// suite's row for the README's reliability table.
func TestHTTPConformance(t *testing.T) {
	paths := conformancePaths(t, "300ms", true)
	tried, refused, forwardedOK := 0, 0, 0
	for _, pathName := range conformancePathNames {
		p := paths[pathName]
		for _, c := range requestCases {
			t.Run("request/"+pathName+"/"+c.name, func(t *testing.T) {
				p.settle()
				tried++
				want := max(c.answers, 1)
				answers, closed, _ := exchangeAfter(t, p.addr, p.first, c.raw, c.closeWrite, want, 3*time.Second)
				status := c.status
				if pathName == "handed-off" && c.handedOff != 0 {
					status = c.handedOff
				}
				if len(answers) == 0 || answers[0].resp.StatusCode != status {
					t.Fatalf("answers %s, want %d", statuses(answers), status)
				}
				if len(answers) != want {
					t.Errorf("%d answers (%s), want %d", len(answers), statuses(answers), want)
				} else if c.then != 0 && answers[1].resp.StatusCode != c.then {
					t.Errorf("answers %s, want %d second", statuses(answers), c.then)
				}
				if c.closes && !closed {
					t.Errorf("the connection stayed open after %s", statuses(answers))
				}
				seen, desyncs := p.settle()
				if len(desyncs) > 0 {
					t.Errorf("the upstream could not frame what it got: %v", desyncs)
				}
				check := c.upstream
				if check == nil {
					check = forwarded(0, nil)
				}
				if err := check(seen); err != nil {
					t.Error(err)
				}
				if !t.Failed() {
					if c.status >= 400 {
						refused++
					} else {
						forwardedOK++
					}
				}
			})
		}
		for _, c := range responseCases {
			t.Run("response/"+pathName+"/"+c.name, func(t *testing.T) {
				tried++
				p.up.setScript(func(r *http.Request) (string, string) {
					if r.URL.Path == "/warm" {
						return "", ""
					}
					return c.answer, ""
				})
				defer p.up.setScript(nil)
				req := c.request
				if req == "" {
					req = "GET /r HTTP/1.1\r\nHost: x\r\n\r\n"
				}
				answers, _, got := exchangeAfter(t, p.addr, p.first, req, false, 1, 3*time.Second)
				for _, n := range c.never {
					if strings.Contains(got, n) {
						t.Errorf("the client got %q: %q", n, got)
					}
				}
				var final *http.Response
				var finalBody string
				complete := false
				for _, a := range answers {
					if a.resp.StatusCode >= 200 {
						final, finalBody, complete = a.resp, a.body, a.complete
						break
					}
				}
				switch {
				case c.status == 0 && final != nil && complete:
					t.Fatalf("relayed a whole response with invalid framing: %d %q", final.StatusCode, finalBody)
				case c.status != 0 && (final == nil || final.StatusCode != c.status || !complete):
					t.Fatalf("answers %s (complete %v), want %d", statuses(answers), complete, c.status)
				}
				if c.check != nil && final != nil {
					if err := c.check(final, finalBody); err != nil {
						t.Error(err)
					}
				}
				if !t.Failed() {
					if c.status == 200 || c.status == 204 {
						forwardedOK++
					} else {
						refused++
					}
				}
			})
		}
	}
	report(t, result{
		Fault:    "HTTP/1.1 conformance suite: hostile requests and upstream responses (RFC 9110/9112, HTTP Garden, smuggler, desync papers), through the fast path, net/http, and net/http on connections handed off by an earlier request",
		Measured: fmt.Sprintf("%d vectors tried; %d refused or cut off as they must be; %d forwarded canonically; 0 desyncs with the upstream", tried, refused, forwardedOK),
		Bound:    "every vector as the table says, on every path; the upstream frames every request as tracehop did",
	})
}

func statuses(answers []answer) string {
	var s []string
	for _, a := range answers {
		s = append(s, fmt.Sprint(a.resp.StatusCode))
	}
	return "[" + strings.Join(s, " ") + "]"
}

// An upstream that writes on a connection tracehop holds idle (a body
// after its answer to HEAD, bytes after a 204) must not have them read as
// the next client's response: each later answer would be one late.
func TestIdleUpstreamBytesReachNoClient(t *testing.T) {
	paths := conformancePaths(t, "300ms", true)
	for _, pathName := range []string{"fast", "net/http"} {
		p := paths[pathName]
		for _, c := range []struct{ name, method, answer, late string }{
			{"HEAD then a late response", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 18\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\npoisoned\n"},
			{"204 then bytes", "GET", "HTTP/1.1 204 No Content\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\npoisoned\n"},
			{"more body than Content-Length, late", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\npoisoned\n"},
		} {
			t.Run(pathName+"/"+c.name, func(t *testing.T) {
				p.up.setScript(func(r *http.Request) (string, string) {
					if r.URL.Path == "/resp" {
						return c.answer, c.late
					}
					return "HTTP/1.1 200 OK\r\nContent-Length: " + fmt.Sprint(len(r.URL.Path)) + "\r\n\r\n" + r.URL.Path, ""
				})
				defer p.up.setScript(nil)
				exchange(t, p.addr, c.method+" /resp HTTP/1.1\r\nHost: x\r\n\r\n", false, 1, 3*time.Second)
				time.Sleep(300 * time.Millisecond) // the late bytes arrive on the idle connection
				for _, path := range []string{"/victim", "/probe"} {
					answers, _ := exchange(t, p.addr, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n", false, 1, 3*time.Second)
					if len(answers) != 1 || answers[0].body != path {
						t.Fatalf("GET %s got %q, want its own answer", path, bodies(answers))
					}
				}
			})
		}
	}
}

// An upstream that wrongly writes a body after a bodiless answer does it
// at once: a request sent right after, pipelined behind it, must not be
// written on that connection and read those bytes as its answer.
func TestLateBytesAfterBodilessAnswers(t *testing.T) {
	paths := conformancePaths(t, "300ms", false)
	for _, pathName := range conformancePathNames {
		p := paths[pathName]
		for _, c := range []struct{ name, method, answer string }{
			{"HEAD", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 18\r\n\r\n"},
			{"204", "GET", "HTTP/1.1 204 No Content\r\n\r\n"},
			{"304", "GET", "HTTP/1.1 304 Not Modified\r\n\r\n"},
		} {
			t.Run(pathName+"/"+c.name, func(t *testing.T) {
				p.up.mu.Lock()
				p.up.lateDelay = 300 * time.Microsecond
				p.up.mu.Unlock()
				p.up.setScript(func(r *http.Request) (string, string) {
					if r.URL.Path == "/resp" {
						return c.answer, "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\npoisoned\n"
					}
					return "HTTP/1.1 200 OK\r\nContent-Length: " + fmt.Sprint(len(r.URL.Path)) + "\r\n\r\n" + r.URL.Path, ""
				})
				defer func() {
					p.up.setScript(nil)
					p.up.mu.Lock()
					p.up.lateDelay = 0
					p.up.mu.Unlock()
				}()
				wrong := 0
				for range 20 {
					if victim := afterBodiless(t, p, c.method+" /resp HTTP/1.1\r\nHost: x\r\n\r\nGET /victim HTTP/1.1\r\nHost: x\r\n\r\n", c.method); victim != "/victim" {
						wrong++
					}
				}
				if wrong > 0 {
					t.Errorf("%d of 20 requests sent right after a bodiless answer got another answer than theirs", wrong)
				}
			})
		}
	}
}

// afterBodiless sends raw (two pipelined requests, the first with method)
// on a new connection of p and returns the second answer's body.
func afterBodiless(t *testing.T, p conformancePath, raw, method string) string {
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	br := bufio.NewReader(c)
	for _, r := range []struct{ raw, method string }{{p.first, "GET"}, {raw, method}} {
		if r.raw == "" {
			continue
		}
		io.WriteString(c, r.raw)
		resp, err := http.ReadResponse(br, &http.Request{Method: r.method})
		if err != nil {
			return err.Error()
		}
		io.Copy(io.Discard, resp.Body)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return err.Error()
	}
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func bodies(answers []answer) []string {
	var b []string
	for _, a := range answers {
		b = append(b, a.body)
	}
	return b
}

// After an upstream closed its idle keep-alive connections, a request
// whose body comes apart from its head (Go's, Node's, Python's clients), or
// is larger than tracehop holds, still gets its answer.
func TestClosedKeepAliveCostsNoRequest(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, n)
	})
	for _, slow := range []bool{false, true} {
		var setup func(*proxy.Server)
		if slow {
			setup = proxy.SlowPathOnly
		}
		p := startProxyWith(t, oneRoute("ingress", "true", up.addr(), ""), core.Capabilities{Propagation: []string{"b3"}}, setup)
		for _, size := range []int{5, 200 << 10} {
			get := func() {
				if resp, _ := do(t, "GET", "http://"+p.addr["l"]+"/", nil); resp.StatusCode != 200 {
					t.Fatalf("warm-up: %d", resp.StatusCode)
				}
			}
			get()
			up.CloseClientConnections()
			time.Sleep(50 * time.Millisecond) // the FIN arrives
			c, err := net.Dial("tcp", p.addr["l"])
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", size)
			time.Sleep(50 * time.Millisecond)
			c.Write(bytes.Repeat([]byte("a"), size))
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			c.Close()
			if resp.StatusCode != 200 || string(b) != fmt.Sprint(size) {
				t.Errorf("slow path only %v, %d-byte body after the upstream closed its connections: %d %q", slow, size, resp.StatusCode, b)
			}
		}
	}
}

// A slow upload is the client's business while it keeps sending within
// body_read_timeout, even past the route timeout; an upstream that answers
// before it has read a large body has its answer relayed.
func TestSlowUploadsAndEarlyAnswers(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/early" {
			w.Header().Set("Connection", "close")
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			fmt.Fprint(w, "too large")
			return
		}
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, n)
	})
	cfg := fmt.Sprintf(`node: {id: n, service: s}
admin: {address: "127.0.0.1:0"}
listeners:
  - {name: l, address: "127.0.0.1:0", direction: ingress, body_read_timeout: 1s,
     routes: [{match: {prefix: /}, cluster: up, timeout: 300ms}]}
clusters:
  - {name: up, endpoints: [%s]}
`, up.addr()) + tracingBlock
	for _, slow := range []bool{false, true} {
		var setup func(*proxy.Server)
		if slow {
			setup = proxy.SlowPathOnly
		}
		p := startProxyWith(t, cfg, core.Capabilities{Propagation: []string{"b3"}}, setup)
		for _, size := range []int{10, 100 << 10} {
			c, err := net.Dial("tcp", p.addr["l"])
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(c, "POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", size)
			for i := range 5 { // 5 pieces, 150 ms apart: 600 ms, twice the route timeout
				time.Sleep(150 * time.Millisecond)
				c.Write(bytes.Repeat([]byte("a"), size/5+map[bool]int{true: size % 5}[i == 4]))
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			c.Close()
			if err != nil || resp.StatusCode != 200 {
				t.Errorf("slow path only %v, slow %d-byte upload: %v %v", slow, size, resp, err)
			}
		}
		// An answer before a 4 MiB body was read.
		c, err := net.Dial("tcp", p.addr["l"])
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "POST /early HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", 4<<20)
		go c.Write(bytes.Repeat([]byte("a"), 4<<20))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		if err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("slow path only %v, early 413: %v %v", slow, resp, err)
		}
	}
}

// RFC 9110 §9.2.2: a proxy does not send a request again by itself when it
// may have reached the upstream, unless it is safe to. An upstream that
// read a request on a kept-alive connection and closed it unanswered gets
// a POST once (the client gets 502) and a GET twice (once more on a new
// connection), on every path, as net/http's Transport decides.
func TestNoReplayOfUnsafeRequests(t *testing.T) {
	paths := conformancePaths(t, "300ms", false)
	for _, pathName := range conformancePathNames {
		p := paths[pathName]
		for _, c := range []struct {
			req   string
			times int
		}{
			{"POST /crash HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 1},
			{"PATCH /crash HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 1},
			{"DELETE /crash HTTP/1.1\r\nHost: x\r\n\r\n", 1},
			{"POST /crash HTTP/1.1\r\nHost: x\r\nIdempotency-Key: k1\r\nContent-Length: 5\r\n\r\nhello", 1}, // a body: ReverseProxy cannot replay it
			{"POST /crash HTTP/1.1\r\nHost: x\r\nIdempotency-Key: k1\r\nContent-Length: 0\r\n\r\n", 2},
			{"GET /crash HTTP/1.1\r\nHost: x\r\n\r\n", 2},
		} {
			t.Run(pathName+"/"+strings.Fields(c.req)[0]+map[bool]string{true: "+key"}[strings.Contains(c.req, "Idempotency")]+map[bool]string{true: "+body"}[strings.Contains(c.req, "hello")], func(t *testing.T) {
				p.up.setScript(func(r *http.Request) (string, string) {
					if r.URL.Path == "/crash" {
						return hangUp, ""
					}
					return "", ""
				})
				defer p.up.setScript(nil)
				p.settle()
				// The first request leaves a kept-alive upstream
				// connection in the pool; the second takes it.
				first := p.first + "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
				if p.first != "" {
					first = p.first // the warm-up does it
				}
				answers, _, _ := exchangeAfter(t, p.addr, first, c.req, false, 1, 3*time.Second)
				if len(answers) != 1 || answers[0].resp.StatusCode != http.StatusBadGateway {
					t.Errorf("answers %s, want 502", statuses(answers))
				}
				seen, _ := p.settle()
				n := 0
				for _, r := range seen {
					if r.target == "/crash" {
						n++
					}
				}
				if n != c.times {
					t.Errorf("the upstream got the request %d times, want %d", n, c.times)
				}
			})
		}
	}
}

// A route that matches on Host matches the same requests on every path
// (net/http keeps Host apart from the other header fields).
func TestHostRouteOnEveryPath(t *testing.T) {
	up := newScriptedUpstream(t)
	cfg := fmt.Sprintf(`node: {id: n, service: s}
admin: {address: "127.0.0.1:0"}
listeners:
  - {name: l, address: "127.0.0.1:0", direction: ingress,
     routes: [{match: {prefix: /, headers: [{name: host, value: a.test}]}, cluster: up}]}
clusters:
  - {name: up, endpoints: [%s]}
`, up.ln.Addr())
	fast := startProxyWith(t, cfg, core.Capabilities{}, nil)
	slow := startProxyWith(t, cfg, core.Capabilities{}, proxy.SlowPathOnly)
	for _, p := range []struct{ name, addr, first string }{
		{"fast", fast.addr["l"], ""}, {"net/http", slow.addr["l"], ""}, {"handed-off", fast.addr["l"], "GET /warm HTTP/1.1\r\nHost: a.test\r\nConnection: keep-alive, x-handoff\r\n\r\n"},
	} {
		for host, want := range map[string]int{"a.test": 200, "b.test": 404} {
			answers, _, _ := exchangeAfter(t, p.addr, p.first, "GET /x HTTP/1.1\r\nHost: "+host+"\r\n\r\n", false, 1, 3*time.Second)
			if len(answers) != 1 || answers[0].resp.StatusCode != want {
				t.Errorf("%s, Host %s: answers %s, want %d", p.name, host, statuses(answers), want)
			}
		}
	}
}

// A request read whole keeps its connection after the upstream failed it:
// the client's next request is answered, as by nginx and HAProxy (here a
// response head over the fast path's 16 KiB, which net/http takes).
func TestClientConnectionOutlivesAnUpstreamFailure(t *testing.T) {
	paths := conformancePaths(t, "300ms", false)
	for _, pathName := range conformancePathNames {
		p := paths[pathName]
		p.up.setScript(func(r *http.Request) (string, string) {
			if r.URL.Path == "/big" {
				return "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("a", 20000) + "\r\nContent-Length: 2\r\n\r\nok", ""
			}
			return "", ""
		})
		answers, _, _ := exchangeAfter(t, p.addr, p.first, "GET /big HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n", false, 2, 3*time.Second)
		if len(answers) != 2 || answers[1].resp.StatusCode != 200 {
			t.Errorf("%s: answers %s, want the second request answered 200", pathName, statuses(answers))
		}
		p.up.setScript(nil)
	}
}

// A request whose connection must close after its answer (chunked; HTTP/1.0
// with a body) still closes when the upstream sent a 1xx first:
// ReverseProxy clears the header after each 1xx, so the close is decided on
// the final answer. Nothing after such a request is served.
func TestCloseSurvivesInformationalAnswers(t *testing.T) {
	paths := conformancePaths(t, "300ms", false)
	for _, pathName := range conformancePathNames {
		p := paths[pathName]
		p.up.setScript(func(r *http.Request) (string, string) {
			if r.URL.Path == "/warm" {
				return "", ""
			}
			return "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", ""
		})
		for _, raw := range []string{
			"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + smuggled,
			"POST /x HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\nhello" + smuggled,
		} {
			p.settle()
			answers, closed, _ := exchangeAfter(t, p.addr, p.first, raw, false, 2, 2*time.Second)
			seen, _ := p.settle()
			if !closed {
				t.Errorf("%s, %.16q: the connection stayed open (answers %s)", pathName, raw, statuses(answers))
			}
			if err := anyUpstream(seen); err != nil {
				t.Errorf("%s, %.16q: %v", pathName, raw, err)
			}
		}
		p.up.setScript(nil)
	}
}

// An h2c cluster's connection is shared by every request: a HEAD does not
// retire it (an HTTP/1.1 cluster's does, on the net/http path), and a
// trailer that frames, routes or authenticates does not pass, announced
// or not, while gRPC's do.
func TestH2CClusterHeadAndTrailers(t *testing.T) {
	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	var conns atomic.Int32
	upSrv := &http.Server{Protocols: protocols,
		ConnState: func(c net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Trailer", "Content-Type, Grpc-Status")
			w.WriteHeader(200)
			io.WriteString(w, "body")
			w.Header().Set("Content-Type", "evil/type")
			w.Header().Set("Grpc-Status", "0")
			w.Header().Set(http.TrailerPrefix+"Set-Cookie", "sid=evil")
			w.Header().Set(http.TrailerPrefix+"Grpc-Message", "fine")
		})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go upSrv.Serve(ln)
	t.Cleanup(func() { upSrv.Close() })
	p := startProxy(t, strings.Replace(oneRoute("ingress", "true", ln.Addr().String(), ""), "connect_timeout: 500ms", "connect_timeout: 500ms, protocol: h2c", 1))
	h2 := &http.Client{Transport: &http.Transport{Protocols: protocols}}
	for _, m := range []string{"GET", "HEAD", "GET", "HEAD", "GET"} {
		req, _ := http.NewRequest(m, "http://"+p.addr["l"]+"/", nil)
		resp, err := h2.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if m == "GET" && (resp.Trailer.Get("Set-Cookie") != "" || resp.Trailer.Get("Content-Type") != "" ||
			resp.Trailer.Get("Grpc-Status") != "0" || resp.Trailer.Get("Grpc-Message") != "fine") {
			t.Errorf("trailers %v: want Grpc-Status and Grpc-Message only", resp.Trailer)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d upstream connections for 5 requests with HEADs among them, want 1", n)
	}
}

// A head that stops arriving is answered 408 once read_header_timeout has
// passed, not after it passed twice (the fast path's wait, then net/http's).
func TestSlowHeadAnsweredOnce(t *testing.T) {
	up := newScriptedUpstream(t)
	p := startProxy(t, fmt.Sprintf(`node: {id: n, service: s}
admin: {address: "127.0.0.1:0"}
listeners:
  - {name: l, address: "127.0.0.1:0", direction: ingress, read_header_timeout: 1s, routes: [{cluster: up}]}
clusters:
  - {name: up, endpoints: [%s]}
`, up.ln.Addr()))
	start := time.Now()
	answers, closed, _ := exchangeRaw(t, p.addr["l"], "GET / HTTP/1.1\r\nHost: x\r\n", false, 1, 3*time.Second)
	took := time.Since(start)
	if len(answers) != 1 || answers[0].resp.StatusCode != http.StatusRequestTimeout || !closed {
		t.Errorf("answers %s, closed %v, want 408 and a close", statuses(answers), closed)
	}
	if took >= 1900*time.Millisecond { // twice would be 2s
		t.Errorf("answered after %v: read_header_timeout (1s) was waited twice", took)
	}
}
