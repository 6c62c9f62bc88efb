package propagation

import (
	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/internal/hexdigit"
)

// parseHex64 parses 1 to 16 hex digits (either case).
func parseHex64(s string) (uint64, bool) {
	if len(s) == 0 || len(s) > 16 {
		return 0, false
	}
	var v uint64
	for i := 0; i < len(s); i++ {
		d := hexdigit.Value(s[i])
		if d == hexdigit.Invalid {
			return 0, false
		}
		v = v<<4 | uint64(d)
	}
	return v, true
}

// parseTraceID parses 1 to 32 hex digits, right-aligned: 16 or fewer fill
// only the low half.
func parseTraceID(s string) (core.TraceID, bool) {
	if len(s) > 32 || len(s) == 0 {
		return core.TraceID{}, false
	}
	if len(s) <= 16 {
		lo, ok := parseHex64(s)
		return core.TraceID{Low: lo}, ok
	}
	hi, ok1 := parseHex64(s[:len(s)-16])
	lo, ok2 := parseHex64(s[len(s)-16:])
	return core.TraceID{High: hi, Low: lo}, ok1 && ok2
}

// appendHex64 writes 64 bits as 16 hex digits: the halves of a trace id
// that some formats write on their own (traceparent, Datadog's tid tag).
func appendHex64(dst []byte, v uint64) []byte { return core.SpanID(v).AppendHex(dst) }
