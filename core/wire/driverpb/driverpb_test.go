package driverpb_test

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/core/wire"
	"github.com/tracehop/tracehop/core/wire/driverpb"
)

// The generated code must be for the protocol version the handshake
// announces: a proto package bump without a ProtocolVersion bump (or the
// reverse) would let incompatible hosts and drivers talk. Its go_package
// must be this package, or make proto would write it elsewhere.
func TestProtocolVersionPinned(t *testing.T) {
	pkg := string(driverpb.File_driver_proto.Package())
	if want := "tracehop.driver.v1"; pkg != want || wire.ProtocolVersion != 1 {
		t.Fatalf("proto package %q, ProtocolVersion %d; want %q and 1", pkg, wire.ProtocolVersion, want)
	}
	svc := driverpb.File_driver_proto.Services().ByName("Driver")
	if svc == nil || svc.Methods().Len() != 3 {
		t.Fatalf("service Driver must have Configure, Export, Shutdown")
	}
	goPkg := driverpb.File_driver_proto.Options().(*descriptorpb.FileOptions).GetGoPackage()
	if want := "github.com/tracehop/tracehop/core/wire/driverpb"; goPkg != want {
		t.Fatalf("driver.proto's go_package is %q, want %q", goPkg, want)
	}
}

func TestCapabilitiesRoundTrip(t *testing.T) {
	for _, c := range []core.Capabilities{
		{Propagation: []string{"b3"}, TraceID128: true, Precision: time.Microsecond},
		{Propagation: []string{"datadog", "tracecontext"}, TraceID128: true, Precision: time.Nanosecond},
		{Propagation: []string{"ot-tracer"}, Precision: time.Millisecond},
		{Propagation: []string{"b3"}, TraceID128: true, Precision: time.Microsecond, SharedSpans: true},
	} {
		if got := driverpb.CapabilitiesFromWire(driverpb.CapabilitiesToWire(c)); !reflect.DeepEqual(got, c) {
			t.Errorf("got %+v, want %+v", got, c)
		}
	}
}

// A driver's Export outcome crosses the wire and comes back on the host
// with the class, delay and counts the driver gave it.
func TestExportOutcomeRoundTrip(t *testing.T) {
	type want struct {
		code      codes.Code // of the status; OK when a response travels
		nilErr    bool
		permanent bool
		delay     time.Duration
		rejected  int
	}
	for _, c := range []struct {
		name string
		err  error
		want want
	}{
		{"taken whole", nil, want{code: codes.OK, nilErr: true}},
		{"unmarked is retryable", errors.New("collector said 503"), want{code: codes.Aborted}},
		{"retryable", core.Retryable(errors.New("connection refused")), want{code: codes.Aborted}},
		{"retry after", core.RetryAfter(errors.New("429"), 1500*time.Millisecond), want{code: codes.Aborted, delay: 1500 * time.Millisecond}},
		{"retry after, wrapped", fmt.Errorf("post: %w", core.RetryAfter(errors.New("429"), time.Second)), want{code: codes.Aborted, delay: time.Second}},
		{"permanent", core.Permanent(errors.New("400 bad span")), want{code: codes.FailedPrecondition, permanent: true}},
		{"partial rejection", core.PartiallyRejected(2, "2 spans too old"), want{code: codes.OK, rejected: 2}},
		{"partial rejection capped at the batch", core.PartiallyRejected(99, "all too old"), want{code: codes.OK, rejected: 5}},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, serr := driverpb.ExportResult(c.err, 5)
			if got := status.Code(serr); got != c.want.code {
				t.Fatalf("status code %v, want %v", got, c.want.code)
			}
			if (resp == nil) == (serr == nil) {
				t.Fatalf("want a response or a status, got %v and %v", resp, serr)
			}
			back := driverpb.ExportError(resp, serr)
			if (back == nil) != c.want.nilErr {
				t.Fatalf("host side: %v", back)
			}
			if back == nil {
				return
			}
			if pr := core.AsPartialRejection(back); c.want.rejected > 0 {
				if pr == nil || pr.Rejected != c.want.rejected {
					t.Fatalf("host side: %v, want %d rejected", back, c.want.rejected)
				}
				return
			}
			if core.IsPermanent(back) != c.want.permanent || core.RetryDelay(back) != c.want.delay {
				t.Fatalf("host side: %v permanent=%v delay=%v, want %+v", back, core.IsPermanent(back), core.RetryDelay(back), c.want)
			}
			if back.Error() != c.err.Error() {
				t.Fatalf("message %q, want the driver's %q", back.Error(), c.err.Error())
			}
		})
	}
}

// What the transport says, the host reads as retryable; only UNAVAILABLE
// means the process is gone.
func TestTransportStatuses(t *testing.T) {
	for _, c := range []struct {
		code        codes.Code
		retryable   bool
		unreachable bool
	}{
		{codes.Unavailable, true, true},
		{codes.DeadlineExceeded, true, false},
		{codes.Canceled, true, false},
		{codes.ResourceExhausted, true, false},
		{codes.Unknown, true, false},
		{codes.Internal, true, false},
		{codes.InvalidArgument, false, false},
		{codes.Unimplemented, false, false},
	} {
		err := status.Error(c.code, "x")
		back := driverpb.ExportError(nil, err)
		if core.IsPermanent(back) == c.retryable || driverpb.Unreachable(err) != c.unreachable {
			t.Errorf("%v: permanent=%v unreachable=%v, want retryable=%v unreachable=%v",
				c.code, core.IsPermanent(back), driverpb.Unreachable(err), c.retryable, c.unreachable)
		}
	}
	if driverpb.Unreachable(nil) {
		t.Error("no error is not unreachable")
	}
}

// A refused config comes back on the host as the same ConfigError, keys
// and all, named for the driver.
func TestConfigureRoundTrip(t *testing.T) {
	problems := []wire.ConfigProblem{{Key: "endpoint", Message: "is required"}, {Key: "tls.ca_file", Message: "no such file"}}
	serr := driverpb.ConfigureStatus(fmt.Errorf("decoding: %w", &wire.ConfigError{Problems: problems}))
	if status.Code(serr) != codes.InvalidArgument {
		t.Fatalf("code %v, want InvalidArgument", status.Code(serr))
	}
	ce := driverpb.ConfigureError("zipkin", serr)
	if ce.Driver != "zipkin" || !reflect.DeepEqual(ce.Problems, problems) {
		t.Fatalf("host side: %+v", ce)
	}
	if want := `driver "zipkin" rejected its config: decoding: endpoint: is required; tls.ca_file: no such file`; ce.Error() != want {
		t.Fatalf("%q, want %q", ce.Error(), want)
	}
	// A plain error: no keys, the driver's text.
	ce = driverpb.ConfigureError("file", driverpb.ConfigureStatus(errors.New("path is a directory")))
	if len(ce.Problems) != 0 || ce.Error() != `driver "file" rejected its config: path is a directory` {
		t.Fatalf("%+v", ce)
	}
	// A config the driver may accept later travels as retryable.
	if code := status.Code(driverpb.ConfigureStatus(core.Retryable(errors.New("vault sealed")))); code != codes.Aborted {
		t.Fatalf("retryable Configure error: %v, want Aborted", code)
	}
}
