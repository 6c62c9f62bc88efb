package proxy_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/proxy"
)

var benchCaps = core.Capabilities{Propagation: []string{"b3", "tracecontext"}, TraceID128: true}

// rawUpstream answers every request on a connection with a fixed 200,
// with as little work as a server can do, so that a benchmark through
// tracehop measures tracehop and the loopback.
func rawUpstream(tb testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				resp := []byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
				for {
					if err := skipHead(br); err != nil {
						return
					}
					if _, err := c.Write(resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// skipHead reads a message head (no body) up to its empty line.
func skipHead(br *bufio.Reader) error {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			return nil
		}
	}
}

// pingPong sends b.N keep-alive requests one after another on conn and
// reads each 5-byte response.
func pingPong(b *testing.B, conn net.Conn) {
	req := []byte("GET /bench HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\n\r\n")
	br := bufio.NewReader(conn)
	body := make([]byte, 5)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := conn.Write(req); err != nil {
			b.Fatal(err)
		}
		if err := skipHead(br); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(br, body); err != nil || !bytes.Equal(body, []byte("hello")) {
			b.Fatalf("%q %v", body, err)
		}
	}
}

// BenchmarkFastPath is one keep-alive HTTP/1.1 request at a time through a
// plaintext listener's fast path, over loopback, untraced and traced: the
// number the plaintext hot path must keep (compare it before and after a
// change with -count and the median).
func BenchmarkFastPath(b *testing.B) {
	up := rawUpstream(b)
	for _, traced := range []bool{false, true} {
		name, block := "untraced", ""
		if traced {
			name, block = "traced", tracingBlock
		}
		b.Run(name, func(b *testing.B) {
			tp := startProxyWith(b, fmt.Sprintf(`admin: {address: off}
listeners:
  - {name: l, address: "127.0.0.1:0", direction: ingress, routes: [{cluster: up}]}
clusters:
  - {name: up, endpoints: [%s]}
`, up)+block, benchCaps, nil)
			conn, err := net.Dial("tcp", tp.addr["l"])
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			pingPong(b, conn)
		})
	}
}

// A request with Connection: close gets Connection: close on its answer
// from the fast path (RFC 9112 §9.6), as net/http's, and the connection
// closes: a client does not send its next request into it.
func TestFastPathConnectionClose(t *testing.T) {
	up := rawUpstream(t)
	tp := startProxy(t, fmt.Sprintf(`admin: {address: off}
listeners:
  - {name: l, address: "127.0.0.1:0", direction: ingress, routes: [{cluster: up}]}
clusters:
  - {name: up, endpoints: [%s]}
`, up))
	conn, err := net.Dial("tcp", tp.addr["l"])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	b, err := io.ReadAll(conn)
	if err != nil || !bytes.Contains(b, []byte("\r\nConnection: close\r\n")) || !bytes.HasSuffix(b, []byte("hello")) {
		t.Errorf("%q %v", b, err)
	}
	if n := proxy.HandedOff(tp.srv, "l"); n != 0 {
		t.Errorf("%d hand-offs: want the fast path", n)
	}
}

// An untraced request through the fast path allocates nothing: the
// request id it makes, or the one a trusted client sends, is written into
// its connection's memory (a new string per request was its one
// allocation, about 0.1 µs of CPU in make bench's profiles).
func TestFastPathAllocations(t *testing.T) {
	up := rawUpstream(t)
	for _, c := range []struct{ name, trust, id string }{
		{"new id", "false", ""},
		{"client's id", "true", "X-Request-Id: 0f2b7c8e-5d1a-4c3b-9e6f-a1b2c3d4e5f6\r\n"},
		{"client's long id", "true", "X-Request-Id: " + strings.Repeat("r", 100) + "\r\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tp := startProxyWith(t, fmt.Sprintf(`admin: {address: off}
listeners:
  - {name: l, address: "127.0.0.1:0", direction: ingress, trust_trace_headers: %s, routes: [{cluster: up}]}
clusters:
  - {name: up, endpoints: [%s]}
`, c.trust, up), benchCaps, nil)
			conn, err := net.Dial("tcp", tp.addr["l"])
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			req := []byte("GET /a HTTP/1.1\r\nHost: a\r\n" + c.id + "\r\n")
			br := bufio.NewReader(conn)
			body := make([]byte, 5)
			var failed error
			one := func() {
				if _, err := conn.Write(req); err != nil {
					failed = err
				} else if err := skipHead(br); err != nil {
					failed = err
				} else if _, err := io.ReadFull(br, body); err != nil {
					failed = err
				}
			}
			for range 200 { // the connection's buffers, the upstream pool
				one()
			}
			want := 0.0
			if raceEnabled {
				want = 1 // the read buffer, which the race detector's pool drops
			}
			if n := testing.AllocsPerRun(1000, one); n > want || failed != nil {
				t.Fatalf("%.2f allocations per request, want %.0f (error: %v)", n, want, failed)
			}
			if n := proxy.HandedOff(tp.srv, "l"); n != 0 {
				t.Errorf("%d hand-offs: want the fast path", n)
			}
		})
	}
}
