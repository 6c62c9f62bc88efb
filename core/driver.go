package core

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Driver reports finished spans to one tracing back end (Zipkin, Datadog,
// ...). tracehop runs each driver in a plugin process of its own; driver
// authors implement this interface and hand it to sdk.Serve.
//
// Lifecycle:
//   - Configure is called once, first. It decodes and validates the driver's
//     own config strictly, starts the back end's client and says what the
//     back end can do. It should not wait on the collector: a collector that
//     is down must not stop tracehop from starting.
//   - Export is called any number of times after a successful Configure,
//     possibly from several goroutines at once. It returns nil only when the
//     back end has acknowledged every span of the batch (or the driver has
//     handed them to something that cannot lose them). The spans, their
//     slices and their strings belong to the caller and are valid only
//     until Export returns: a driver that keeps any of it longer keeps a
//     Span.Clone.
//   - Shutdown flushes anything buffered and releases the client. It is
//     idempotent, safe without Configure, and bounded by ctx. No Export
//     follows it.
type Driver interface {
	Configure(ctx context.Context, config []byte, host HostInfo) (Capabilities, error)
	Export(ctx context.Context, spans []Span) error
	Shutdown(ctx context.Context) error
}

// HostInfo tells a driver about the tracehop process it reports for.
type HostInfo struct {
	// Version is tracehop's version.
	Version string
	// DriverName is the name the driver was configured under
	// (tracing.driver.name).
	DriverName string
	NodeID     string
	Service    string
	Zone       string
}

// Propagation formats, as named in tracing.propagation and in
// Capabilities.Propagation.
const (
	FormatB3           = "b3"           // x-b3-* headers
	FormatB3Single     = "b3single"     // the single b3 header
	FormatTraceContext = "tracecontext" // W3C traceparent / tracestate
	FormatDatadog      = "datadog"      // x-datadog-*
	FormatOTTracer     = "ot-tracer"    // LightStep's ot-tracer-*
)

// Capabilities tells the host what a driver's back end can read and keep, so
// that the proxy propagates in formats the back end understands and the
// conformance kit compares at the precision the back end keeps.
type Capabilities struct {
	// Propagation lists the header formats the back end's own tracers read,
	// in order of preference.
	Propagation []string
	// TraceID128 is true when the back end keeps all 128 bits of a trace id;
	// false when it keeps only the low 64.
	TraceID128 bool
	// Precision is the smallest time unit the back end keeps (for example
	// time.Microsecond for Zipkin). Zero means nanoseconds.
	Precision time.Duration
	// SharedSpans asks for Zipkin's shared-span model (Envoy's
	// shared_span_context): an ingress span joins the calling client span,
	// reusing its span id (and its parent), instead of being its child. The
	// proxy does this only when every configured driver asks for it, and
	// only with a B3 context that tracehop marked as a CLIENT span's (an
	// egress listener's, or spawn_upstream_span's): a SERVER span is never
	// joined.
	SharedSpans bool
	// SecretKeys are the dotted paths of the driver's config keys whose
	// values are secrets (sdk.Secret fields; sdk.Serve fills them in): the
	// host prints them as [REDACTED] wherever it shows the config.
	SecretKeys []string
}

// ErrorClass says whether retrying a failed Export can help.
type ErrorClass int

// The error classes. An error a driver returns without a class is treated as
// retryable by Export: losing spans to a transient fault is worse than a
// bounded retry of a bad batch.
const (
	ClassRetryable ErrorClass = iota
	ClassPermanent
)

type classedError struct {
	err   error
	class ErrorClass
	// after is the delay the back end asked for before the next attempt
	// (RetryAfter); zero when it did not ask.
	after time.Duration
}

func (e *classedError) Error() string { return e.err.Error() }
func (e *classedError) Unwrap() error { return e.err }

// Retryable marks err as transient (collector unreachable, 5xx, 429): the
// host will send the batch again after a backoff.
func Retryable(err error) error {
	if err == nil {
		return nil
	}
	return &classedError{err: err, class: ClassRetryable}
}

// Permanent marks err as final (the collector refused the data as invalid):
// the host drops the batch, counts it and logs it.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &classedError{err: err, class: ClassPermanent}
}

// RetryAfter marks err as transient and says the back end asked for d to pass
// before the next attempt (HTTP Retry-After, gRPC RetryInfo): the host waits
// at least d instead of its own backoff, or drops the batch when d would
// outlast its retry budget. A d of zero or less is plain Retryable.
func RetryAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &classedError{err: err, class: ClassRetryable, after: max(d, 0)}
}

// RetryDelay returns the delay err was marked with by RetryAfter, or zero.
func RetryDelay(err error) time.Duration {
	var ce *classedError
	if errors.As(err, &ce) && ce.class == ClassRetryable {
		return ce.after
	}
	return 0
}

// PartialRejection is what Export returns when the back end took the batch
// but refused some of its spans (OTLP's partial success): the batch is not
// sent again, Rejected spans are counted as dropped (rejected) and the rest
// as exported, and Message, the back end's explanation, is logged. It is an
// error only so that it fits Export's signature; retrying cannot help.
type PartialRejection struct {
	// Rejected is the number of spans the back end refused; zero with a
	// Message is a warning about an accepted batch.
	Rejected int
	// Message is the back end's own explanation, logged as it is.
	Message string
}

func (p *PartialRejection) Error() string {
	if p.Message == "" {
		return fmt.Sprintf("back end rejected %d spans of the batch", p.Rejected)
	}
	return fmt.Sprintf("back end rejected %d spans of the batch: %s", p.Rejected, p.Message)
}

// PartiallyRejected returns the PartialRejection that Export returns when
// the back end accepted a batch except for rejected spans, or only warned
// (rejected 0, a message). It returns nil when there is nothing to report,
// so that a driver may return it unconditionally.
func PartiallyRejected(rejected int, message string) error {
	if rejected <= 0 && message == "" {
		return nil
	}
	return &PartialRejection{Rejected: max(rejected, 0), Message: message}
}

// AsPartialRejection returns the PartialRejection in err's chain, or nil.
func AsPartialRejection(err error) *PartialRejection {
	var p *PartialRejection
	if errors.As(err, &p) {
		return p
	}
	return nil
}

// ClassOf returns the class err was marked with, and false when it was not
// marked at all.
func ClassOf(err error) (ErrorClass, bool) {
	var ce *classedError
	if errors.As(err, &ce) {
		return ce.class, true
	}
	return ClassRetryable, false
}

// IsPermanent reports whether err was marked Permanent.
func IsPermanent(err error) bool {
	c, ok := ClassOf(err)
	return ok && c == ClassPermanent
}

type batchIDKey struct{}

// WithBatchID returns a context that carries the id of the batch being
// exported. The pipeline sets it, and keeps it when it re-sends a batch, so
// that a driver whose back end cannot deduplicate may do so itself.
func WithBatchID(ctx context.Context, id uint64) context.Context {
	return context.WithValue(ctx, batchIDKey{}, id)
}

// BatchID returns the batch id set by WithBatchID, or 0.
func BatchID(ctx context.Context) uint64 {
	id, _ := ctx.Value(batchIDKey{}).(uint64)
	return id
}
