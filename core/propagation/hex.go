package propagation

import "github.com/tracehop/tracehop/core"

// parseHex64 parses 1 to 16 hex digits (either case).
func parseHex64(s string) (uint64, bool) {
	if len(s) == 0 || len(s) > 16 {
		return 0, false
	}
	var v uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
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

const hexDigits = "0123456789abcdef"

func appendHex64(dst []byte, v uint64) []byte {
	// One append of a filled array: appending digit by digit checks the
	// capacity 16 times, and this runs several times per request.
	var b [16]byte
	for i := 15; i >= 0; i-- {
		b[i] = hexDigits[v&0xf]
		v >>= 4
	}
	return append(dst, b[:]...)
}

// appendTraceID writes 32 hex digits, or 16 when the id has no upper half.
func appendTraceID(dst []byte, t core.TraceID) []byte {
	if t.High != 0 {
		dst = appendHex64(dst, t.High)
	}
	return appendHex64(dst, t.Low)
}
