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

func TestCopyChunked(t *testing.T) {
	body := "5;ext=1\r\nhello\r\n0\r\nGrpc-Status: 0\r\n\r\n"
	var out bytes.Buffer
	n, err := CopyChunked(&out, bufio.NewReader(strings.NewReader(body+"NEXT")), nil)
	if err != nil || n != 5 || out.String() != body {
		t.Fatalf("copied %d bytes %q, %v", n, out.String(), err)
	}
	if _, err := CopyChunked(&out, bufio.NewReader(strings.NewReader("zz\r\n")), nil); err == nil {
		t.Fatal("accepted a bad chunk size")
	}
	if _, err := CopyChunked(&out, bufio.NewReader(strings.NewReader("5\r\nhel")), nil); err == nil {
		t.Fatal("accepted a truncated chunk")
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
		}
		var resp Response
		if n := HeadLen(b); n >= 0 {
			ParseResponse(b[:n], &resp)
		}
		CopyChunked(&bytes.Buffer{}, bufio.NewReader(bytes.NewReader(b)), nil)
	})
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
