package sdk

import (
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/core/wire"
)

// The types a driver works with, re-exported from core so that a driver
// imports only sdk. They are aliases: go doc shows core's definitions, so
// each comment here lists the fields a driver reads.
type (
	// Driver is the interface a driver implements:
	//
	//	Configure(ctx, raw []byte, host HostInfo) (Capabilities, error)
	//	Export(ctx, spans []Span) error
	//	Shutdown(ctx) error
	//
	// Configure is called once, before any Export: decode raw (JSON) with
	// DecodeConfig, create your client, and do not wait on the back end.
	// Export may be called concurrently; return nil only once the back end
	// took the whole batch, else an error marked Retryable, Permanent,
	// RetryAfter or PartiallyRejected; honour ctx's deadline. The spans are
	// valid only during the call. Shutdown flushes, is idempotent and is
	// safe without Configure.
	Driver = core.Driver
	// Span is a finished span, read-only (the same span goes to every
	// driver). Its fields:
	//
	//	TraceID       TraceID       // 128 bits (High, Low); High is 0 on a 64-bit trace
	//	SpanID        SpanID
	//	ParentID      SpanID        // 0 for a root span
	//	Name          string
	//	Kind          Kind          // KindServer, KindClient, ...; never KindUnspecified
	//	LocalService  string        // the service the span was recorded for
	//	StartUnixNano int64         // wall clock, ns since the epoch
	//	Duration      time.Duration // never negative
	//	Tags          []Tag         // in order; Envoy's names (see sdk/attrnames)
	//	Events        []Event       // timestamped annotations
	//	Remote        Endpoint      // the other side of the call, if known
	//	Error, Sampled, Debug bool
	//	Shared        bool          // a server span reusing its client's id (Zipkin)
	//	ParentOrigin  ParentOrigin  // where the parent came from: ParentRemote, ParentLocal, ParentUnknown
	//
	// and its methods Tag(key) (value, ok), Start() and End() time.Time.
	// Strings are the bytes tracehop saw (header values need not be UTF-8:
	// see ValidUTF8).
	Span = core.Span
	// TraceID is a 128-bit trace id: High and Low uint64. String() is the
	// 32 lowercase hex digits W3C's traceparent writes: High first,
	// big-endian (the kit checks your back end shows the same).
	TraceID = core.TraceID
	// SpanID is a 64-bit span id; String() is its 16 hex digits.
	SpanID = core.SpanID
	// Tag is a span's key/value annotation: Key, Value string.
	Tag = core.Tag
	// Event is a span's timestamped annotation: UnixNano int64 (wall
	// clock) and Value string.
	Event = core.Event
	// Endpoint is a span's remote side: Service string, IP netip.Addr (may
	// be invalid: unknown), Port uint16 (0: unknown); IsZero() when
	// nothing is known.
	Endpoint = core.Endpoint
	// Kind is a span's role in a remote call: the Kind* constants.
	Kind = core.Kind
	// ParentOrigin says where a span's parent came from: another process
	// (ParentRemote: a trace header, request-id linking) or this tracehop
	// (ParentLocal). ParentUnknown is a root span, or a host older than
	// the field: then fall back to the kind (a SERVER span's parent is
	// remote). Back ends that mark remote parents (OTLP's span flags) use
	// it; don't guess from the kind when it is set.
	ParentOrigin = core.ParentOrigin
	// HostInfo describes the tracehop process the driver reports for:
	// Version (tracehop's), DriverName (tracing.driver.name), NodeID,
	// Service and Zone (the config's node block).
	HostInfo = core.HostInfo
	// Capabilities is what Configure declares about the back end:
	//
	//	Propagation []string      // the Format* the back end's tracers read, preferred first
	//	TraceID128  bool          // all 128 bits kept (false: the low 64)
	//	Precision   time.Duration // the smallest time unit kept (0: ns)
	//	SharedSpans bool          // Zipkin's shared-span model
	//	SecretKeys  []string      // config keys to redact; sdk.Serve adds your Secret fields
	Capabilities = core.Capabilities
)

// The span kinds. The host never sends KindUnspecified (it is made
// KindInternal); it is there for drivers that map kinds both ways.
const (
	KindUnspecified = core.KindUnspecified
	KindServer      = core.KindServer
	KindClient      = core.KindClient
	KindProducer    = core.KindProducer
	KindConsumer    = core.KindConsumer
	KindInternal    = core.KindInternal
)

// The parent origins (Span.ParentOrigin).
const (
	ParentUnknown = core.ParentUnknown
	ParentLocal   = core.ParentLocal
	ParentRemote  = core.ParentRemote
)

// The propagation formats a driver may declare in Capabilities.Propagation.
const (
	FormatB3           = core.FormatB3
	FormatB3Single     = core.FormatB3Single
	FormatTraceContext = core.FormatTraceContext
	FormatDatadog      = core.FormatDatadog
	FormatOTTracer     = core.FormatOTTracer
)

// Retryable marks an Export error as transient: the host re-sends the batch
// after a backoff. Errors without a mark are treated as retryable.
func Retryable(err error) error { return core.Retryable(err) }

// Permanent marks an Export error as final: the host drops the batch and
// counts it. Use it when the back end refused the data itself.
func Permanent(err error) error { return core.Permanent(err) }

// RetryAfter marks an Export error as transient and passes on the delay the
// back end asked for before the next attempt (an HTTP Retry-After header, a
// gRPC RetryInfo detail): the host waits at least d instead of its own
// backoff, and drops the batch (counted as retries_exhausted) when d would
// outlast its retry budget (tracing.pipeline.retry_for).
func RetryAfter(err error, d time.Duration) error { return core.RetryAfter(err, d) }

// RetryDelay returns the delay an error was marked with by RetryAfter, or
// zero (a driver's tests use it to check what they pass on).
func RetryDelay(err error) time.Duration { return core.RetryDelay(err) }

// PartiallyRejected is what Export returns when the back end accepted the
// batch except for rejected spans (OTLP's partial success): the host does
// not re-send the batch, counts the rejected spans as dropped with reason
// "rejected" (tracehop_spans_dropped_total{reason="rejected"}), the rest as
// exported, and logs message, the back end's explanation. rejected 0 with a
// message is a warning about an accepted batch; with neither it returns
// nil, so Export may return it unconditionally.
func PartiallyRejected(rejected int, message string) error {
	return core.PartiallyRejected(rejected, message)
}

// PartialRejection is the value PartiallyRejected returns; see core.
type PartialRejection = core.PartialRejection

// AsPartialRejection returns the PartialRejection in err's chain, or nil:
// for a driver that sends a batch in parts and adds up what the back end
// refused of each.
func AsPartialRejection(err error) *PartialRejection { return core.AsPartialRejection(err) }

// BatchID returns the host's id for the batch being exported; a re-sent
// batch keeps its id.
var BatchID = core.BatchID

// IsPermanent reports whether err was marked Permanent (a driver's tests use
// it to check its error classes).
func IsPermanent(err error) bool { return core.IsPermanent(err) }

// ValidUTF8 returns s, or when s is not valid UTF-8 (header values need not
// be, and tracehop passes them on) a copy with each invalid byte sequence
// replaced by U+FFFD. Protobuf-based back ends refuse a whole batch for one
// such string: make strings valid where you encode them. It does not
// allocate for a valid string.
func ValidUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// TagKeyCount is how many well-known tag keys there are: the keys
// tracehop's proxy gives its spans (component, http.method, ...), numbered
// from 1 in docs/driver-protocol.md, section 4.5.
const TagKeyCount = wire.TagKeyCount

// TagKeyNumber returns the number of a well-known tag key when key is the
// SDK's own copy of it, as every key the host sent as a number is, and 0
// for any other string, even an equal one (a key written out: a custom tag
// called zone, or a batch from a host that numbers no keys). It looks at where the
// string lies, not at its bytes, so it costs a few instructions: a driver
// keeps work it does per key (a translation, a check) in an array indexed
// by it, and does it by name only for the other keys.
func TagKeyNumber(key string) int { return wire.TagKeyNumber(key) }

// TagKeyName returns the SDK's copy of well-known key number n (1 up to
// TagKeyCount), or "" for another n: what a driver fills its arrays from.
func TagKeyName(n int) string { return wire.TagKeyName(n) }

// WellKnownKey returns the SDK's copy of name when name is a well-known
// key, and name itself otherwise: for spans a driver's tests make by hand
// to carry keys as a decoded batch does.
func WellKnownKey(name string) string { return wire.WellKnown(name) }
