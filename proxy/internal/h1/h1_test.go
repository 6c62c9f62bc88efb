package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestParseRequest(t *testing.T) {
	head := "GET /a?b=1 HTTP/1.1\r\nHost: svc\r\nX-B3-Sampled:  1 \r\n\r\n"
	if n := HeadLen([]byte(head + "body")); n != len(head) {
		t.Fatalf("HeadLen = %d, want %d", n, len(head))
	}
	var r Request
	if err := ParseRequest([]byte(head), &r); err != nil {
		t.Fatal(err)
	}
	if string(r.Method) != "GET" || string(r.Target) != "/a?b=1" || r.Minor != 1 || len(r.Headers) != 2 || string(r.Headers[1].Value) != "1" {
		t.Fatalf("parsed %+v", r)
	}
	for _, bad := range []string{
		"GET /a HTTP/1.1\nHost: x\r\n\r\n",              // bare LF
		"GET /a HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", // obsolete folding
		"GET http://x/a HTTP/1.1\r\n\r\n",               // absolute form: net/http's
		"PRI * HTTP/2.0\r\n\r\n",                        // HTTP/2 preface
		"GET /a HTTP/1.1\r\nBad Name: x\r\n\r\n",
		"GET /a HTTP/1.1\r\nX: a\x00b\r\n\r\n",
	} {
		if err := ParseRequest([]byte(bad), &r); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

// A chunked body is relayed in canonical framing: sizes without their
// extensions or leading zeros, trailers that are valid fields.
func TestCopyChunked(t *testing.T) {
	body := "05;ext=1;q=\"a b\"\r\nhello\r\n0\r\nGrpc-Status: 0\r\nContent-Length: 9\r\n\r\n"
	want := "5\r\nhello\r\n0\r\nGrpc-Status: 0\r\n\r\n"
	var out bytes.Buffer
	n, err := CopyChunked(&out, bufio.NewReader(strings.NewReader(body+"NEXT")), nil)
	if err != nil || n != 5 || out.String() != want {
		t.Fatalf("copied %d bytes %q, %v; want %q", n, out.String(), err, want)
	}
}

// Framing that peers could read two ways is refused, not relayed
// (HTTP Garden's and smuggler's chunked mutations).
func TestCopyChunkedRefusesAmbiguousFraming(t *testing.T) {
	for _, bad := range []string{
		"zz\r\n",                                 // not hex
		"5\r\nhel",                               // truncated
		"0x5\r\nhello\r\n0\r\n\r\n",              // 0x prefix
		"+5\r\nhello\r\n0\r\n\r\n",               // sign
		"-5\r\nhello\r\n0\r\n\r\n",               // sign
		" 5\r\nhello\r\n0\r\n\r\n",               // whitespace before the size
		"5\thello\r\n0\r\n\r\n",                  // tab, no line end
		"5\nhello\r\n0\r\n\r\n",                  // bare LF after the size
		"5\r\nhelloXX0\r\n\r\n",                  // no CRLF after the data
		"5\r\nhello\n0\r\n\r\n",                  // bare LF after the data
		"5\r\nhello\r\r\n0\r\n\r\n",              // CR CR LF after the data
		"5;a\rb\r\nhello\r\n0\r\n\r\n",           // bare CR in an extension
		"5;\r\nhello\r\n0\r\n\r\n",               // empty extension name
		"5;a=\r\nhello\r\n0\r\n\r\n",             // empty extension value
		"5;a=\"b\r\nhello\r\n0\r\n\r\n",          // open quoted string
		"5;a b\r\nhello\r\n0\r\n\r\n",            // two names
		"10000000000000000\r\n",                  // 17 hex digits: overflow
		"fffffffffffffffff\r\n",                  // overflow
		"5\r\nhello\r\n0\r\nnot a field\r\n\r\n", // a trailer line that is not a field
		"5\r\nhello\r\n0\r\nX: a\rb\r\n\r\n",     // bare CR in a trailer
		"5\r\nhello\r\n0\r\n X: folded\r\n\r\n",  // obsolete folding in a trailer
		"5\r\nhello\r\n0\r\n\n",                  // trailer section ended by a bare LF
	} {
		if _, err := CopyChunked(io.Discard, bufio.NewReader(strings.NewReader(bad)), nil); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
	for _, good := range []string{
		"0000000000000000005\r\nhello\r\n0\r\n\r\n", // leading zeros are digits
		"5 ; a = b\r\nhello\r\n0\r\n\r\n",           // BWS around an extension
		"5;a=\"q\\\"x\"\r\nhello\r\n0\r\n\r\n",      // quoted pair
		"A\r\n0123456789\r\n0\r\n\r\n",              // upper-case hex
	} {
		var out bytes.Buffer
		if _, err := CopyChunked(&out, bufio.NewReader(strings.NewReader(good)), nil); err != nil {
			t.Errorf("refused %q: %v", good, err)
		}
	}
}

// A head ended by a bare LF is found at once (and then refused by the
// parsers), so neither a client nor an upstream waits out a timeout.
func TestHeadLenFindsBareLFHeads(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int
	}{
		{"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody", 27},
		{"GET / HTTP/1.1\nHost: x\n\nbody", 24},
		{"GET / HTTP/1.1\r\nHost: x\n\r\nbody", 26},
		{"GET / HTTP/1.1\r\nHost: x\n\nA\r\n\r\n", 25},
		{"GET / HTTP/1.1\r\nHost: x\r\n", -1},
	} {
		if got := HeadLen([]byte(c.in)); got != c.want {
			t.Errorf("HeadLen(%q) = %d, want %d", c.in, got, c.want)
		}
	}
	var r Response
	if err := ParseResponse([]byte("HTTP/1.1 200 OK\nContent-Length: 0\n\n"), &r); err != nil || r.Status != 200 || len(r.Headers) != 1 {
		t.Errorf("a bare-LF response head: %v %+v (net/http reads it; so must the fast path)", err, r)
	}
}

// Control characters in a response's fields make it malformed; a bare CR
// in the reason phrase is harmless only because a proxy writes its own.
func TestParseResponseRefusesControlCharacters(t *testing.T) {
	var r Response
	for _, bad := range []string{
		"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX: a\x00b\r\n\r\n",
		"HTTP/1.1 200 OK\r\n X: folded\r\n\r\n",
	} {
		if err := ParseResponse([]byte(bad), &r); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestParseRequestNotesUnderscores(t *testing.T) {
	var r Request
	if err := ParseRequest([]byte("GET / HTTP/1.1\r\nHost: x\r\nContent_Length: 5\r\n\r\n"), &r); err != nil || !r.Underscore {
		t.Fatalf("underscore not noted: %v %v", r.Underscore, err)
	}
	if err := ParseRequest([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), &r); err != nil || r.Underscore {
		t.Fatalf("underscore noted without one: %v %v", r.Underscore, err)
	}
}

// FuzzParse: no input makes the parsers panic, and an accepted request
// head keeps its fields inside the input.
func FuzzParse(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	f.Add([]byte("3\r\nabc\r\n0\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Request
		if n := HeadLen(b); n >= 0 && ParseRequest(b[:n], &r) == nil {
			if !bytes.Contains(b, r.Method) || !bytes.Contains(b, r.Target) {
				t.Fatal("fields outside the input")
			}
			names := NamesOf(r.Headers)
			for _, h := range r.Headers {
				// Any spelling EqualFold matches is found through NamesOf.
				for _, name := range []string{string(h.Name), strings.ToUpper(string(h.Name)), strings.ToLower(string(h.Name))} {
					if EqualFold(h.Name, name) && names&NameBit(name) == 0 {
						t.Fatalf("header %q parsed, but NamesOf lacks the bit of %q", h.Name, name)
					}
				}
			}
		}
		var resp Response
		if n := HeadLen(b); n >= 0 {
			ParseResponse(b[:n], &resp)
		}
		CopyChunked(&bytes.Buffer{}, bufio.NewReader(bytes.NewReader(b)), nil)
	})
}

// A lookup skips a name whose bit NamesOf lacks: every header's name, in
// any case, must have its bit there, and a head without a trace header
// must let most of those lookups skip.
func TestNamesFindEveryHeader(t *testing.T) {
	var r Request
	head := "GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: b\r\nAccept: */*\r\nX-B3-TraceId: 1\r\nContent-Length: 0\r\n\r\n"
	if err := ParseRequest([]byte(head), &r); err != nil {
		t.Fatal(err)
	}
	names := NamesOf(r.Headers)
	for _, name := range []string{"host", "HOST", "Host", "user-agent", "USER-AGENT", "accept", "x-b3-traceid", "X-B3-TRACEID", "content-length"} {
		if names&NameBit(name) == 0 {
			t.Errorf("NamesOf lacks %q, which the head carries", name)
		}
	}
	absent := []string{"traceparent", "tracestate", "b3", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags",
		"baggage", "x-request-id", "x-client-trace-id", "x-datadog-trace-id", "x-datadog-parent-id", "ot-tracer-traceid", "uber-trace-id"}
	skipped := 0
	for _, name := range absent {
		if names&NameBit(name) == 0 {
			skipped++
		}
	}
	// 5 of 64 bits set: nearly every absent name is told apart.
	if skipped < len(absent)*2/3 {
		t.Errorf("only %d of %d absent trace headers are ruled out by NamesOf %064b", skipped, len(absent), names)
	}
	if NameBit("") != 0 {
		t.Error("the empty name has a bit; no header has it")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("client went away") }

// TestCopyErrorsSayWhichSide: a proxy reports a client that went away
// (DC) apart from an upstream that broke off (UR), for both body framings.
func TestCopyErrorsSayWhichSide(t *testing.T) {
	var we WriteError
	if _, err := CopyChunked(failWriter{}, bufio.NewReader(strings.NewReader("5\r\nhello\r\n0\r\n\r\n")), nil); !errors.As(err, &we) {
		t.Errorf("chunked, failing writer: %v, want a WriteError", err)
	}
	if _, err := CopyN(failWriter{}, bufio.NewReader(strings.NewReader("hello")), 5, nil); !errors.As(err, &we) {
		t.Errorf("length, failing writer: %v, want a WriteError", err)
	}
	if _, err := CopyChunked(&bytes.Buffer{}, bufio.NewReader(strings.NewReader("5\r\nhe")), nil); err == nil || errors.As(err, &we) {
		t.Errorf("chunked, truncated source: %v, want a read error", err)
	}
	if n, err := CopyN(&bytes.Buffer{}, bufio.NewReader(strings.NewReader("abc")), -1, nil); n != 3 || err != nil {
		t.Errorf("until EOF: %d, %v", n, err)
	}
	if _, err := CopyN(&bytes.Buffer{}, bufio.NewReader(strings.NewReader("abc")), 5, nil); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("short source: %v, want io.ErrUnexpectedEOF", err)
	}
}

// HeadLen finds the first blank line as the two-pass search it replaced
// did, for every head of up to 9 bytes made of 'a', ' ', CR and LF.
func TestHeadLenMatchesTwoPasses(t *testing.T) {
	twoPasses := func(buf []byte) int {
		i := bytes.Index(buf, []byte("\n\r\n"))
		scan := buf
		if i >= 0 {
			scan = buf[:i+1]
		}
		if j := bytes.Index(scan, []byte("\n\n")); j >= 0 {
			return j + 2
		}
		if i < 0 {
			return -1
		}
		return i + 3
	}
	const alphabet = "a \r\n"
	for n := 0; n <= 9; n++ {
		buf := make([]byte, n)
		for k := 0; k < 1<<(2*n); k++ {
			for i := range buf {
				buf[i] = alphabet[k>>(2*i)&3]
			}
			if got, want := HeadLen(buf), twoPasses(buf); got != want {
				t.Fatalf("HeadLen(%q) = %d, want %d", buf, got, want)
			}
		}
	}
}

// validValue refuses what a byte-at-a-time check refuses: every byte
// value at every position of values of every length up to 20.
func TestValidValueEveryByteEveryPosition(t *testing.T) {
	for n := 1; n <= 20; n++ {
		for pos := 0; pos < n; pos++ {
			for c := 0; c < 256; c++ {
				b := bytes.Repeat([]byte{'v'}, n)
				b[pos] = byte(c)
				want := validBytes(b)
				if got := validValue(b); got != want {
					t.Fatalf("validValue(%q) = %v, want %v", b, got, want)
				}
				if want != (c >= 0x20 && c != 0x7f || c == '\t') {
					t.Fatalf("validBytes(%q) = %v", b, want)
				}
			}
		}
	}
}
