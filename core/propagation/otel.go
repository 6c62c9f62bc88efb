package propagation

import (
	"bytes"
	"strings"
)

// OTelSampling is what the ot member of a tracestate says about sampling
// (OpenTelemetry's "TraceState: Probability Sampling"): th, the rejection
// threshold the trace was kept at, and rv, explicit randomness that
// stands in for the trace id's when its W3C random flag is not set. Both
// are 56-bit numbers.
type OTelSampling struct {
	Threshold     uint64
	HasThreshold  bool
	Randomness    uint64
	HasRandomness bool
}

// otMember finds the ot member of a tracestate (as Context.TraceState
// holds it: cleaned, one member per key): its value, and where the whole
// member starts and ends.
func otMember(ts string) (value string, start, end int, ok bool) {
	for pos := 0; pos < len(ts); {
		e := strings.IndexByte(ts[pos:], ',')
		if e < 0 {
			e = len(ts)
		} else {
			e += pos
		}
		if strings.HasPrefix(ts[pos:e], "ot=") {
			return ts[pos+3 : e], pos, e, true
		}
		pos = e + 1
	}
	return "", 0, 0, false
}

// ParseOTelSampling reads th and rv from the ot member of a tracestate. A
// th that is not 1 to 14 hex digits, or an rv that is not exactly 14,
// counts as absent.
func ParseOTelSampling(ts string) OTelSampling {
	var o OTelSampling
	v, _, _, ok := otMember(ts)
	if !ok {
		return o
	}
	for v != "" {
		kv, rest, _ := strings.Cut(v, ";")
		v = rest
		switch k, val, _ := strings.Cut(kv, ":"); k {
		case "th":
			if n, ok := parseHex64(val); ok && len(val) <= 14 {
				o.Threshold, o.HasThreshold = n<<(4*(14-len(val))), true
			}
		case "rv":
			if n, ok := parseHex64(val); ok && len(val) == 14 {
				o.Randomness, o.HasRandomness = n, true
			}
		}
	}
	return o
}

// AppendThreshold appends a threshold as th writes it: 14 hex digits with
// the trailing zeros dropped, "0" for 0 (keep everything).
func AppendThreshold(dst []byte, th uint64) []byte {
	if th == 0 {
		return append(dst, '0')
	}
	const digits = "0123456789abcdef"
	var b [14]byte
	for i := 13; i >= 0; i-- {
		b[i] = digits[th&0xf]
		th >>= 4
	}
	n := 14
	for b[n-1] == '0' {
		n--
	}
	return append(dst, b[:n]...)
}

// AppendTraceStateThreshold appends to dst the tracestate ts with the ot
// member's th set to th (set), or removed (!set): the ot member first, as
// W3C asks of a member a vendor changes, with its other sub-keys (rv, ...)
// after th in their order; the other members after it in theirs. An ot
// member left empty is dropped. Should the result pass 512 characters,
// members are dropped from the right until it does not (the ot member,
// being first, stays).
func AppendTraceStateThreshold(dst []byte, ts string, th uint64, set bool) []byte {
	start := len(dst)
	v, ms, me, ok := otMember(ts)
	wrote := false
	if set || ok {
		dst = append(dst, "ot="...)
		if set {
			dst = append(dst, "th:"...)
			dst = AppendThreshold(dst, th)
			wrote = true
		}
		for v != "" {
			kv, r, _ := strings.Cut(v, ";")
			v = r
			if kv == "" || strings.HasPrefix(kv, "th:") || kv == "th" {
				continue
			}
			if wrote {
				dst = append(dst, ';')
			}
			dst = append(dst, kv...)
			wrote = true
		}
		if !wrote {
			dst = dst[:start] // an empty ot member is not written
		}
	}
	// The other members, in order, without the old ot member.
	for pos := 0; pos < len(ts); {
		e := strings.IndexByte(ts[pos:], ',')
		if e < 0 {
			e = len(ts)
		} else {
			e += pos
		}
		if !(ok && pos == ms && e == me) && e > pos {
			if len(dst) > start {
				dst = append(dst, ',')
			}
			dst = append(dst, ts[pos:e]...)
		}
		pos = e + 1
	}
	for len(dst)-start > maxTraceStateLen {
		i := bytes.LastIndexByte(dst[start:], ',')
		if i < 0 {
			break
		}
		dst = dst[:start+i]
	}
	return dst
}
