package propagation

import (
	"net/url"
	"strings"
)

// W3C Baggage limits (Baggage, "Limits"): a platform must propagate at
// least this much, and tracehop reads no more.
const (
	MaxBaggageBytes   = 8192
	MaxBaggageMembers = 180
)

// BaggageHeader is the W3C Baggage header, as net/http writes it.
const BaggageHeader = "Baggage"

// RangeBaggage calls fn with the key and the percent-decoded value of each
// list-member of a W3C baggage value (every baggage field joined by ","),
// in order, and reports whether the value was well formed. A value that is
// not (a member off the spec's grammar, a bad percent escape, more than
// MaxBaggageBytes or MaxBaggageMembers) is ignored whole, as OpenTelemetry's
// propagators ignore it: fn is not called at all. Properties (";k=v") are
// checked and skipped. Strings given to fn alias v unless a value had to
// be decoded.
func RangeBaggage(v string, fn func(key, value string)) bool {
	if v == "" || len(v) > MaxBaggageBytes || !scanBaggage(v, nil) {
		return false
	}
	return scanBaggage(v, fn)
}

// scanBaggage walks v's members; with fn nil it only validates.
func scanBaggage(v string, fn func(key, value string)) bool {
	members := 0
	for rest, more := v, true; more; {
		var member string
		member, rest, more = strings.Cut(rest, ",")
		member = trimOWSString(member)
		if member == "" {
			// The grammar has no empty members; OpenTelemetry and the
			// spec's test suite refuse them too.
			return false
		}
		if members++; members > MaxBaggageMembers {
			return false
		}
		kv, props, _ := strings.Cut(member, ";")
		key, value, ok := strings.Cut(kv, "=")
		key, value = trimOWSString(key), trimOWSString(value)
		if !ok || !isTokenString(key) || !validBaggageValue(value) {
			return false
		}
		for props != "" {
			var p string
			p, props, _ = strings.Cut(props, ";")
			pk, pv, hasValue := strings.Cut(p, "=")
			if !isTokenString(trimOWSString(pk)) || hasValue && !validBaggageValue(trimOWSString(pv)) {
				return false
			}
		}
		if strings.IndexByte(value, '%') >= 0 {
			decoded, err := url.PathUnescape(value)
			if err != nil {
				return false
			}
			value = decoded
		}
		if fn != nil {
			fn(key, value)
		}
	}
	return true
}

// validBaggageValue reports whether s is *baggage-octet: printable ASCII
// but space, '"', ',', ';' and '\'.
func validBaggageValue(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == ',' || c == ';' || c == '\\' {
			return false
		}
	}
	return true
}

// tokenChar holds the bytes of an RFC 9110 token.
var tokenChar = func() (t [256]bool) {
	for c := range 256 {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("!#$%&'*+-.^_`|~", byte(c)) >= 0
	}
	return
}()

// isTokenString reports whether s is an RFC 9110 token.
func isTokenString(s string) bool {
	for i := 0; i < len(s); i++ {
		if !tokenChar[s[i]] {
			return false
		}
	}
	return s != ""
}

// trimOWSString removes optional whitespace (SP, HTAB) around s; by hand,
// as strings.Trim builds its set on every call.
func trimOWSString(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}
