package core

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"time"
)

// TraceID is a 128-bit trace id. A 64-bit id from an older propagation
// format has High == 0.
type TraceID struct {
	High, Low uint64
}

// IsZero reports whether t is the invalid all-zero id.
func (t TraceID) IsZero() bool { return t.High == 0 && t.Low == 0 }

// String returns the id as 32 lowercase hex digits, the form every
// 128-bit-capable format (B3, W3C) uses.
func (t TraceID) String() string {
	var b [32]byte
	return string(appendHex64(appendHex64(b[:0], t.High), t.Low))
}

// AppendHex appends the id in lowercase hex as B3 and Zipkin write it: 32
// digits, or 16 for a 64-bit id (High == 0).
func (t TraceID) AppendHex(dst []byte) []byte {
	if t.High != 0 {
		dst = appendHex64(dst, t.High)
	}
	return appendHex64(dst, t.Low)
}

// SpanID is a 64-bit span id; 0 means "none" (a root span's parent).
type SpanID uint64

// String returns the id as 16 lowercase hex digits.
func (id SpanID) String() string {
	var b [16]byte
	return string(appendHex64(b[:0], uint64(id)))
}

// AppendHex appends the id as 16 lowercase hex digits, the form of every
// propagation format and back end.
func (id SpanID) AppendHex(dst []byte) []byte { return appendHex64(dst, uint64(id)) }

func appendHex64(dst []byte, v uint64) []byte {
	// Eight digits per 64-bit word, no table and no loop: ids are
	// written up to seven times per request (b3 and traceparent on the
	// way up, traceresponse). 14 ns an id here, against 19 digit by
	// digit (BenchmarkAppendHex64).
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], hexDigits8(uint32(v>>32)))
	binary.BigEndian.PutUint64(b[8:], hexDigits8(uint32(v)))
	return append(dst, b[:]...)
}

// hexDigits8 returns the 8 lowercase hex digits of v as the bytes of a
// word, the first digit in the most significant byte.
func hexDigits8(v uint32) uint64 {
	// Spread the nibbles one per byte: 0x12345678 -> 0x0102030405060708.
	x := uint64(v)
	x = (x | x<<16) & 0x0000ffff0000ffff
	x = (x | x<<8) & 0x00ff00ff00ff00ff
	x = (x | x<<4) & 0x0f0f0f0f0f0f0f0f
	// A byte over 9 gets bit 4 set by adding 6; those take 'a'-'0'-10
	// more on top of '0'. No byte carries into the next: each is at most
	// 0x0f+0x06.
	letters := (x + 0x0606060606060606) >> 4 & 0x0101010101010101
	return x + 0x3030303030303030 + letters*('a'-'0'-10)
}

// Kind says what role a span plays in a remote call. The numeric values
// match the wire protocol.
type Kind uint8

// The span kinds. KindUnspecified is turned into KindInternal by Sanitize.
const (
	KindUnspecified Kind = iota
	KindServer
	KindClient
	KindProducer
	KindConsumer
	KindInternal
)

var kindNames = [...]string{"unspecified", "server", "client", "producer", "consumer", "internal"}

// String returns the lowercase name of the kind, as tags and logs use it.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "invalid"
}

// ParentOrigin says where a span's parent came from. Back ends that mark a
// parent as remote (OTLP's span flags) need it, and only the proxy knows:
// the kind does not tell. An egress CLIENT span's parent is the
// application's span, in another process; a spawned upstream span's parent
// is tracehop's own span, in this one. The numeric values match the batch
// layout (core/wire).
type ParentOrigin uint8

// The parent origins.
const (
	// ParentUnknown: nothing is said. A root span has no parent to say
	// anything of; a span from a host that predates the field says
	// nothing either, and a driver then falls back to the kind (a SERVER
	// span's parent is remote, another's local).
	ParentUnknown ParentOrigin = iota
	// ParentLocal: the parent is a span of this same tracehop (the
	// ingress span a spawned upstream span continues).
	ParentLocal
	// ParentRemote: the parent's context came from another process: a
	// trace header on the request (a caller's span, or on an egress
	// listener the application's), or the ingress request that request-id
	// linking found, standing in for the header the application did not
	// forward.
	ParentRemote
)

var parentOriginNames = [...]string{"unknown", "local", "remote"}

// String returns the lowercase name of the origin.
func (o ParentOrigin) String() string {
	if int(o) < len(parentOriginNames) {
		return parentOriginNames[o]
	}
	return "invalid"
}

// Tag is one key/value annotation of a span. Spans keep tags in a slice, not
// a map, so that their order survives and building them costs no map.
type Tag struct {
	Key, Value string
}

// Event is a timestamped annotation within a span (Zipkin's annotation,
// OpenTracing's log).
type Event struct {
	// UnixNano is the event's wall-clock time in nanoseconds since the epoch.
	UnixNano int64
	Value    string
}

// Endpoint is the remote side of a span: the upstream of a client span, the
// downstream of a server span.
type Endpoint struct {
	Service string
	IP      netip.Addr
	Port    uint16
}

// IsZero reports whether nothing is known of the endpoint.
func (e Endpoint) IsZero() bool { return e.Service == "" && !e.IP.IsValid() && e.Port == 0 }

// Span is a finished span: everything a driver needs to report it. The proxy
// builds it, the pipeline copies it into its queue, and drivers must treat
// it (and the slices it holds) as read-only, since the same span is handed
// to every configured driver.
type Span struct {
	TraceID  TraceID
	SpanID   SpanID
	ParentID SpanID // 0 for a root span
	Name     string
	Kind     Kind
	// LocalService is the service this span was recorded for (Zipkin's
	// localEndpoint.serviceName, Datadog's service).
	LocalService string
	// StartUnixNano is the wall-clock start in nanoseconds since the epoch.
	StartUnixNano int64
	Duration      time.Duration
	Tags          []Tag
	Events        []Event
	Remote        Endpoint
	Error         bool
	Sampled       bool
	Debug         bool
	// Shared marks a server span that reuses its client's span id
	// (Zipkin's shared-span model).
	Shared bool
	// ParentOrigin says where the parent (ParentID) came from: from
	// another process, or from this tracehop.
	ParentOrigin ParentOrigin
	// TraceState is the W3C tracestate of the span's context, as tracehop
	// propagates it ("" for none): OTLP's span.trace_state, where
	// OpenTelemetry's ot=th:... says what the span was sampled at (its
	// adjusted count). A driver whose back end has no such notion ignores
	// it.
	TraceState string
}

// Clone returns a deep copy of s, with tags, events and strings of its own.
// Code that keeps a span after the call that handed it over (Export, a
// sink's Enqueue) must keep a clone: the pipeline and the proxy reuse the
// memory of the spans they hand out.
func (s *Span) Clone() Span {
	c := *s
	c.Name, c.LocalService = strings.Clone(s.Name), strings.Clone(s.LocalService)
	c.Remote.Service = strings.Clone(s.Remote.Service)
	c.TraceState = strings.Clone(s.TraceState)
	if s.Tags != nil {
		c.Tags = make([]Tag, len(s.Tags))
		for i, t := range s.Tags {
			c.Tags[i] = Tag{Key: strings.Clone(t.Key), Value: strings.Clone(t.Value)}
		}
	}
	if s.Events != nil {
		c.Events = make([]Event, len(s.Events))
		for i, e := range s.Events {
			c.Events[i] = Event{UnixNano: e.UnixNano, Value: strings.Clone(e.Value)}
		}
	}
	return c
}

// Start returns the span's start as a time.Time.
func (s *Span) Start() time.Time { return time.Unix(0, s.StartUnixNano) }

// End returns the span's end as a time.Time.
func (s *Span) End() time.Time { return time.Unix(0, s.StartUnixNano+int64(s.Duration)) }

// Tag returns the value of the first tag named key.
func (s *Span) Tag(key string) (string, bool) {
	for _, t := range s.Tags {
		if t.Key == key {
			return t.Value, true
		}
	}
	return "", false
}

// Sanitize clamps values that every vendor library chokes on, so that one bad
// span never poisons a batch: a negative duration becomes 0, a start missing
// or within the epoch's first microsecond (0 to a microsecond back end, which
// Zipkin refuses) becomes now, an event time likewise becomes the start, an
// unknown kind becomes internal, a parent origin without a parent (or out
// of range) becomes unknown. It is applied to every span before a driver
// sees it.
func (s *Span) Sanitize(now func() time.Time) {
	if s.Duration < 0 {
		s.Duration = 0
	}
	if s.StartUnixNano < int64(time.Microsecond) {
		s.StartUnixNano = now().UnixNano() - int64(s.Duration)
		if s.StartUnixNano < int64(time.Microsecond) { // an absurd duration
			s.StartUnixNano = now().UnixNano()
		}
	}
	if s.Kind == KindUnspecified || s.Kind > KindInternal {
		s.Kind = KindInternal
	}
	if s.ParentID == 0 || s.ParentOrigin > ParentRemote {
		s.ParentOrigin = ParentUnknown
	}
	for i := range s.Events {
		if s.Events[i].UnixNano < int64(time.Microsecond) {
			s.Events[i].UnixNano = s.StartUnixNano
		}
	}
}
