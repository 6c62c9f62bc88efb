package proxy

import (
	"net/url"
	"strconv"
	"sync"
	"unsafe"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/internal/hexdigit"
)

// spanBuf is the memory finish builds a span's tags in, reused request
// after request: a fast-path connection has its own, the net/http path
// takes one from spanBufs.
type spanBuf struct {
	tags  []core.Tag
	utags []core.Tag // the upstream span's, when they differ
	// state holds the tracestate begin writes (ot=th:...) for the request
	// in flight: what it sends upstream and the span's.
	state []byte
	// text holds the strings made for tags. Its capacity is reserved by
	// reset before any string is made, and a string that does not fit is
	// allocated instead, so appending never moves what a tag points at.
	text []byte
}

var spanBufs = sync.Pool{New: func() any { return new(spanBuf) }}

// Most strings a span's tags need fit in this many bytes; a request with
// a longer URL gets it allocated rather than grow every connection's buffer.
const maxSpanText = 4 << 10

// reset empties the buffer and makes sure it can hold need bytes of text.
func (sb *spanBuf) reset(need int) {
	if cap(sb.text) < need && need <= maxSpanText {
		sb.text = make([]byte, 0, max(need, 512))
	}
	sb.text = sb.text[:0]
}

// concat returns a+b+c, in the buffer when they fit.
func (sb *spanBuf) concat(a, b, c string) string {
	n := len(a) + len(b) + len(c)
	if cap(sb.text)-len(sb.text) < n {
		return a + b + c
	}
	start := len(sb.text)
	sb.text = append(append(append(sb.text, a...), b...), c...)
	return unsafe.String(&sb.text[start], n)
}

// view returns the text appended since start, without a copy.
func (sb *spanBuf) view(start int) string {
	if len(sb.text) == start {
		return ""
	}
	return unsafe.String(&sb.text[start], len(sb.text)-start)
}

// int returns v in decimal, in the buffer when it fits.
func (sb *spanBuf) int(v int64) string {
	if cap(sb.text)-len(sb.text) < 20 {
		return strconv.FormatInt(v, 10)
	}
	start := len(sb.text)
	if v < 0 {
		sb.text = strconv.AppendInt(sb.text, v, 10)
	} else {
		sb.text = appendDecimal(sb.text, uint64(v))
	}
	return unsafe.String(&sb.text[start], len(sb.text)-start)
}

// appendDecimal appends v in decimal: the sizes of a span's request and
// response, two per traced request, where strconv.AppendInt took about
// 170 instructions for a 3-digit number (callgrind, make bench-instr) and
// this about a third of that.
func appendDecimal(dst []byte, v uint64) []byte {
	if v < 10 {
		return append(dst, byte('0'+v))
	}
	var b [20]byte
	i := len(b)
	for v >= 10 {
		q := v / 10
		i--
		b[i] = byte('0' + v - q*10)
		v = q
	}
	i--
	b[i] = byte('0' + v)
	return append(dst, b[i:]...)
}

// unescape percent-decodes s (%XX escapes only, as url.PathUnescape: a
// '+' stays), in the buffer when it fits; false when an escape is
// malformed.
func (sb *spanBuf) unescape(s string) (string, bool) {
	if cap(sb.text)-len(sb.text) < len(s) {
		d, err := url.PathUnescape(s)
		return d, err == nil
	}
	start := len(sb.text)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' {
			if i+2 >= len(s) {
				sb.text = sb.text[:start]
				return "", false
			}
			hi, lo := hexdigit.Value(s[i+1]), hexdigit.Value(s[i+2])
			if hi == hexdigit.Invalid || lo == hexdigit.Invalid {
				sb.text = sb.text[:start]
				return "", false
			}
			c = hi<<4 | lo
			i += 2
		}
		sb.text = append(sb.text, c)
	}
	return sb.view(start), true
}

// str views b as a string without a copy; it is valid while b is.
func str(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
