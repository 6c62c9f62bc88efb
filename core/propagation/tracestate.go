package propagation

import "strings"

// W3C tracestate limits (Trace Context, "tracestate Header Field Values"
// and "tracestate Limits").
const (
	maxTraceStateMembers  = 32
	maxTraceStateKey      = 256
	maxTraceStateValue    = 256
	maxTraceStateLen      = 512 // what tracehop propagates: the spec's "at least 512"
	largeTraceStateMember = 128 // truncating drops members longer than this first
	// maxTraceStateInput bounds the combined header tracehop parses at all:
	// 32 members of the longest key and value, with room for whitespace
	// and empty members. A longer one cannot be valid; it is dropped unread.
	maxTraceStateInput = maxTraceStateMembers*(maxTraceStateKey+1+maxTraceStateValue+1) + 1024
)

// tsMember is one list-member of a tracestate value: offsets of the member
// (without surrounding whitespace) and of its '='.
type tsMember struct{ start, eq, end int }

func (m tsMember) len() int { return m.end - m.start }

// cleanTraceState returns the tracestate to send on from a combined header
// value (every tracestate field joined by ","):
//   - "" when it is empty, or invalid by the spec's grammar and limits
//     (a malformed member, more than 32 members): the whole header is
//     dropped, as a vendor that cannot parse it must;
//   - else its members without optional whitespace, empty members or a
//     repeated key (the first, leftmost and so most recent, entry of a key
//     is kept; the spec lets a vendor drop foreign duplicates), truncated to
//     512 characters by whole members: those over 128 characters go first,
//     then members from the right, as the spec says.
//
// When the value is already all that, which is the common case, it is
// returned as it is, without a copy.
func cleanTraceState(v string) string {
	if v == "" || len(v) > maxTraceStateInput {
		return ""
	}
	var ms [maxTraceStateMembers]tsMember
	n := 0
	canonical := true
	for pos := 0; pos <= len(v); {
		end := strings.IndexByte(v[pos:], ',')
		if end < 0 {
			end = len(v)
		} else {
			end += pos
		}
		s, e := pos, end
		for s < e && (v[s] == ' ' || v[s] == '\t') {
			s++
		}
		for e > s && (v[e-1] == ' ' || v[e-1] == '\t') {
			e--
		}
		if s != pos || e != end {
			canonical = false
		}
		pos = end + 1
		if s == e { // an empty list-member: allowed, and not sent on
			canonical = false
			continue
		}
		eq := strings.IndexByte(v[s:e], '=')
		if eq < 0 {
			return ""
		}
		eq += s
		if !validTraceStateKey(v[s:eq]) || !validTraceStateValue(v[eq+1:e]) {
			return ""
		}
		dup := false
		for _, m := range ms[:n] {
			if v[m.start:m.eq] == v[s:eq] {
				dup = true
				break
			}
		}
		if dup {
			canonical = false
			continue
		}
		if n == maxTraceStateMembers {
			return ""
		}
		ms[n] = tsMember{start: s, eq: eq, end: e}
		n++
	}
	if n == 0 {
		return ""
	}
	total := n - 1 // the commas
	for _, m := range ms[:n] {
		total += m.len()
	}
	if canonical && total <= maxTraceStateLen {
		return v
	}
	var drop [maxTraceStateMembers]bool
	kept := n
	remove := func(i int) {
		drop[i] = true
		kept--
		total -= ms[i].len()
		if kept > 0 {
			total-- // its comma
		} else {
			total = 0
		}
	}
	for i := n - 1; i >= 0 && total > maxTraceStateLen; i-- {
		if ms[i].len() > largeTraceStateMember {
			remove(i)
		}
	}
	for i := n - 1; i >= 0 && total > maxTraceStateLen; i-- {
		if !drop[i] {
			remove(i)
		}
	}
	if kept == 0 {
		return ""
	}
	b := make([]byte, 0, total)
	for i, m := range ms[:n] {
		if drop[i] {
			continue
		}
		if len(b) > 0 {
			b = append(b, ',')
		}
		b = append(b, v[m.start:m.end]...)
	}
	return string(b)
}

// validTraceStateKey checks key = ( lcalpha / DIGIT ) 0*255( keychar ),
// keychar = lcalpha / DIGIT / "_" / "-" / "*" / "/" / "@". (Level 1's
// tenant@system limits are gone from the spec and its test suite: "@" may
// stand anywhere but first.)
func validTraceStateKey(k string) bool {
	if len(k) == 0 || len(k) > maxTraceStateKey {
		return false
	}
	if c := k[0]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
		return false
	}
	for i := 1; i < len(k); i++ {
		switch c := k[i]; {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case c == '_', c == '-', c == '*', c == '/', c == '@':
		default:
			return false
		}
	}
	return true
}

// validTraceStateValue checks value = 0*255(chr) nblk-chr: 1 to 256
// printable ASCII characters other than "," and "=", not ending in a space.
func validTraceStateValue(v string) bool {
	if len(v) == 0 || len(v) > maxTraceStateValue || v[len(v)-1] == ' ' {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c > 0x7e || c == ',' || c == '=' {
			return false
		}
	}
	return true
}
