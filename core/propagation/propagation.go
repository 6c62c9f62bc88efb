package propagation

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/tracehop/tracehop/core"
)

// Sampling is a trace context's sampling decision: unset, yes or no.
type Sampling uint8

// The sampling states.
const (
	SamplingUnset Sampling = iota
	SamplingYes
	SamplingNo
)

// Context is the trace context carried between hops.
type Context struct {
	TraceID core.TraceID
	// SpanID is the sender's span: the parent of the receiver's span.
	SpanID core.SpanID
	// ParentID is the sender's own parent, where the format carries it
	// (B3); a receiver that joins the sender's span (shared spans) needs it.
	ParentID core.SpanID
	// Sampled is the sender's decision, if it made one. A context may carry
	// only a decision and no ids (b3: 0).
	Sampled Sampling
	// Debug asks for the trace to be kept (B3 flags: 1, b3: d).
	Debug bool
	// ClientSpan says SpanID is a CLIENT span, which the server it calls
	// may join (Zipkin's shared spans), rather than a SERVER span, which it
	// must be a child of. B3 carries it, in tracehop's
	// X-Tracehop-Client-Span header (the span id again, so that it cannot
	// be taken for another span's).
	ClientSpan bool
	// Random is W3C Trace Context level 2's random-trace-id flag: at least
	// the right-most 7 bytes of TraceID are random. It comes from a
	// traceparent that says so, and tracehop sets it on the traces it
	// starts; a receiver may sample or shard on those bytes.
	Random bool
	// Format names the format the context was extracted from.
	Format string
	// TraceState is W3C tracestate as it goes on: validated by the spec's
	// grammar (dropped whole when invalid), without whitespace, empty
	// members or repeated keys, and at most 512 characters. The only
	// member tracehop writes is OpenTelemetry's ot, for its th (consistent
	// probability sampling: AppendTraceStateThreshold).
	TraceState string
	// DatadogOrigin and DatadogTags are x-datadog-origin and the
	// x-datadog-tags other than _dd.p.tid, passed on unchanged.
	DatadogOrigin string
	DatadogTags   string
}

// Valid reports whether c names a span to continue.
func (c Context) Valid() bool { return !c.TraceID.IsZero() && c.SpanID != 0 }

// Format is one propagation format.
type Format struct {
	Name string
	// Headers lists the (canonical) headers the format uses.
	Headers []string
	// trace64 marks a format that carries only the low 64 bits of a trace
	// id (ot-tracer, as LightStep and Envoy read it).
	trace64 bool
	extract func(h Carrier) Context
	inject  func(m *Mutations, c Context)
}

// Carrier is where Extract reads a request's headers. HeaderCarrier adapts
// an http.Header; the proxy's HTTP/1.1 path reads its parsed request in
// place, so that extracting copies nothing.
type Carrier interface {
	// Get returns the first value of the header key (canonical, as
	// net/http writes it; a Carrier compares case-insensitively), or "".
	// The string need only stay valid until Extract returns: Extract
	// copies what it keeps.
	Get(key string) string
	// GetJoined returns every value of the header key joined by ",", as
	// HTTP allows for list headers (tracestate); it is also how a header
	// that must come once shows that it came twice (traceparent).
	GetJoined(key string) string
}

// HeaderCarrier reads an http.Header, which must use canonical keys.
type HeaderCarrier http.Header

// Get implements Carrier.
func (h HeaderCarrier) Get(key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// GetJoined implements Carrier.
func (h HeaderCarrier) GetJoined(key string) string {
	switch v := h[key]; len(v) {
	case 0:
		return ""
	case 1:
		return v[0]
	default:
		return strings.Join(v, ",")
	}
}

// maxHeaderLen bounds every trace header tracehop reads but tracestate
// (maxTraceStateInput); longer ones are ignored as hostile or broken.
const maxHeaderLen = 512

// get returns a header's first value, or "" when it is missing or too long.
func get(h Carrier, key string) string {
	v := h.Get(key)
	if len(v) > maxHeaderLen {
		return ""
	}
	return v
}

var formats = map[string]*Format{
	core.FormatB3:           b3Multi,
	core.FormatB3Single:     b3Single,
	core.FormatTraceContext: traceContext,
	core.FormatDatadog:      datadog,
	core.FormatOTTracer:     otTracer,
}

// Names lists every format tracehop implements.
func Names() []string {
	return []string{core.FormatB3, core.FormatB3Single, core.FormatTraceContext, core.FormatDatadog, core.FormatOTTracer}
}

// AllHeaders lists every header of every format: what an edge listener that
// does not trust its clients removes.
func AllHeaders() []string {
	var hs []string
	for _, n := range Names() {
		for _, h := range formats[n].Headers {
			if !slices.Contains(hs, h) {
				hs = append(hs, h)
			}
		}
	}
	return hs
}

// Propagator extracts and injects a configured list of formats.
type Propagator struct {
	formats []*Format
	// stale lists the headers of known formats this propagator does not
	// write; injecting removes them so no hop sees two contexts.
	stale []string
}

// New returns a propagator for the named formats, in order.
func New(names []string) (*Propagator, error) {
	p := &Propagator{}
	for _, n := range names {
		f, ok := formats[n]
		if !ok {
			return nil, fmt.Errorf("unknown propagation format %q (known: %s)", n, strings.Join(Names(), ", "))
		}
		if !slices.Contains(p.formats, f) {
			p.formats = append(p.formats, f)
		}
	}
	for _, h := range AllHeaders() {
		used := false
		for _, f := range p.formats {
			used = used || slices.Contains(f.Headers, h)
		}
		if !used {
			p.stale = append(p.stale, h)
		}
	}
	return p, nil
}

// TraceID128 reports whether every configured format carries all 128 bits
// of a trace id. When one does not (ot-tracer), a tracer must start 64-bit
// traces: a hop that reads that format would see only the low half of a
// longer id, and start a trace of its own.
func (p *Propagator) TraceID128() bool {
	for _, f := range p.formats {
		if f.trace64 {
			return false
		}
	}
	return true
}

// Formats returns the configured format names, in order.
func (p *Propagator) Formats() []string {
	names := make([]string, len(p.formats))
	for i, f := range p.formats {
		names[i] = f.Name
	}
	return names
}

// Extract returns the first valid context found, trying formats in order.
// When none has ids, it returns the first sampling decision found (with
// invalid ids) so that "b3: 0" still suppresses a trace.
func (p *Propagator) Extract(h http.Header) Context {
	return p.ExtractFrom(HeaderCarrier(h))
}

// ExtractFrom is Extract from any Carrier. Strings of the result
// (TraceState, DatadogOrigin, DatadogTags) may alias the carrier's memory;
// Context.Detach copies them.
func (p *Propagator) ExtractFrom(h Carrier) Context {
	var decision Context
	for i, f := range p.formats {
		c := f.extract(h)
		if c.Valid() {
			c.Format = f.Name
			p.complete(&c, h, i)
			return c
		}
		if decision.Sampled == SamplingUnset && c.Sampled != SamplingUnset {
			decision = Context{Sampled: c.Sampled, Debug: c.Debug}
		}
	}
	return decision
}

// complete fills in, from the formats configured after the one that won
// (formats[won]), what that one cannot carry, when they name the same span:
// the upper 64 bits of the trace id (ot-tracer, Datadog without _dd.p.tid)
// and W3C's random flag and tracestate. tracehop writes every configured
// format, so whichever the next hop reads first, it loses nothing of what
// the others carry.
func (p *Propagator) complete(c *Context, h Carrier, won int) {
	for _, f := range p.formats[won+1:] {
		if f != traceContext && c.TraceID.High != 0 {
			continue // it has nothing to add
		}
		o := f.extract(h)
		if !o.Valid() || o.SpanID != c.SpanID || o.TraceID.Low != c.TraceID.Low ||
			c.TraceID.High != 0 && o.TraceID.High != c.TraceID.High {
			continue
		}
		if c.TraceID.High == 0 {
			c.TraceID.High = o.TraceID.High
		}
		if f == traceContext {
			c.Random, c.TraceState = o.Random, o.TraceState
		}
	}
}

// Inject writes c in every configured format and removes the headers of the
// known formats it does not write.
func (p *Propagator) Inject(h http.Header, c Context) {
	var m Mutations
	p.InjectInto(&m, c)
	m.Apply(h)
}

// InjectInto records in m what Inject would do to a request's headers, for
// an HTTP layer that writes headers itself. It does not allocate.
func (p *Propagator) InjectInto(m *Mutations, c Context) {
	m.Reset()
	m.stale = p.stale
	for _, f := range p.formats {
		f.inject(m, c)
	}
}

// Detach copies the strings of c that may alias a Carrier's memory, so
// that c can outlive the request it was extracted from.
func (c *Context) Detach() {
	c.TraceState = strings.Clone(c.TraceState)
	c.DatadogOrigin = strings.Clone(c.DatadogOrigin)
	c.DatadogTags = strings.Clone(c.DatadogTags)
}

// Strip removes every trace header of every known format.
func Strip(h http.Header) {
	for _, k := range AllHeaders() {
		delete(h, k)
	}
}
