// Package lightstepreceiver is a LightStep collector stand-in for tests: no
// open-source LightStep collector exists, so it serves the real report
// protocol from the library's own collectorpb types, over gRPC
// (lightstep.collector.CollectorService/Report) and HTTP (POST
// /api/v2/reports, a protobuf ReportRequest), and converts what arrives
// back into spans.
package lightstepreceiver

import (
	"context"
	"fmt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/lightstep/lightstep-tracer-common/golang/gogo/collectorpb"
	"google.golang.org/grpc"

	"github.com/tracehop/tracehop/sdk"
	"github.com/tracehop/tracehop/sdk/drivertest"
)

// Receiver records every span reported to it.
type Receiver struct {
	GRPCAddr, HTTPAddr string

	grpcSrv *grpc.Server
	httpSrv *http.Server
	mu      sync.Mutex
	spans   []sdk.Span
	ids     []string
	tokens  map[string]int
	always  drivertest.Failure // answered to every report while set
}

// Answer makes the collector answer every report as an overloaded one
// (gRPC UNAVAILABLE, HTTP 503) or one refusing the data (INVALID_ARGUMENT,
// HTTP 400) does, until restore is called: drivertest's Backend.Fail.
func (r *Receiver) Answer(f drivertest.Failure) (restore func()) {
	r.mu.Lock()
	r.always = f
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		r.always = 0
		r.mu.Unlock()
	}
}

func (r *Receiver) failure() drivertest.Failure {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.always
}

// TraceIDs returns the trace id of every span received, in hex as the
// collector's own types decode it (64 bits: LightStep keeps no more).
func (r *Receiver) TraceIDs() ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ids...), nil
}

// Start serves both transports on 127.0.0.1 with ports from the kernel.
func Start() (*Receiver, error) {
	r := &Receiver{tokens: map[string]int{}}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		gl.Close()
		return nil, err
	}
	r.GRPCAddr, r.HTTPAddr = gl.Addr().String(), hl.Addr().String()
	r.grpcSrv = grpc.NewServer()
	collectorpb.RegisterCollectorServiceServer(r.grpcSrv, grpcService{r})
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v2/reports", func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		switch r.failure() {
		case drivertest.FailRefuse:
			http.Error(w, "refused by drivertest", http.StatusBadRequest)
			return
		case drivertest.FailOverloaded:
			http.Error(w, "overloaded by drivertest", http.StatusServiceUnavailable)
			return
		case drivertest.FailThrottled:
			http.Error(w, "throttled by drivertest", http.StatusTooManyRequests)
			return
		}
		var rr collectorpb.ReportRequest
		if err := proto.Unmarshal(body, &rr); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.record(&rr)
		out, _ := proto.Marshal(&collectorpb.ReportResponse{})
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(out)
	})
	r.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go r.grpcSrv.Serve(gl)
	go r.httpSrv.Serve(hl)
	return r, nil
}

// Close stops both servers.
func (r *Receiver) Close() {
	r.grpcSrv.Stop()
	r.httpSrv.Close()
}

// Spans returns every span received so far.
func (r *Receiver) Spans() ([]sdk.Span, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]sdk.Span(nil), r.spans...), nil
}

// Tokens counts the access tokens reports came with.
func (r *Receiver) Tokens() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for k, v := range r.tokens {
		out[k] = v
	}
	return out
}

type grpcService struct{ r *Receiver }

func (g grpcService) Report(_ context.Context, rr *collectorpb.ReportRequest) (*collectorpb.ReportResponse, error) {
	switch g.r.failure() {
	case drivertest.FailRefuse:
		return nil, status.Error(codes.InvalidArgument, "refused by drivertest")
	case drivertest.FailOverloaded:
		return nil, status.Error(codes.Unavailable, "overloaded by drivertest")
	case drivertest.FailThrottled:
		return nil, status.Error(codes.ResourceExhausted, "throttled by drivertest")
	}
	g.r.record(rr)
	return &collectorpb.ReportResponse{}, nil
}

func (r *Receiver) record(rr *collectorpb.ReportRequest) {
	service := ""
	for _, kv := range rr.GetReporter().GetTags() {
		if kv.GetKey() == "lightstep.component_name" {
			service = kv.GetStringValue()
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tokens[rr.GetAuth().GetAccessToken()]++
	for _, s := range rr.GetSpans() {
		r.spans = append(r.spans, convert(s, service))
		r.ids = append(r.ids, fmt.Sprintf("%016x", s.GetSpanContext().GetTraceId()))
	}
}

var kinds = map[string]sdk.Kind{"server": sdk.KindServer, "client": sdk.KindClient, "producer": sdk.KindProducer, "consumer": sdk.KindConsumer}

func value(kv *collectorpb.KeyValue) string {
	switch v := kv.GetValue().(type) {
	case *collectorpb.KeyValue_StringValue:
		return v.StringValue
	case *collectorpb.KeyValue_IntValue:
		return strconv.FormatInt(v.IntValue, 10)
	case *collectorpb.KeyValue_DoubleValue:
		return strconv.FormatFloat(v.DoubleValue, 'g', -1, 64)
	case *collectorpb.KeyValue_BoolValue:
		return strconv.FormatBool(v.BoolValue)
	case *collectorpb.KeyValue_JsonValue:
		return v.JsonValue
	}
	return ""
}

func convert(s *collectorpb.Span, service string) sdk.Span {
	out := sdk.Span{
		TraceID:      sdk.TraceID{Low: s.GetSpanContext().GetTraceId()},
		SpanID:       sdk.SpanID(s.GetSpanContext().GetSpanId()),
		Name:         s.GetOperationName(),
		Kind:         sdk.KindInternal,
		LocalService: service,
		Duration:     time.Duration(s.GetDurationMicros()) * time.Microsecond,
		Sampled:      true,
	}
	if ts := s.GetStartTimestamp(); ts != nil {
		out.StartUnixNano = ts.Seconds*1e9 + int64(ts.Nanos)
	}
	for _, ref := range s.GetReferences() {
		if ref.GetRelationship() == collectorpb.Reference_CHILD_OF {
			out.ParentID = sdk.SpanID(ref.GetSpanContext().GetSpanId())
		}
	}
	for _, kv := range s.GetTags() {
		k, v := kv.GetKey(), value(kv)
		switch k {
		case "span.kind":
			if kind, ok := kinds[v]; ok {
				out.Kind = kind
			}
		case "error":
			out.Error = v == "true"
		case "peer.service":
			out.Remote.Service = v
		case "peer.ipv4", "peer.ipv6":
			out.Remote.IP, _ = netip.ParseAddr(v)
		case "peer.port":
			p, _ := strconv.Atoi(v)
			out.Remote.Port = uint16(p)
		case "trace_id_high":
			hi, _ := strconv.ParseUint(v, 16, 64)
			out.TraceID.High = hi
		}
		out.Tags = append(out.Tags, sdk.Tag{Key: k, Value: v})
	}
	for _, l := range s.GetLogs() {
		ev := sdk.Event{}
		if ts := l.GetTimestamp(); ts != nil {
			ev.UnixNano = ts.Seconds*1e9 + int64(ts.Nanos)
		}
		for _, f := range l.GetFields() {
			if f.GetKey() == "event" {
				ev.Value = value(f)
			}
		}
		out.Events = append(out.Events, ev)
	}
	return out
}
