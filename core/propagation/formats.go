package propagation

import (
	"strconv"
	"strings"

	"github.com/tracehop/tracehop/core"
)

// Canonical header keys (net/http canonicalizes incoming headers).
const (
	hB3TraceID      = "X-B3-Traceid"
	hB3SpanID       = "X-B3-Spanid"
	hB3ParentSpanID = "X-B3-Parentspanid"
	hB3Sampled      = "X-B3-Sampled"
	hB3Flags        = "X-B3-Flags"
	hB3             = "B3"
	hTraceparent    = "Traceparent"
	hTracestate     = "Tracestate"
	hDDTraceID      = "X-Datadog-Trace-Id"
	hDDParentID     = "X-Datadog-Parent-Id"
	hDDPriority     = "X-Datadog-Sampling-Priority"
	hDDOrigin       = "X-Datadog-Origin"
	hDDTags         = "X-Datadog-Tags"
	hOTTraceID      = "Ot-Tracer-Traceid"
	hOTSpanID       = "Ot-Tracer-Spanid"
	hOTSampled      = "Ot-Tracer-Sampled"
	// hClientSpan is tracehop's addition to B3 for Zipkin's shared spans:
	// the span id of B3's context again, sent only when that span is a
	// CLIENT span, which the receiving server may then join. B3 cannot say
	// what kind of span it carries; joining a SERVER span would give two
	// SERVER spans one id.
	hClientSpan = "X-Tracehop-Client-Span"
)

func sampledFromBool(s string) Sampling {
	switch s {
	case "1", "true", "True", "TRUE":
		return SamplingYes
	case "0", "false", "False", "FALSE":
		return SamplingNo
	}
	return SamplingUnset
}

// Both B3 formats read both the single and the multi headers (single first,
// as Zipkin and Envoy do); each writes only its own.
var b3Multi = &Format{
	Name:    core.FormatB3,
	Headers: []string{hB3TraceID, hB3SpanID, hB3ParentSpanID, hB3Sampled, hB3Flags, hClientSpan},
	extract: extractB3,
	inject: func(h *Mutations, c Context) {
		setClientSpan(h, c)
		h.Del(hB3ParentSpanID)
		h.Del(hB3Flags)
		if c.Valid() {
			var buf [32]byte
			h.Set(hB3TraceID, c.TraceID.AppendHex(buf[:0]))
			h.Set(hB3SpanID, c.SpanID.AppendHex(buf[:0]))
			if c.ParentID != 0 {
				h.Set(hB3ParentSpanID, c.ParentID.AppendHex(buf[:0]))
			}
		}
		if c.Debug {
			h.SetString(hB3Flags, "1")
		}
		setSampling(h, hB3Sampled, c.Sampled, "1", "0")
	},
}

var b3Single = &Format{
	Name:    core.FormatB3Single,
	Headers: []string{hB3, hClientSpan},
	extract: extractB3,
	inject: func(h *Mutations, c Context) {
		setClientSpan(h, c)
		if !c.Valid() {
			switch {
			case c.Debug:
				h.SetString(hB3, "d")
			case c.Sampled == SamplingYes:
				h.SetString(hB3, "1")
			case c.Sampled == SamplingNo:
				h.SetString(hB3, "0")
			default:
				h.Del(hB3)
			}
			return
		}
		var buf [64]byte
		b := c.TraceID.AppendHex(buf[:0])
		b = append(b, '-')
		b = c.SpanID.AppendHex(b)
		switch {
		case c.Debug:
			b = append(b, "-d"...)
		case c.Sampled == SamplingYes:
			b = append(b, "-1"...)
		case c.Sampled == SamplingNo:
			b = append(b, "-0"...)
		}
		if c.ParentID != 0 && (c.Debug || c.Sampled != SamplingUnset) {
			b = append(b, '-')
			b = c.ParentID.AppendHex(b)
		}
		h.Set(hB3, b)
	},
}

// setClientSpan writes or removes hClientSpan: it names c's span only when
// c says it is a client span.
func setClientSpan(h *Mutations, c Context) {
	if c.Valid() && c.ClientSpan {
		var buf [16]byte
		h.Set(hClientSpan, c.SpanID.AppendHex(buf[:0]))
	} else {
		h.Del(hClientSpan)
	}
}

// extractB3 reads the single header first, then the multi headers; failing
// both, it returns whichever carried a bare sampling decision.
func extractB3(h Carrier) Context {
	c := extractB3Single(h)
	if !c.Valid() {
		multi := extractB3Multi(h)
		if !multi.Valid() && multi.Sampled == SamplingUnset {
			return c
		}
		c = multi
	}
	if c.Valid() {
		v := get(h, hClientSpan)
		id, ok := parseHex64(v)
		c.ClientSpan = ok && len(v) == 16 && core.SpanID(id) == c.SpanID
	}
	return c
}

func extractB3Multi(h Carrier) Context {
	var c Context
	c.Sampled = sampledFromBool(get(h, hB3Sampled))
	if get(h, hB3Flags) == "1" {
		c.Debug, c.Sampled = true, SamplingYes
	}
	tid, ok1 := parseTraceID(get(h, hB3TraceID))
	sid, ok2 := parseHex64(get(h, hB3SpanID))
	if ok1 && ok2 {
		c.TraceID, c.SpanID = tid, core.SpanID(sid)
		if pid, ok := parseHex64(get(h, hB3ParentSpanID)); ok {
			c.ParentID = core.SpanID(pid)
		}
	}
	return c
}

// extractB3Single parses b3: {trace}-{span}[-{sampled}[-{parent}]], or a
// bare decision (0, 1, d).
func extractB3Single(h Carrier) Context {
	v := get(h, hB3)
	var c Context
	switch v {
	case "", "-":
		return c
	case "0":
		c.Sampled = SamplingNo
		return c
	case "1":
		c.Sampled = SamplingYes
		return c
	case "d":
		c.Sampled, c.Debug = SamplingYes, true
		return c
	}
	// {trace}-{span}[-{sampled}[-{parent}]]
	tid, rest, _ := strings.Cut(v, "-")
	sid, rest, hasMore := strings.Cut(rest, "-")
	t, ok1 := parseTraceID(tid)
	s, ok2 := parseHex64(sid)
	if !ok1 || !ok2 || len(sid) != 16 || len(tid) != 16 && len(tid) != 32 {
		return Context{}
	}
	if hasMore {
		flag, parent, hasParent := strings.Cut(rest, "-")
		switch flag {
		case "1":
			c.Sampled = SamplingYes
		case "0":
			c.Sampled = SamplingNo
		case "d":
			c.Sampled, c.Debug = SamplingYes, true
		default:
			return Context{}
		}
		if hasParent {
			pid, ok := parseHex64(parent)
			if !ok || len(parent) != 16 {
				return Context{}
			}
			c.ParentID = core.SpanID(pid)
		}
	}
	c.TraceID, c.SpanID = t, core.SpanID(s)
	return c
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

var traceContext = &Format{
	Name:    core.FormatTraceContext,
	Headers: []string{hTraceparent, hTracestate},
	extract: extractTraceContext,
	inject: func(h *Mutations, c Context) {
		if !c.Valid() {
			h.Del(hTraceparent)
			h.Del(hTracestate)
			return
		}
		var buf [55]byte
		h.Set(hTraceparent, AppendTraceparent(buf[:0], c.TraceID, c.SpanID, c.Sampled == SamplingYes, c.Random))
		if c.TraceState != "" {
			h.SetString(hTracestate, c.TraceState)
		} else {
			h.Del(hTracestate)
		}
	},
}

// AppendTraceparent appends a version 00 traceparent value (W3C Trace
// Context): the trace id in 32 digits (a 64-bit one zero-extended), the
// span id, and the flags version 00 defines (the spec wants the others 0).
// W3C's traceresponse has the same form.
func AppendTraceparent(dst []byte, trace core.TraceID, span core.SpanID, sampled, random bool) []byte {
	dst = append(dst, "00-"...)
	dst = appendHex64(dst, trace.High)
	dst = appendHex64(dst, trace.Low)
	dst = append(dst, '-')
	dst = span.AppendHex(dst)
	var flags byte
	if sampled {
		flags |= flagSampled
	}
	if random {
		flags |= flagRandom
	}
	return append(dst, '-', '0', '0'+flags)
}

// The trace-flags bits tracehop knows: sampled (level 1) and random-trace-id
// (level 2).
const (
	flagSampled = 0x01
	flagRandom  = 0x02
)

// extractTraceContext reads traceparent, and tracestate only when
// traceparent is valid (the spec forbids parsing it otherwise).
func extractTraceContext(h Carrier) Context {
	// Two traceparent fields make the header invalid: the spec's answer to
	// "which trace to continue?" is neither. GetJoined shows them as one
	// value with a comma, as an intermediary may have combined them (RFC
	// 9110 5.3); no traceparent of any version contains one.
	// Optional whitespace is trimmed: both HTTP paths do, a Carrier of
	// another origin may not.
	v := strings.Trim(h.GetJoined(hTraceparent), " \t")
	if len(v) > maxHeaderLen || strings.IndexByte(v, ',') >= 0 {
		return Context{}
	}
	// version-traceid-parentid-flags: 2+1+32+1+16+1+2 = 55; a future
	// version may append "-..." fields.
	if len(v) < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-' || (len(v) > 55 && (v[0:2] == "00" || v[55] != '-')) {
		return Context{}
	}
	version, tid, sid, flags := v[0:2], v[3:35], v[36:52], v[53:55]
	if version == "ff" || !isLowerHex(version) || !isLowerHex(tid) || !isLowerHex(sid) || !isLowerHex(flags) {
		return Context{}
	}
	t, _ := parseTraceID(tid)
	s, _ := parseHex64(sid)
	f, _ := parseHex64(flags)
	c := Context{TraceID: t, SpanID: core.SpanID(s), Sampled: SamplingNo}
	if !c.Valid() {
		return Context{}
	}
	if f&flagSampled != 0 {
		c.Sampled = SamplingYes
	}
	c.Random = f&flagRandom != 0
	c.TraceState = cleanTraceState(h.GetJoined(hTracestate))
	return c
}

const ddTIDTag = "_dd.p.tid="

var datadog = &Format{
	Name:    core.FormatDatadog,
	Headers: []string{hDDTraceID, hDDParentID, hDDPriority, hDDOrigin, hDDTags},
	extract: func(h Carrier) Context {
		var c Context
		if p := get(h, hDDPriority); p != "" {
			if n, err := strconv.Atoi(p); err == nil {
				c.Sampled = SamplingNo
				if n > 0 {
					c.Sampled = SamplingYes
				}
			}
		}
		lo, err1 := strconv.ParseUint(get(h, hDDTraceID), 10, 64)
		sid, err2 := strconv.ParseUint(get(h, hDDParentID), 10, 64)
		if err1 != nil || err2 != nil || lo == 0 || sid == 0 {
			return Context{Sampled: c.Sampled}
		}
		c.TraceID.Low, c.SpanID = lo, core.SpanID(sid)
		c.DatadogOrigin = get(h, hDDOrigin)
		var rest []string
		for _, tag := range strings.Split(get(h, hDDTags), ",") {
			if hex, ok := strings.CutPrefix(tag, ddTIDTag); ok {
				if hi, ok := parseHex64(hex); ok && len(hex) == 16 {
					c.TraceID.High = hi
				}
			} else if tag != "" {
				rest = append(rest, tag)
			}
		}
		c.DatadogTags = strings.Join(rest, ",")
		return c
	},
	inject: func(h *Mutations, c Context) {
		if !c.Valid() {
			h.Del(hDDTraceID)
			h.Del(hDDParentID)
			h.Del(hDDOrigin)
			h.Del(hDDTags)
		} else {
			var buf [20]byte
			h.Set(hDDTraceID, strconv.AppendUint(buf[:0], c.TraceID.Low, 10))
			h.Set(hDDParentID, strconv.AppendUint(buf[:0], uint64(c.SpanID), 10))
			if c.DatadogOrigin != "" {
				h.SetString(hDDOrigin, c.DatadogOrigin)
			} else {
				h.Del(hDDOrigin)
			}
			switch {
			case c.TraceID.High != 0:
				var tb [32]byte
				tags := appendHex64(append(tb[:0], ddTIDTag...), c.TraceID.High)
				if c.DatadogTags != "" {
					tags = append(tags, ',')
				}
				h.Set2(hDDTags, tags, c.DatadogTags)
			case c.DatadogTags != "":
				h.SetString(hDDTags, c.DatadogTags)
			default:
				h.Del(hDDTags)
			}
		}
		setSampling(h, hDDPriority, c.Sampled, "1", "0")
	},
}

var otTracer = &Format{
	Name:    core.FormatOTTracer,
	Headers: []string{hOTTraceID, hOTSpanID, hOTSampled},
	trace64: true,
	extract: func(h Carrier) Context {
		c := Context{Sampled: sampledFromBool(get(h, hOTSampled))}
		tid, ok1 := parseTraceID(get(h, hOTTraceID))
		sid, ok2 := parseHex64(get(h, hOTSpanID))
		if ok1 && ok2 {
			c.TraceID, c.SpanID = tid, core.SpanID(sid)
		}
		return c
	},
	inject: func(h *Mutations, c Context) {
		if c.Valid() {
			var buf [32]byte
			// LightStep keeps 64-bit trace ids: send the low half.
			h.Set(hOTTraceID, appendHex64(buf[:0], c.TraceID.Low))
			h.Set(hOTSpanID, c.SpanID.AppendHex(buf[:0]))
		} else {
			h.Del(hOTTraceID)
			h.Del(hOTSpanID)
		}
		setSampling(h, hOTSampled, c.Sampled, "true", "false")
	},
}

// setSampling writes a format's sampling header: yes or no, or none when
// the decision is deferred.
func setSampling(h *Mutations, name string, s Sampling, yes, no string) {
	switch s {
	case SamplingYes:
		h.SetString(name, yes)
	case SamplingNo:
		h.SetString(name, no)
	default:
		h.Del(name)
	}
}
