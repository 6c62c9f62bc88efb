package zipkinmodel

import (
	"encoding/binary"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/tracehop/tracehop/sdk"
)

// AppendJSON appends s to dst as one Zipkin v2 JSON span: byte for byte
// what encoding/json writes for the model ToModel makes (zipkin-go's
// MarshalJSON), straight from the span. Going through the model (a tag map,
// reflection, a marshal per endpoint and annotation) cost the file driver
// about 15 µs per span. Unlike zipkin-go, it has no error case: a start
// within the epoch's first second, which zipkin-go refuses, is written as
// it is.
func AppendJSON(dst []byte, s *sdk.Span) []byte {
	var w tagPlan
	return w.appendJSON(dst, s)
}

// AppendJSONLines appends spans as JSON lines: each span as AppendJSON
// writes it, then a newline.
func AppendJSONLines(dst []byte, spans []sdk.Span) []byte {
	var p tagPlan
	for i := range spans {
		dst = append(p.appendJSON(dst, &spans[i]), '\n')
	}
	return dst
}

func (p *tagPlan) appendJSON(dst []byte, s *sdk.Span) []byte {
	dst = append(dst, '{')
	if ts := time.Unix(0, s.StartUnixNano).Round(time.Microsecond).UnixNano() / 1e3; ts != 0 {
		dst = append(dst, `"timestamp":`...)
		dst = strconv.AppendInt(dst, ts, 10)
		dst = append(dst, ',')
	}
	if d := jsonDuration(s.Duration); d != 0 {
		dst = append(dst, `"duration":`...)
		dst = strconv.AppendInt(dst, d, 10)
		dst = append(dst, ',')
	}
	dst = append(dst, `"traceId":"`...)
	dst = s.TraceID.AppendHex(dst)
	dst = append(dst, `","id":"`...)
	dst = s.SpanID.AppendHex(dst)
	dst = append(dst, '"')
	if s.ParentID != 0 {
		dst = append(dst, `,"parentId":"`...)
		dst = s.ParentID.AppendHex(dst)
		dst = append(dst, '"')
	}
	if s.Debug {
		dst = append(dst, `,"debug":true`...)
	}
	if s.Name != "" {
		dst = append(dst, `,"name":`...)
		dst = appendJSONString(dst, lower(utf8Safe(s.Name)))
	}
	if k := toKind[s.Kind]; k != "" {
		dst = append(dst, `,"kind":"`...)
		dst = append(dst, k...)
		dst = append(dst, '"')
	}
	if s.Shared {
		dst = append(dst, `,"shared":true`...)
	}
	if s.LocalService != "" {
		dst = append(dst, `,"localEndpoint":`...)
		dst = appendJSONEndpoint(dst, sdk.Endpoint{Service: s.LocalService})
	}
	if !s.Remote.IsZero() {
		dst = append(dst, `,"remoteEndpoint":`...)
		dst = appendJSONEndpoint(dst, s.Remote)
	}
	if len(s.Events) > 0 {
		dst = append(dst, `,"annotations":[`...)
		for i, e := range s.Events {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `{"timestamp":`...)
			dst = strconv.AppendInt(dst, time.Unix(0, e.UnixNano).Round(time.Microsecond).UnixNano()/1e3, 10)
			dst = append(dst, `,"value":`...)
			dst = appendJSONString(dst, e.Value)
			dst = append(dst, '}')
		}
		dst = append(dst, ']')
	}
	if len(s.Tags) > 0 || s.Error {
		dst = p.appendTags(dst, s)
	}
	return append(dst, '}')
}

// AppendJSONList appends spans as a JSON array, the payload zipkin-go's
// reporter.JSONSerializer writes for the models ToModel makes.
func AppendJSONList(dst []byte, spans []sdk.Span) []byte {
	var p tagPlan
	return appendList(dst, spans, p.appendJSON)
}

// appendList appends spans as a JSON array, each written by one.
func appendList(dst []byte, spans []sdk.Span, one func([]byte, *sdk.Span) []byte) []byte {
	dst = append(dst, '[')
	for i := range spans {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = one(dst, &spans[i])
	}
	return append(dst, ']')
}

// jsonDuration is the duration in microseconds as zipkin-go writes it:
// rounded, and at least 1 µs when there is any.
func jsonDuration(d time.Duration) int64 {
	switch {
	case d <= 0:
		return 0
	case d < time.Microsecond:
		return 1
	}
	return int64(d+500*time.Nanosecond) / 1e3
}

// lower is strings.ToLower without a copy for the usual ASCII lowercase.
func lower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= utf8.RuneSelf || 'A' <= c && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

func appendJSONEndpoint(dst []byte, e sdk.Endpoint) []byte {
	dst = append(dst, '{')
	comma := false
	field := func(name string) {
		if comma {
			dst = append(dst, ',')
		}
		dst = append(dst, name...)
		comma = true
	}
	if e.Service != "" {
		field(`"serviceName":`)
		dst = appendJSONString(dst, lower(utf8Safe(e.Service)))
	}
	if ip := e.IP.Unmap(); ip.Is4() {
		field(`"ipv4":"`)
		dst = append(ip.AppendTo(dst), '"')
	} else if ip.Is6() {
		field(`"ipv6":"`)
		dst = append(netip.AddrFrom16(ip.As16()).AppendTo(dst), '"')
	}
	if e.Port != 0 {
		field(`"port":`)
		dst = strconv.AppendUint(dst, uint64(e.Port), 10)
	}
	return append(dst, '}')
}

// tagPlan is how the last span's tags were written: which tag went where,
// behind which key, already quoted. A proxy's spans carry the same keys in
// the same order one after another, so within a batch the keys are sorted
// and checked for escaping once; the next span with the same keys (and the
// same error flag) only has its keys compared and its values written.
// Its strings alias the last span's, so a plan lives as long as the batch
// it is used for. The zero value is an empty plan.
type tagPlan struct {
	made  bool
	keys  []string // the last span's tag keys, as they came
	err   bool     // its Error flag
	steps []tagStep
	text  []byte // the steps' keys, quoted, with their colon
}

// tagStep writes one tag: the quoted key text[start:end] and the value of
// the span's tag at index tag (-1: error=true, added).
//
// It also keeps the value it wrote last, quoted: most of a proxy's tag
// values (component, node_id, the method, the protocol, the user agent,
// the cluster, the status, ...) are the same span after span, and
// comparing a value is cheaper than checking it for escaping again. A
// step whose values keep changing (a request id) stops keeping them after
// maxMisses in a row.
type tagStep struct {
	start, end, tag int
	kept            bool
	misses          uint8
	value, quoted   []byte
}

// How a tagStep gives up on values that keep changing, and the longest
// value it keeps. A step lives for one batch (the plan is the list or
// lines call's), so one that gives up stays given up until the next.
const (
	maxMisses    = 4
	maxKeptValue = 256
)

// appendTags writes the tags as the map ToModel builds: keys sorted as
// encoding/json sorts them, a later tag winning over an earlier one with
// the same key, and error=true added to an error span that lacks it.
func (p *tagPlan) appendTags(dst []byte, s *sdk.Span) []byte {
	if !p.same(s) {
		p.plan(s)
	}
	dst = append(dst, `,"tags":{`...)
	for i := range p.steps {
		st := &p.steps[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, p.text[st.start:st.end]...)
		if st.tag < 0 {
			dst = append(dst, `"true"`...)
			continue
		}
		v := s.Tags[st.tag].Value
		if st.kept && string(st.value) == v {
			dst = append(dst, st.quoted...)
			st.misses = 0
			continue
		}
		from := len(dst)
		dst = appendJSONString(dst, v)
		if st.kept {
			st.misses++
		}
		st.kept = st.misses < maxMisses && len(v) <= maxKeptValue
		if st.kept {
			st.value = append(st.value[:0], v...)
			st.quoted = append(st.quoted[:0], dst[from:]...)
		}
	}
	return append(dst, '}')
}

// same reports whether s has the keys and error flag of the span the plan
// was made for.
func (p *tagPlan) same(s *sdk.Span) bool {
	if !p.made || len(s.Tags) != len(p.keys) || s.Error != p.err {
		return false
	}
	for i := range s.Tags {
		if s.Tags[i].Key != p.keys[i] {
			return false
		}
	}
	return true
}

// plan sorts s's tag keys and quotes each once. The sort compares each
// key's first 8 bytes as one word (keyPrefix) and moves indexes, not tags.
func (p *tagPlan) plan(s *sdk.Span) {
	type entry struct {
		prefix uint64
		key    string
		tag    int
	}
	var small [32]entry
	var smallOrder [32]int
	tags, order := small[:0], smallOrder[:0]
	if len(s.Tags)+1 > len(small) {
		tags, order = make([]entry, 0, len(s.Tags)+1), make([]int, 0, len(s.Tags)+1)
	}
	p.made, p.keys = true, p.keys[:0]
	hasError := false
	for i, t := range s.Tags {
		p.keys = append(p.keys, t.Key)
		k := utf8Safe(t.Key)
		order = append(order, len(tags))
		tags = append(tags, entry{prefix: keyPrefix(k), key: k, tag: i})
		hasError = hasError || k == "error"
	}
	p.err = s.Error
	if s.Error && !hasError {
		order = append(order, len(tags))
		tags = append(tags, entry{prefix: keyPrefix("error"), key: "error", tag: -1})
	}
	less := func(a, b *entry) bool {
		if a.prefix != b.prefix {
			return a.prefix < b.prefix
		}
		return a.key < b.key
	}
	// A stable insertion sort: few tags, no allocation, and equal keys keep
	// their order so that the last one can win.
	for i := 1; i < len(order); i++ {
		for j := i; j > 0 && less(&tags[order[j]], &tags[order[j-1]]); j-- {
			order[j], order[j-1] = order[j-1], order[j]
		}
	}
	p.steps, p.text = p.steps[:0], p.text[:0]
	for i, o := range order {
		t := &tags[o]
		if i+1 < len(order) && tags[order[i+1]].key == t.key {
			continue
		}
		start := len(p.text)
		p.text = append(appendJSONString(p.text, t.key), ':')
		// A step's kept memory is reused from the plan before.
		if len(p.steps) < cap(p.steps) {
			p.steps = p.steps[:len(p.steps)+1]
		} else {
			p.steps = append(p.steps, tagStep{})
		}
		st := &p.steps[len(p.steps)-1]
		*st = tagStep{start: start, end: len(p.text), tag: t.tag, value: st.value[:0], quoted: st.quoted[:0]}
	}
}

// keyPrefix is the first 8 bytes of k as one big-endian word, padded with
// zeros: two keys whose prefixes differ order as their prefixes do (a
// shorter key's zeros sort it before any longer one that goes on from
// there with a byte above zero), and only keys with equal prefixes need
// comparing whole.
func keyPrefix(k string) uint64 {
	if len(k) >= 8 {
		return binary.BigEndian.Uint64(unsafe.Slice(unsafe.StringData(k), 8))
	}
	var p uint64
	for i := 0; i < len(k); i++ {
		p |= uint64(k[i]) << (56 - 8*i)
	}
	return p
}

// appendJSONString quotes s as encoding/json does (HTML characters, control
// characters, U+2028 and U+2029 escaped) for the string utf8Safe(s): each
// run of invalid UTF-8 becomes one U+FFFD. It reads s 8 bytes at a time
// while none of them needs a second look, and copies those runs whole:
// a proxy span's tags are plain ASCII, and a byte at a time (with a
// separate utf8.ValidString pass) was most of the file driver's CPU.
func appendJSONString(dst []byte, s string) []byte {
	if plainString(s) { // nearly every string of a proxy span
		dst = append(dst, '"')
		dst = append(dst, s...)
		return append(dst, '"')
	}
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	b := unsafe.Slice(unsafe.StringData(s), len(s))
	start := 0
	for i := 0; i < len(b); {
		for i+8 <= len(b) && plainJSON(binary.LittleEndian.Uint64(b[i:])) {
			i += 8
		}
		if i == len(b) {
			break
		}
		c := b[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '\\', '"':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			// As strings.ToValidUTF8: one U+FFFD for the whole run.
			dst = append(dst, s[start:i]...)
			dst = append(dst, "\uFFFD"...)
			for i++; i < len(b); i++ {
				if r, size := utf8.DecodeRuneInString(s[i:]); r != utf8.RuneError || size != 1 {
					break
				}
			}
			start = i
			continue
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xf])
			start = i + size
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// plainJSON reports whether none of the 8 bytes in x needs a second look
// in a JSON string: no control character, '"', '\\', '<', '>', '&', and
// nothing outside ASCII. Each test sets a byte's high bit (the first for a
// byte below 0x20, the others for a byte equal to the character); a byte
// at or above 0x80 has its own set. Written out, not with a helper, so
// that the compiler inlines it.
func plainJSON(x uint64) bool {
	const lsb, msb = 0x0101010101010101, 0x8080808080808080
	q, bs, lt, gt, amp := x^'"'*lsb, x^'\\'*lsb, x^'<'*lsb, x^'>'*lsb, x^'&'*lsb
	t := x | (x-0x20*lsb)&^x | (q-lsb)&^q | (bs-lsb)&^bs | (lt-lsb)&^lt | (gt-lsb)&^gt | (amp-lsb)&^amp
	return t&msb == 0
}

// plainString reports whether no byte of s needs a second look in a JSON
// string (plainJSON), reading it a word at a time: the tail of a string of
// 8 bytes or more as its last 8 bytes, a shorter string in one word
// padded with spaces.
func plainString(s string) bool {
	b := unsafe.Slice(unsafe.StringData(s), len(s))
	n := len(b)
	if n >= 8 {
		for i := 0; i+8 <= n; i += 8 {
			if !plainJSON(binary.LittleEndian.Uint64(b[i:])) {
				return false
			}
		}
		return plainJSON(binary.LittleEndian.Uint64(b[n-8:]))
	}
	if n >= 4 {
		return plainJSON(uint64(binary.LittleEndian.Uint32(b)) | uint64(binary.LittleEndian.Uint32(b[n-4:]))<<32)
	}
	x := uint64(0x2020202020202020)
	for i, c := range b {
		x = x&^(0xff<<(8*i)) | uint64(c)<<(8*i)
	}
	return plainJSON(x)
}
