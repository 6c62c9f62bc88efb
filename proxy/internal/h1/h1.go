// Package h1 parses HTTP/1.1 message heads in place and relays chunked
// bodies, for the proxy's fast path. It is strict on purpose: anything it
// does not accept (obsolete line folding, bare LF, odd versions) is left to
// net/http, which answers it properly; h1 only has to recognize the plain,
// common case and never misread it. What it relays it writes out again in
// canonical form (chunk sizes, trailer fields), so that no peer downstream
// can frame a message differently from the way h1 framed it (RFC 9112).
package h1

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strconv"
	"strings"

	"github.com/tracehop/tracehop/internal/hexdigit"
)

// Header is one header line; Name and Value alias the parsed buffer.
type Header struct{ Name, Value []byte }

// Request is a parsed request head. Fields alias the parsed buffer.
type Request struct {
	Method, Target []byte
	Minor          int // HTTP/1.Minor
	Headers        []Header
	// Underscore is set when a header name holds an underscore: the
	// proxy then looks for look-alikes of the headers it guards
	// (Content_Length), which some applications read as the real ones.
	Underscore bool
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

// HeadLen returns the length of the head at the start of buf, through its
// blank line, or -1 when buf does not hold a whole head yet. A blank line
// ended by a bare LF ends the head too (RFC 9112 §2.2 lets a recipient
// read a lone LF as a line end): the parsers then refuse the head at once,
// instead of waiting for a CRLF that will never come.
//
// It looks at each line end once (IndexByte from one to the next): two
// bytes.Index passes, one per terminator, took about a thousand
// instructions for a ten-line head.
func HeadLen(buf []byte) int {
	for p := 0; ; p++ {
		i := bytes.IndexByte(buf[p:], '\n')
		if i < 0 {
			return -1
		}
		p += i
		switch {
		case p+1 < len(buf) && buf[p+1] == '\n':
			return p + 2
		case p+2 < len(buf) && buf[p+1] == '\r' && buf[p+2] == '\n':
			return p + 3
		}
	}
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
	r.Underscore = false
	var err error
	r.Headers, err = parseHeaders(rest, r.Headers[:0], &r.Underscore, cutLine)
	return err
}

// NamesOf returns the NameBit of every name in hs, ORed together: a name
// whose bit is not in it is not among hs, which a lookup can then tell
// without comparing it with each of them.
func NamesOf(hs []Header) uint64 {
	var names uint64
	for _, h := range hs {
		if len(h.Name) > 0 {
			names |= nameBit(len(h.Name), h.Name[0], h.Name[len(h.Name)-1])
		}
	}
	return names
}

// NameBit returns a header name's bit in NamesOf. Names that
// EqualFold matches have the same length and the same first and last
// letters but for case, so they share a bit; other names may share it too.
// A trace context's extraction asks for a dozen names that a request
// mostly does not carry, each a scan of its headers without the bit.
func NameBit(name string) uint64 {
	if name == "" {
		return 0 // no header has an empty name
	}
	return nameBit(len(name), name[0], name[len(name)-1])
}

func nameBit(n int, first, last byte) uint64 {
	return 1 << ((uint(n)*7 + uint(first|0x20) + uint(last|0x20)*3) & 63)
}

// ParseResponse parses head (as delimited by HeadLen) into r, reusing r's
// Headers. Unlike a request head, a response head may end its lines with a
// bare LF, as RFC 9112 §2.2 allows and as net/http reads them: both paths
// of the proxy then frame such an answer alike.
func ParseResponse(head []byte, r *Response) error {
	line, rest, ok := cutLineLenient(head)
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
	// The reason phrase is kept for the caller to ignore: a proxy writes
	// its own (a bare CR there is a line end to some clients).
	var err error
	r.Headers, err = parseHeaders(rest, r.Headers[:0], nil, cutLineLenient)
	return err
}

// cutLineLenient is cutLine that also takes a bare LF as a line end.
func cutLineLenient(b []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return nil, nil, false
	}
	line = b[:i]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	return line, b[i+1:], true
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

// parseHeaders parses field lines up to the blank line; underscore, if not
// nil, is set when a name holds an underscore.
func parseHeaders(b []byte, hs []Header, underscore *bool, cut func([]byte) ([]byte, []byte, bool)) ([]Header, error) {
	for {
		line, rest, ok := cut(b)
		if !ok {
			return hs, ErrMalformed
		}
		if len(line) == 0 {
			return hs, nil
		}
		if len(hs) == MaxHeaders {
			return hs, ErrMalformed
		}
		h, kind, ok := parseField(line)
		if !ok {
			return hs, ErrMalformed
		}
		if kind&charUnderscore != 0 && underscore != nil {
			*underscore = true
		}
		hs = append(hs, h)
		b = rest
	}
}

// parseField parses one field line (without its CRLF): a token, a colon,
// and a value of no control characters but HTAB. It also returns the
// union of the name's character classes.
func parseField(line []byte) (Header, uint8, bool) {
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return Header{}, 0, false
	}
	name, value := line[:colon], trimOWS(line[colon+1:])
	var kind uint8
	for _, c := range name {
		k := tokenChar[c]
		if k == 0 {
			return Header{}, 0, false
		}
		kind |= k
	}
	if !validValue(value) {
		return Header{}, 0, false
	}
	return Header{Name: name, Value: value}, kind, true
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
		if tokenChar[c] == 0 {
			return false
		}
	}
	return true
}

// Character classes of tokenChar.
const (
	charToken      = 1 << iota // any token character
	charUnderscore             // '_'
)

var tokenChar = func() (t [256]uint8) {
	for c := '0'; c <= '9'; c++ {
		t[c] = charToken
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = charToken, charToken
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = charToken
	}
	t['_'] |= charUnderscore
	return
}()

// validValue refuses control characters other than HTAB (CR, LF and NUL
// among them). It looks at 8 bytes at a time and at each byte only of a
// word that has a byte below 0x20 or a DEL (a tab, or a bad one): header
// values are most of a head's bytes, and a byte at a time was the most
// expensive loop of parsing one.
func validValue(b []byte) bool {
	const lsb, msb = 0x0101010101010101, 0x8080808080808080
	for len(b) >= 8 {
		x := binary.LittleEndian.Uint64(b)
		del := x ^ 0x7f*lsb
		if ((x-0x20*lsb)&^x|(del-lsb)&^del)&msb != 0 && !validBytes(b[:8]) {
			return false
		}
		b = b[8:]
	}
	return validBytes(b)
}

func validBytes(b []byte) bool {
	for _, c := range b {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// validTarget accepts an origin-form target ("/path?query") of visible
// ASCII without '#' (no fragment is sent in a request; net/http would
// escape it as part of the path).
func validTarget(b []byte) bool {
	if len(b) == 0 || b[0] != '/' {
		return false
	}
	for _, c := range b {
		if c <= 0x20 || c >= 0x7f || c == '#' {
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

// CopyChunked relays a chunked body from r to w: every chunk, the last
// chunk and the trailer section. It does not pass the framing on verbatim:
// each chunk size is parsed strictly (RFC 9112 §7.1: hex digits, then
// chunk extensions by their grammar, then CRLF; no whitespace around the
// size, no bare CR or LF) and written again in canonical form without its
// extensions; the CRLF after each chunk's data must be there; a trailer
// line must be a valid field line, and fields that frame or route a message
// are not relayed as trailers. What a lenient peer and a strict one would
// frame differently thus never reaches either. flush, if not nil, is
// called whenever r has nothing more buffered, so that a stream reaches the
// client as it comes. It returns the payload bytes relayed; failures to
// write to w or flush are WriteErrors, and bad framing is ErrMalformed.
func CopyChunked(w io.Writer, r *bufio.Reader, flush func() error) (int64, error) {
	var total int64
	var sizeLine [20]byte
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
		size, ok := ChunkSize(line[:len(line)-2])
		if !ok {
			return total, ErrMalformed
		}
		out := append(strconv.AppendInt(sizeLine[:0], size, 16), '\r', '\n')
		if size == 0 {
			if _, err := write(w, out); err != nil {
				return total, err
			}
			return total, copyTrailers(w, r, flush)
		}
		if _, err := write(w, out); err != nil {
			return total, err
		}
		n, err := CopyN(w, r, size, flush)
		total += n
		if err != nil {
			return total, err
		}
		if err := readCRLF(r, flush); err != nil {
			return total, err
		}
		if _, err := write(w, crlf); err != nil {
			return total, err
		}
	}
}

var crlf = []byte("\r\n")

// readCRLF consumes the CRLF that must follow a chunk's data.
func readCRLF(r *bufio.Reader, flush func() error) error {
	if r.Buffered() < 2 {
		if err := doFlush(flush); err != nil {
			return err
		}
	}
	b, err := r.Peek(2)
	if err != nil {
		return unexpected(err)
	}
	if b[0] != '\r' || b[1] != '\n' {
		return ErrMalformed
	}
	r.Discard(2)
	return nil
}

// copyTrailers relays the trailer section up to its blank line.
func copyTrailers(w io.Writer, r *bufio.Reader, flush func() error) error {
	for n := 0; ; n++ {
		line, err := readLine(r)
		if err != nil {
			return err
		}
		if len(line) == 2 {
			if _, err := write(w, crlf); err != nil {
				return err
			}
			return doFlush(flush)
		}
		h, _, ok := parseField(line[:len(line)-2])
		if !ok || n == MaxHeaders {
			return ErrMalformed
		}
		if forbiddenTrailer(h.Name) {
			continue
		}
		if _, err := write(w, line); err != nil {
			return err
		}
	}
}

// forbiddenTrailer names the fields that must not be sent as trailers
// (RFC 9110 §6.5.1): those that frame, route or authenticate a message.
func forbiddenTrailer(name []byte) bool {
	for _, f := range forbiddenTrailers {
		if EqualFold(name, f) {
			return true
		}
	}
	return false
}

// ForbiddenTrailerName is forbiddenTrailer for a name as net/http holds
// it, so that the net/http path drops the trailers the fast path drops.
func ForbiddenTrailerName(name string) bool {
	for _, f := range forbiddenTrailers {
		if strings.EqualFold(name, f) {
			return true
		}
	}
	return false
}

var forbiddenTrailers = [...]string{"Content-Length", "Transfer-Encoding", "Host", "Connection", "Keep-Alive",
	"Te", "Trailer", "Upgrade", "Proxy-Connection", "Content-Encoding", "Content-Type", "Content-Range",
	"Authorization", "Set-Cookie", "Cache-Control", "Expect", "Max-Forwards", "Pragma", "Range"}

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

// maxChunkDigits bounds a chunk size's significant hex digits, so that
// it fits an int64 with room to spare.
const maxChunkDigits = 15

// ChunkSize parses a chunk-size line without its CRLF, by RFC 9112 §7.1:
//
//	chunk-size [ chunk-ext ]
//	chunk-size = 1*HEXDIG
//	chunk-ext  = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )
//	ext-val    = token / quoted-string
//
// Leading zeros are allowed; whitespace is allowed where BWS stands, and
// after the size (net/http accepts it there too: the two paths of the
// proxy read the same sizes, and what goes on is written canonically).
func ChunkSize(line []byte) (int64, bool) {
	var n int64
	i, digits := 0, 0
	for ; i < len(line); i++ {
		d := hexdigit.Value(line[i])
		if d == hexdigit.Invalid {
			break
		}
		if n != 0 || d != 0 {
			digits++
		}
		if digits > maxChunkDigits {
			return 0, false
		}
		n = n<<4 | int64(d)
	}
	if i == 0 {
		return 0, false
	}
	for i < len(line) {
		i = skipBWS(line, i)
		if i == len(line) {
			break
		}
		if line[i] != ';' {
			return 0, false
		}
		i = skipBWS(line, i+1)
		j := skipToken(line, i)
		if j == i {
			return 0, false
		}
		i = j
		if k := skipBWS(line, i); k < len(line) && line[k] == '=' {
			i = skipBWS(line, k+1)
			if i < len(line) && line[i] == '"' {
				if i = skipQuoted(line, i); i < 0 {
					return 0, false
				}
			} else if j := skipToken(line, i); j == i {
				return 0, false
			} else {
				i = j
			}
		}
	}
	return n, true
}

func skipBWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	return i
}

func skipToken(b []byte, i int) int {
	for i < len(b) && tokenChar[b[i]] != 0 {
		i++
	}
	return i
}

// skipQuoted returns the index after the quoted-string at b[i], or -1.
func skipQuoted(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1
		case c == '\\':
			if i++; i == len(b) || !fieldVChar(b[i]) {
				return -1
			}
		case !fieldVChar(c):
			return -1
		}
	}
	return -1
}

// fieldVChar: HTAB, SP, VCHAR or obs-text.
func fieldVChar(c byte) bool { return c == '\t' || c >= 0x20 && c != 0x7f }
