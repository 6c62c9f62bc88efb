// Package otlpreceiver is drivertest's reference OTLP trace receiver, gRPC and
// HTTP/protobuf on 127.0.0.1, that decodes requests with the OTLP project's
// own generated types (go.opentelemetry.io/proto/otlp), answers as the OTLP
// spec says a receiver answers, and can be told to fail: an UNAVAILABLE or a
// 503, a 429 with Retry-After, RESOURCE_EXHAUSTED with RetryInfo, a partial
// success. Real receivers (Jaeger, the Collector) cover the happy path in the
// e2e tests; this one covers the answers they cannot be made to give.
package otlpreceiver

import (
	"compress/gzip"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	_ "google.golang.org/grpc/encoding/gzip" // the driver may send gzip
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tracehop/tracehop/sdk"
	"github.com/tracehop/tracehop/sdk/drivertest"
)

// Fault is how the receiver answers one request instead of taking it.
type Fault struct {
	// Code is the gRPC answer (codes.Unavailable, codes.ResourceExhausted,
	// codes.InvalidArgument, ...); Status the HTTP one (503, 429, 400).
	Code   codes.Code
	Status int
	// RetryAfter is sent as RetryInfo (gRPC) or Retry-After in seconds
	// (HTTP), when positive.
	RetryAfter time.Duration
	// Rejected makes the receiver take the request but answer with a
	// partial success refusing this many spans (Code and Status unused).
	Rejected int64
	// Message is the error or partial-success message.
	Message string
}

// Receiver is a running OTLP receiver.
type Receiver struct {
	// GRPCAddr is the gRPC listener's host:port.
	GRPCAddr string
	// HTTPURL is the HTTP listener's traces URL (…/v1/traces).
	HTTPURL string

	coltracepb.UnimplementedTraceServiceServer
	grpcSrv *grpc.Server
	httpSrv *http.Server

	mu       sync.Mutex
	requests []*coltracepb.ExportTraceServiceRequest
	headers  []map[string]string
	faults   []Fault
	always   *Fault // answered to every request while set (FailAll)
	attempts int
	discard  bool // Discard: decode, count, keep nothing
	// undecoded (StartUndecoded): requests are read, not decoded
	undecoded bool
}

// undecodedCodec is the gRPC codec of StartUndecoded: it takes a request's
// bytes as read and leaves the message empty.
type undecodedCodec struct{}

func (undecodedCodec) Marshal(v any) ([]byte, error)   { return proto.Marshal(v.(proto.Message)) }
func (undecodedCodec) Unmarshal(_ []byte, _ any) error { return nil }
func (undecodedCodec) Name() string                    { return "proto" }

// Start starts a receiver on 127.0.0.1 with kernel-chosen ports and stops
// it at the test's end. With a tls.Config both listeners speak TLS (set
// ClientAuth for mTLS).
func Start(t drivertest.T, tlsConf *tls.Config) *Receiver {
	t.Helper()
	return start(t, tlsConf, true)
}

// StartUndecoded starts a plaintext receiver that reads every request and
// answers success without decoding it (Requests and Spans stay empty), for
// benchmarks of a driver and its transport alone: decoding OTLP into the
// generated Go types costs a receiver in the same process more than the
// driver spends writing it.
func StartUndecoded(t drivertest.T) *Receiver {
	t.Helper()
	return start(t, nil, false)
}

func start(t drivertest.T, tlsConf *tls.Config, decode bool) *Receiver {
	r := &Receiver{undecoded: !decode, discard: !decode}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var opts []grpc.ServerOption
	scheme := "http"
	if tlsConf != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsConf)))
		hl = tls.NewListener(hl, tlsConf)
		scheme = "https"
	}
	if !decode {
		opts = append(opts, grpc.ForceServerCodec(undecodedCodec{}))
	}
	r.grpcSrv = grpc.NewServer(opts...)
	coltracepb.RegisterTraceServiceServer(r.grpcSrv, r)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", r.serveHTTP)
	r.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	r.GRPCAddr = gl.Addr().String()
	r.HTTPURL = scheme + "://" + hl.Addr().String() + "/v1/traces"
	go r.grpcSrv.Serve(gl)
	go r.httpSrv.Serve(hl)
	t.Cleanup(r.Stop)
	return r
}

// Stop stops both listeners; a test that wants the receiver down stops it
// early (Stop is idempotent).
func (r *Receiver) Stop() {
	r.grpcSrv.Stop()
	r.httpSrv.Close()
}

// FailNext makes the next requests get these answers, one each, in order.
func (r *Receiver) FailNext(f ...Fault) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.faults = append(r.faults, f...)
}

// FailAll answers every request with f until restore is called.
func (r *Receiver) FailAll(f Fault) (restore func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.always = &f
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.always = nil
	}
}

// Discard makes the receiver decode every request, take it (no fault is
// answered from then on) and keep nothing but the count of attempts, for
// benchmarks: a receiver holding every span of a
// benchmark's run grows to hundreds of megabytes, and its garbage
// collection then weighs on the figures in place of the driver's cost.
func (r *Receiver) Discard() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.discard = true
}

// Backend is drivertest's view of the receiver for a driver that sends
// OTLP over protocol ("grpc" or "http/protobuf"): a gate in front of that
// listener (so that it can be made unreachable or unresponsive), and the
// Backend whose Config is config(endpoint), endpoint being what the driver
// must send to (host:port for gRPC, the traces URL for HTTP).
func (r *Receiver) Backend(t drivertest.T, protocol string, config func(endpoint string) map[string]any) drivertest.Backend {
	if protocol != "grpc" && protocol != "http/protobuf" {
		t.Fatalf("otlpreceiver: protocol %q: give grpc or http/protobuf (OTLP's names)", protocol)
	}
	addr := r.GRPCAddr
	if protocol != "grpc" {
		addr = strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(r.HTTPURL, "http://"), "https://"), "/v1/traces")
	}
	g := drivertest.NewGate(t, addr)
	endpoint := g.Addr()
	if protocol != "grpc" {
		endpoint = strings.Replace(r.HTTPURL, addr, g.Addr(), 1)
	}
	return drivertest.Backend{
		Config: config(endpoint), Received: r.Spans, TraceIDs: r.TraceIDs, Problems: r.Problems,
		Fail:         func(f drivertest.Failure) func() { return g.Fail(f, r.Answer) },
		AnswerLate:   g.AnswerLate,
		ParentOrigin: true,
		Sampled:      true,
	}
}

// Answer is what drivertest's Backend.Fail needs of the receiver itself:
// an overloaded receiver answers UNAVAILABLE (HTTP 503), a refusing one
// INVALID_ARGUMENT (HTTP 400), a throttling one RESOURCE_EXHAUSTED with
// RetryInfo (HTTP 429 with Retry-After), as the OTLP spec says a server
// signals that it will recover.
func (r *Receiver) Answer(f drivertest.Failure) (restore func()) {
	switch f {
	case drivertest.FailRefuse:
		return r.FailAll(Fault{Code: codes.InvalidArgument, Status: http.StatusBadRequest, Message: "refused by drivertest"})
	case drivertest.FailThrottled:
		return r.FailAll(Fault{Code: codes.ResourceExhausted, Status: http.StatusTooManyRequests, RetryAfter: time.Second, Message: "throttled by drivertest"})
	}
	return r.FailAll(Fault{Code: codes.Unavailable, Status: http.StatusServiceUnavailable, Message: "overloaded by drivertest"})
}

// TraceIDs returns the trace id of every span taken, in hex, as the
// generated OTLP types decode it: drivertest's anchor against byte-order
// bugs.
func (r *Receiver) TraceIDs() ([]string, error) {
	var out []string
	for _, req := range r.Requests() {
		for _, rs := range req.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					out = append(out, hex.EncodeToString(s.GetTraceId()))
				}
			}
		}
	}
	return out, nil
}

// Problems returns what the spans taken show wrong that Spans cannot (a
// parent_span_id of 8 zero bytes, where OTLP wants a root's empty):
// drivertest's Backend.Problems.
func (r *Receiver) Problems() []string {
	var out []string
	for _, req := range r.Requests() {
		for _, rs := range req.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					if p := s.GetParentSpanId(); len(p) > 0 && binary.BigEndian.Uint64(p) == 0 && len(p) == 8 {
						out = append(out, fmt.Sprintf("span %x (%s) has a parent_span_id of 8 zero bytes: OTLP wants a root's empty, or back ends find no root", s.GetSpanId(), s.GetName()))
					}
				}
			}
		}
	}
	return out
}

// Attempts counts every request, answered with a fault or not.
func (r *Receiver) Attempts() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.attempts
}

// Requests returns the requests taken so far.
func (r *Receiver) Requests() []*coltracepb.ExportTraceServiceRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*coltracepb.ExportTraceServiceRequest(nil), r.requests...)
}

// Headers returns the headers of every request, taken or failed: gRPC
// metadata or HTTP headers, both with lowercase names.
func (r *Receiver) Headers() []map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]map[string]string(nil), r.headers...)
}

// take records one attempt and returns the fault to answer with, if any.
func (r *Receiver) take(req *coltracepb.ExportTraceServiceRequest, headers map[string]string) (Fault, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attempts++
	if r.discard {
		return Fault{}, false
	}
	r.headers = append(r.headers, headers)
	var f Fault
	failing := len(r.faults) > 0
	if failing {
		f, r.faults = r.faults[0], r.faults[1:]
	} else if r.always != nil {
		f, failing = *r.always, true
	}
	if !failing || f.Rejected > 0 {
		r.requests = append(r.requests, req)
	}
	return f, failing
}

// Export is the gRPC TraceService's method.
func (r *Receiver) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	h := map[string]string{}
	for k, v := range md {
		h[k] = v[0]
	}
	f, failing := r.take(req, h)
	switch {
	case !failing:
		return &coltracepb.ExportTraceServiceResponse{}, nil
	case f.Rejected > 0:
		return &coltracepb.ExportTraceServiceResponse{PartialSuccess: &coltracepb.ExportTracePartialSuccess{
			RejectedSpans: f.Rejected, ErrorMessage: f.Message}}, nil
	}
	st := status.New(f.Code, f.Message)
	if f.RetryAfter > 0 {
		st, _ = st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(f.RetryAfter)})
	}
	return nil, st.Err()
}

func (r *Receiver) serveHTTP(w http.ResponseWriter, req *http.Request) {
	var body io.Reader = req.Body
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(req.Body)
		if err != nil {
			httpError(w, http.StatusBadRequest, err.Error())
			return
		}
		body = zr
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	if ct := req.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		httpError(w, http.StatusUnsupportedMediaType, "content type "+ct)
		return
	}
	var msg coltracepb.ExportTraceServiceRequest
	if r.undecoded {
		raw = nil
	}
	if err := proto.Unmarshal(raw, &msg); err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	h := map[string]string{}
	for k, v := range req.Header {
		h[strings.ToLower(k)] = v[0] // as gRPC metadata has them
	}
	f, failing := r.take(&msg, h)
	var resp coltracepb.ExportTraceServiceResponse
	switch {
	case failing && f.Rejected > 0:
		resp.PartialSuccess = &coltracepb.ExportTracePartialSuccess{RejectedSpans: f.Rejected, ErrorMessage: f.Message}
	case failing:
		if f.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(f.RetryAfter/time.Second)))
		}
		httpError(w, f.Status, f.Message)
		return
	}
	out, _ := proto.Marshal(&resp)
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

// httpError answers as the spec says: the status and a google.rpc.Status.
func httpError(w http.ResponseWriter, code int, msg string) {
	out, _ := proto.Marshal(&spb.Status{Code: int32(codes.Unknown), Message: msg})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(code)
	w.Write(out)
}

// Spans returns every span taken so far converted back to tracehop's model:
// service.name becomes LocalService, attributes tags (ints as decimal
// text), peer.service and network.peer.* the remote endpoint, an error
// status the error flag, the span flags' remote bits ParentOrigin.
func (r *Receiver) Spans() ([]sdk.Span, error) {
	var out []sdk.Span
	for _, req := range r.Requests() {
		for _, rs := range req.GetResourceSpans() {
			service := ""
			for _, a := range rs.GetResource().GetAttributes() {
				if a.Key == "service.name" {
					service = a.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					sp, err := fromOTLP(s)
					if err != nil {
						return nil, err
					}
					sp.LocalService = service
					out = append(out, sp)
				}
			}
		}
	}
	return out, nil
}

func fromOTLP(s *tracepb.Span) (sdk.Span, error) {
	if len(s.TraceId) != 16 || len(s.SpanId) != 8 || (len(s.ParentSpanId) != 0 && len(s.ParentSpanId) != 8) {
		return sdk.Span{}, errors.New("otlpreceiver: a span with malformed ids")
	}
	out := sdk.Span{
		TraceID:       sdk.TraceID{High: binary.BigEndian.Uint64(s.TraceId), Low: binary.BigEndian.Uint64(s.TraceId[8:])},
		SpanID:        sdk.SpanID(binary.BigEndian.Uint64(s.SpanId)),
		Name:          s.Name,
		StartUnixNano: int64(s.StartTimeUnixNano),
		Duration:      time.Duration(s.EndTimeUnixNano - s.StartTimeUnixNano),
		Error:         s.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR,
		Sampled:       s.Flags&1 == 1,
	}
	if len(s.ParentSpanId) == 8 {
		out.ParentID = sdk.SpanID(binary.BigEndian.Uint64(s.ParentSpanId))
		// The span flags say whether the parent is remote, when they say
		// anything (bit 8).
		if s.Flags&uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK) != 0 {
			out.ParentOrigin = sdk.ParentLocal
			if s.Flags&uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK) != 0 {
				out.ParentOrigin = sdk.ParentRemote
			}
		}
	}
	switch s.Kind {
	case tracepb.Span_SPAN_KIND_SERVER:
		out.Kind = sdk.KindServer
	case tracepb.Span_SPAN_KIND_CLIENT:
		out.Kind = sdk.KindClient
	case tracepb.Span_SPAN_KIND_PRODUCER:
		out.Kind = sdk.KindProducer
	case tracepb.Span_SPAN_KIND_CONSUMER:
		out.Kind = sdk.KindConsumer
	default:
		out.Kind = sdk.KindInternal
	}
	for _, a := range s.Attributes {
		v := value(a.GetValue())
		switch a.Key {
		case "peer.service":
			out.Remote.Service = v
		case "network.peer.address":
			ip, err := netip.ParseAddr(v)
			if err != nil {
				return sdk.Span{}, err
			}
			out.Remote.IP = ip
		case "network.peer.port":
			p, _ := strconv.ParseUint(v, 10, 16)
			out.Remote.Port = uint16(p)
		default:
			out.Tags = append(out.Tags, sdk.Tag{Key: a.Key, Value: v})
		}
	}
	for _, e := range s.Events {
		out.Events = append(out.Events, sdk.Event{UnixNano: int64(e.TimeUnixNano), Value: e.Name})
	}
	return out, nil
}

func value(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_BoolValue:
		return strconv.FormatBool(x.BoolValue)
	}
	return v.GetStringValue()
}
