package sdk

import (
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tracehop/tracehop/core"
)

// The types a driver works with, re-exported from core so that a driver
// imports only sdk.
type (
	// Driver is the interface a driver implements; see core.Driver for
	// the lifecycle.
	Driver = core.Driver
	// Span is a finished span, read-only for the driver.
	Span = core.Span
	// TraceID is a 128-bit trace id.
	TraceID = core.TraceID
	// SpanID is a 64-bit span id.
	SpanID = core.SpanID
	// Tag is a span's key/value annotation.
	Tag = core.Tag
	// Event is a span's timestamped annotation.
	Event = core.Event
	// Endpoint is a span's remote side.
	Endpoint = core.Endpoint
	// Kind is a span's role in a remote call.
	Kind = core.Kind
	// HostInfo describes the tracehop process the driver reports for.
	HostInfo = core.HostInfo
	// Capabilities is what a driver's Configure declares.
	Capabilities = core.Capabilities
)

// The span kinds.
const (
	KindServer   = core.KindServer
	KindClient   = core.KindClient
	KindProducer = core.KindProducer
	KindConsumer = core.KindConsumer
	KindInternal = core.KindInternal
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
