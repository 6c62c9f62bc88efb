package driverpb

import (
	"errors"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/core/wire"
)

// How errors travel (driver.proto says the same): a driver's retryable
// failure is ABORTED, with the delay its back end asked for (core.RetryAfter)
// as a google.rpc.RetryInfo detail; a permanent one is FAILED_PRECONDITION;
// a refused config is INVALID_ARGUMENT, with each problem of a
// wire.ConfigError as a google.rpc.BadRequest field violation. A partial
// rejection is no error on the wire: it is the ExportResponse's
// rejected_spans and rejected_message. UNAVAILABLE is left to the
// transport: it means the connection or the driver process is gone.
//
// The driver side (sdk) turns errors into statuses with ErrorStatus,
// ConfigureStatus and ExportResult; the host side (core/driverhost) turns
// them back with ExportError, ConfigureError and Unreachable.

// ErrorStatus returns the status a driver's error travels as: ABORTED, with
// a RetryInfo detail when err carries a delay, unless err is marked
// core.Permanent, which is FAILED_PRECONDITION. An unmarked error is
// retryable (core.Driver's rule for Export).
func ErrorStatus(err error) error {
	if core.IsPermanent(err) {
		return status.Error(codes.FailedPrecondition, err.Error())
	}
	st := status.New(codes.Aborted, err.Error())
	if d := core.RetryDelay(err); d > 0 {
		if withDelay, derr := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(d)}); derr == nil {
			st = withDelay
		}
	}
	return st.Err()
}

// ExportResult returns what a driver's Export outcome travels as: a
// response when the back end took the batch (err nil, or a
// core.PartialRejection, whose count is capped at spans, the batch's
// size), else ErrorStatus(err).
func ExportResult(err error, spans int) (*ExportResponse, error) {
	if err == nil {
		return &ExportResponse{}, nil
	}
	if pr := core.AsPartialRejection(err); pr != nil {
		return &ExportResponse{RejectedSpans: uint32(min(pr.Rejected, spans)), RejectedMessage: pr.Message}, nil
	}
	return nil, ErrorStatus(err)
}

// ExportError is ExportResult's inverse, on the host: the core error an
// Export's response or status stands for, classed as the driver classed
// it. It is nil for a batch taken whole, a core.PartialRejection for one
// taken in part, core.RetryAfter with the driver's delay (or plain
// retryable) for a retryable failure, the transport's failures included,
// and core.Permanent for any other status. Its text is the driver's
// message, for the host to prefix with the driver's name.
func ExportError(resp *ExportResponse, err error) error {
	if err == nil {
		// nil when the driver reported no partial rejection
		return core.PartiallyRejected(int(resp.GetRejectedSpans()), resp.GetRejectedMessage())
	}
	st := status.Convert(err)
	switch st.Code() {
	case codes.Unavailable, codes.Aborted, codes.DeadlineExceeded, codes.Canceled, codes.ResourceExhausted, codes.Unknown, codes.Internal:
		return core.RetryAfter(errors.New(st.Message()), retryDelay(st))
	}
	return core.Permanent(errors.New(st.Message()))
}

// Unreachable reports whether err is the transport's UNAVAILABLE: the
// connection or the driver process is gone (the SDK never sends a driver's
// own error as UNAVAILABLE), so the host replaces the process.
func Unreachable(err error) bool { return status.Code(err) == codes.Unavailable }

// retryDelay is the delay a RetryInfo detail of st carries, or zero.
func retryDelay(st *status.Status) time.Duration {
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	return 0
}

// ConfigureStatus returns the status a driver's Configure error travels as:
// ABORTED for an error marked core.Retryable, else INVALID_ARGUMENT, with
// the keys of a *wire.ConfigError in its chain as BadRequest field
// violations, so that the host can say where in its YAML each problem is.
func ConfigureStatus(err error) error {
	if c, marked := core.ClassOf(err); marked && c == core.ClassRetryable {
		return status.Error(codes.Aborted, err.Error())
	}
	st := status.New(codes.InvalidArgument, err.Error())
	var ce *wire.ConfigError
	if errors.As(err, &ce) {
		br := &errdetails.BadRequest{}
		for _, p := range ce.Problems {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: p.Key, Description: p.Message})
		}
		if withDetails, derr := st.WithDetails(br); derr == nil {
			st = withDetails
		}
	}
	return st.Err()
}

// ConfigureError is ConfigureStatus's inverse, on the host: the
// *wire.ConfigError that driver's refused Configure stands for, with the
// driver's message and the problems its BadRequest detail names.
func ConfigureError(driver string, err error) *wire.ConfigError {
	st := status.Convert(err)
	ce := &wire.ConfigError{Driver: driver, Message: st.Message()}
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				ce.Problems = append(ce.Problems, wire.ConfigProblem{Key: v.GetField(), Message: v.GetDescription()})
			}
		}
	}
	return ce
}
