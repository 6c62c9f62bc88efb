// Package h1 parses HTTP/1.1 message heads in place and relays chunked
// bodies, for the proxy's fast path. It is strict on purpose: anything it
// does not accept (obsolete line folding, bare LF, odd versions) is left to
// net/http, which answers it properly; h1 only has to recognize the plain,
// common case and never misread it.
package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// Header is one header line; Name and Value alias the parsed buffer.
type Header struct{ Name, Value []byte }

// Request is a parsed request head. Fields alias the parsed buffer.
type Request struct {
	Method, Target []byte
	Minor          int // HTTP/1.Minor
	Headers        []Header
}

// Response is a parsed response head. Fields alias the parsed buffer.
type Response struct {
	Status  int
	Minor   int
	Reason  []byte
	Headers []Header
}

// ErrMalformed is returned for a head that h1 does not accept.
var ErrMalformed = errors.New("h1: malformed or unsupported message head")

var crlfcrlf = []byte("\r\n\r\n")

// HeadLen returns the length of the head at the start of buf, through its
// blank line, or -1 when buf does not hold a whole head yet.
func HeadLen(buf []byte) int {
	i := bytes.Index(buf, crlfcrlf)
	if i < 0 {
		return -1
	}
	return i + 4
}

// MaxHeaders bounds the header lines of a head h1 accepts.
const MaxHeaders = 100

// ParseRequest parses head (as delimited by HeadLen) into r, reusing r's
// Headers.
func ParseRequest(head []byte, r *Request) error {
	line, rest, ok := cutLine(head)
	if !ok {
		return ErrMalformed
	}
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return ErrMalformed
	}
	r.Method = line[:sp1]
	line = line[sp1+1:]
	sp2 := bytes.IndexByte(line, ' ')
	if sp2 <= 0 {
		return ErrMalformed
	}
	r.Target = line[:sp2]
	minor, ok := version(line[sp2+1:])
	if !ok || !isToken(r.Method) || !validTarget(r.Target) {
		return ErrMalformed
	}
	r.Minor = minor
	var err error
	r.Headers, err = parseHeaders(rest, r.Headers[:0])
	return err
}

// ParseResponse parses head (as delimited by HeadLen) into r, reusing r's
// Headers.
func ParseResponse(head []byte, r *Response) error {
	line, rest, ok := cutLine(head)
	if !ok || len(line) < 12 || line[8] != ' ' {
		return ErrMalformed
	}
	minor, ok := version(line[:8])
	if !ok {
		return ErrMalformed
	}
	r.Minor = minor
	code := line[9:12]
	if code[0] < '1' || code[0] > '9' || code[1] < '0' || code[1] > '9' || code[2] < '0' || code[2] > '9' || len(line) > 12 && line[12] != ' ' {
		return ErrMalformed
	}
	r.Status = int(code[0]-'0')*100 + int(code[1]-'0')*10 + int(code[2]-'0')
	r.Reason = nil
	if len(line) > 13 {
		r.Reason = line[13:]
	}
	var err error
	r.Headers, err = parseHeaders(rest, r.Headers[:0])
	return err
}

func cutLine(b []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 1 || b[i-1] != '\r' {
		return nil, nil, false
	}
	return b[:i-1], b[i+1:], true
}

func version(v []byte) (minor int, ok bool) {
	if len(v) != 8 || string(v[:7]) != "HTTP/1." || (v[7] != '0' && v[7] != '1') {
		return 0, false
	}
	return int(v[7] - '0'), true
}

func parseHeaders(b []byte, hs []Header) ([]Header, error) {
	for {
		line, rest, ok := cutLine(b)
		if !ok {
			return hs, ErrMalformed
		}
		if len(line) == 0 {
			return hs, nil
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || len(hs) == MaxHeaders {
			return hs, ErrMalformed
		}
		name, value := line[:colon], trimOWS(line[colon+1:])
		if !isToken(name) || !validValue(value) {
			return hs, ErrMalformed
		}
		hs = append(hs, Header{Name: name, Value: value})
		b = rest
	}
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// isToken reports whether b is an RFC 9110 token.
func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tokenChar[c] {
			return false
		}
	}
	return true
}

var tokenChar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return
}()

// validValue refuses control characters other than HTAB (CR, LF and NUL
// among them).
func validValue(b []byte) bool {
	for _, c := range b {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// validTarget accepts an origin-form target ("/path?query") of visible
// ASCII.
func validTarget(b []byte) bool {
	if len(b) == 0 || b[0] != '/' {
		return false
	}
	for _, c := range b {
		if c <= 0x20 || c >= 0x7f {
			return false
		}
	}
	return true
}

// EqualFold reports whether a equals the ASCII string s, ignoring case.
func EqualFold(a []byte, s string) bool {
	if len(a) != len(s) {
		return false
	}
	for i := range len(a) {
		x, y := a[i], s[i]
		if x == y {
			continue
		}
		if x|0x20 != y|0x20 || x|0x20 < 'a' || x|0x20 > 'z' {
			return false
		}
	}
	return true
}

// ParseLength parses a Content-Length value: decimal digits only.
func ParseLength(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 15 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// maxChunkLine bounds a chunk-size line, extensions included.
const maxChunkLine = 4096

// WriteError marks a failure to write to the destination, as opposed to
// reading the source: a proxy tells a client that went away from an
// upstream that broke off.
type WriteError struct{ Err error }

func (e WriteError) Error() string { return e.Err.Error() }
func (e WriteError) Unwrap() error { return e.Err }

func write(w io.Writer, b []byte) (int, error) {
	n, err := w.Write(b)
	if err != nil {
		return n, WriteError{err}
	}
	return n, nil
}

func doFlush(flush func() error) error {
	if flush == nil {
		return nil
	}
	if err := flush(); err != nil {
		return WriteError{err}
	}
	return nil
}

// CopyChunked relays a chunked body from r to w verbatim: every chunk, the
// last chunk and the trailer section. flush, if not nil, is called whenever
// r has nothing more buffered, so that a stream reaches the client as it
// comes. It returns the payload bytes relayed; failures to write to w or
// flush are WriteErrors.
func CopyChunked(w io.Writer, r *bufio.Reader, flush func() error) (int64, error) {
	var total int64
	for {
		if r.Buffered() == 0 {
			if err := doFlush(flush); err != nil {
				return total, err
			}
		}
		line, err := readLine(r)
		if err != nil {
			return total, err
		}
		size, ok := chunkSize(line)
		if !ok {
			return total, ErrMalformed
		}
		if _, err := write(w, line); err != nil {
			return total, err
		}
		if size == 0 {
			// Trailer section: lines up to the empty one.
			for {
				line, err := readLine(r)
				if err != nil {
					return total, err
				}
				if _, err := write(w, line); err != nil {
					return total, err
				}
				if len(line) == 2 {
					return total, doFlush(flush)
				}
			}
		}
		n, err := CopyN(w, r, size+2, flush) // the data and its CRLF
		total += max(0, n-2)
		if err != nil {
			return total, err
		}
	}
}

// CopyN copies n bytes (n < 0: up to EOF) from r to w through r's buffer,
// without a buffer of its own. flush is as for CopyChunked; failures to
// write to w are WriteErrors, and an early EOF is io.ErrUnexpectedEOF.
func CopyN(w io.Writer, r *bufio.Reader, n int64, flush func() error) (int64, error) {
	var done int64
	for n < 0 || done < n {
		if r.Buffered() == 0 {
			if err := doFlush(flush); err != nil {
				return done, err
			}
			if _, err := r.Peek(1); err != nil {
				if n < 0 && err == io.EOF {
					return done, nil
				}
				return done, unexpected(err)
			}
		}
		k := r.Buffered()
		if n >= 0 {
			k = int(min(int64(k), n-done))
		}
		b, _ := r.Peek(k)
		m, err := write(w, b)
		r.Discard(m)
		done += int64(m)
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// readLine reads one CRLF-terminated line, CRLF included.
func readLine(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		if err == bufio.ErrBufferFull {
			return nil, ErrMalformed
		}
		return nil, unexpected(err)
	}
	if len(line) < 2 || line[len(line)-2] != '\r' || len(line) > maxChunkLine {
		return nil, ErrMalformed
	}
	return line, nil
}

// chunkSize parses "HEX[;ext]\r\n".
func chunkSize(line []byte) (int64, bool) {
	line = line[:len(line)-2]
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	line = trimOWS(line)
	if len(line) == 0 || len(line) > 15 {
		return 0, false
	}
	var n int64
	for _, c := range line {
		switch {
		case '0' <= c && c <= '9':
			n = n<<4 | int64(c-'0')
		case 'a' <= c && c <= 'f':
			n = n<<4 | int64(c-'a'+10)
		case 'A' <= c && c <= 'F':
			n = n<<4 | int64(c-'A'+10)
		default:
			return 0, false
		}
	}
	return n, true
}
