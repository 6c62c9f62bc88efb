package proxy

import (
	"cmp"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/core/pipeline"
	"github.com/tracehop/tracehop/core/propagation"
	"github.com/tracehop/tracehop/core/wire"
	"github.com/tracehop/tracehop/proxy/config"
	"github.com/tracehop/tracehop/proxy/internal/h1"
)

// cannedTransport answers every request at once, so that a benchmark
// measures the proxy and not the network or an upstream.
type cannedTransport struct{}

func (cannedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode: 200, ProtoMajor: 1, ProtoMinor: 1, Request: req, ContentLength: 5,
		Header: http.Header{"Content-Type": {"text/plain"}}, Body: io.NopCloser(strings.NewReader("hello")),
	}, nil
}

// discardDriver is an in-process driver that drops every batch, so that
// the benchmarks pay for the real pipeline (the encoding into its queue,
// the batching) but not for a driver process. It takes batches as a
// driver process's host does (pipeline.BatchDriver), as they lie.
type discardDriver struct{}

func (discardDriver) Layout() wire.Layout { return wire.Full }
func (discardDriver) ExportBatch(context.Context, [][]byte, int, wire.Layout) error {
	return nil
}

var _ pipeline.BatchDriver = discardDriver{}

// hotQueue is the queue and batch size of the benchmarks' pipeline.
const hotQueue = 1024

func (discardDriver) Configure(context.Context, []byte, core.HostInfo) (core.Capabilities, error) {
	return core.Capabilities{}, nil
}
func (discardDriver) Export(context.Context, []core.Span) error { return nil }
func (discardDriver) Shutdown(context.Context) error            { return nil }

func benchListener(b testing.TB, traced bool) *frontend {
	return benchListenerWith(b, traced, benchPlain)
}

// benchOptions are the tracing features a benchmark configures.
type benchOptions struct {
	operation, routeTracing, tracing string
	grpc                             bool // a gRPC call that failed UNAVAILABLE
}

var (
	benchPlain = benchOptions{}
	// benchFeatures configures what issue 18 added, to show it costs no
	// allocation: a route's own sampling and tags, response-header tags
	// and baggage tags.
	benchFeatures = benchOptions{
		routeTracing: `, tracing: {sampling: {random: 100}, custom_tags: [{tag: tier, response_header: {name: x-user-tier}}]}`,
		tracing:      "  custom_tags: [{tag: cache, response_header: {name: x-cache, default: none}}, {tag: user, request_header: {name: x-user}}]\n  baggage_tags: [user.id]\n",
	}
	// benchSpans configures what issue 27 added to spans: a span name
	// template and tags of one side only, on both spans of a request
	// (spawn_upstream_span).
	benchSpans = benchOptions{
		operation: "'{method} {route}'",
		tracing:   "  spawn_upstream_span: true\n  custom_tags: [{tag: in, literal: a, span: server}, {tag: out, literal: b, span: client}]\n",
	}
	// benchTemplate is a span name template alone, one span per request:
	// what benchSpans costs without its second span.
	benchTemplate = benchOptions{operation: "'{method} {route}'"}
	// benchGRPC is a gRPC call (issue 27's gRPC-aware spans: Envoy's
	// grpc.* tags, the status, the percent-decoded message, the error by
	// side).
	benchGRPC = benchOptions{grpc: true}
	// benchSampling configures what issue 27's sampling items added:
	// consistent probability sampling (tracecontext only, so the b3
	// headers are not read and every request starts a trace decided on its
	// randomness, half of them writing ot=th:8) and a route's own rule.
	benchSampling = benchOptions{
		routeTracing: `, tracing: {sampling: {overall: 100}}`,
		tracing:      "  propagation: [tracecontext]\n  sampling: {random: 50}\n",
	}
)

func benchListenerWith(b testing.TB, traced bool, o benchOptions) *frontend {
	yaml := `listeners:
  - {name: l, address: "127.0.0.1:0", direction: ingress, routes: [{match: {prefix: /}, cluster: up, operation: ` + cmp.Or(o.operation, "op") + o.routeTracing + `}]}
clusters:
  - {name: up, endpoints: ["127.0.0.1:1"]}
`
	if traced {
		yaml += "tracing:\n  driver: {name: file}\n" + o.tracing
	}
	cfg, err := config.Parse("bench.yaml", []byte(yaml))
	if err != nil {
		b.Fatal(err)
	}
	var tracer *Tracer
	if traced {
		// One batch fills the queue: after the first, every slot has held
		// a span and has its memory (see TestTracingHotPathAllocations).
		p, err := pipeline.New(pipeline.Config{QueueSize: hotQueue, BatchSize: hotQueue, BatchDelay: time.Hour}, []pipeline.Target{{Name: "discard", Driver: discardDriver{}}}, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { p.Shutdown(context.Background()) })
		tracer, err = NewTracer(cfg, TracerOptions{Sink: p, Capabilities: []core.Capabilities{{Propagation: []string{"b3", "tracecontext"}, TraceID128: true}}})
		if err != nil {
			b.Fatal(err)
		}
	}
	s := NewServer(cfg, Options{Tracer: tracer})
	l := s.snap.Load().frontends[0]
	for _, rt := range l.routes {
		rt.cluster.Transport().RegisterProtocol("http", cannedTransport{})
	}
	return l
}

// BenchmarkServeHTTP is one request through a listener (routing, request
// id, tracing, ReverseProxy, metrics) against an upstream that answers
// without a network: the proxy's own cost per request, traced and not.
// Issue 6 starts from these numbers.
func BenchmarkServeHTTP(b *testing.B) {
	for _, traced := range []bool{false, true} {
		name := "untraced"
		if traced {
			name = "traced"
		}
		b.Run(name, func(b *testing.B) {
			l := benchListener(b, traced)
			req := httptest.NewRequest("GET", "http://svc/trace/1", nil)
			req.Header.Set("x-b3-traceid", "0af7651916cd43dd8448eb211c80319c")
			req.Header.Set("x-b3-spanid", "00f067aa0ba902b7")
			req.Header.Set("x-b3-sampled", "1")
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				l.ServeHTTP(w, req.WithContext(context.Background()))
				if w.Code != 200 {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
		})
	}
}

// tracingHotPath runs what tracing adds to a fast-path request: extract,
// sample, start the span, inject, finish and enqueue.
func tracingHotPath(tb testing.TB, o benchOptions) func() {
	l := benchListenerWith(tb, true, o)
	hs := []h1.Header{
		{Name: []byte("Host"), Value: []byte("svc")},
		{Name: []byte("User-Agent"), Value: []byte("bench")},
		{Name: []byte("X-B3-Traceid"), Value: []byte("0af7651916cd43dd8448eb211c80319c")},
		{Name: []byte("X-B3-Spanid"), Value: []byte("00f067aa0ba902b7")},
		{Name: []byte("X-B3-Sampled"), Value: []byte("1")},
	}
	if o != benchPlain {
		hs = append(hs, h1.Header{Name: []byte("X-User"), Value: []byte("alice")},
			h1.Header{Name: []byte("Baggage"), Value: []byte("user.id=alice,tenant=acme")})
	}
	resp := []h1.Header{
		{Name: []byte("Content-Type"), Value: []byte("text/plain")},
		{Name: []byte("X-Cache"), Value: []byte("HIT")},
		{Name: []byte("X-User-Tier"), Value: []byte("gold")},
	}
	fc := &fastConn{l: l, peer: netip.MustParseAddrPort("127.0.0.1:40000"), peerAddr: "127.0.0.1", mut: new(propagation.Mutations)}
	st := &fc.st
	return func() {
		fc.carrier.reset(hs) // as each request's head does
		*st = reqState{frontend: l, reqTrace: reqTrace{
			ingress: l.ingress, trusted: l.trusted, baggageTrusted: l.baggageTrusted, start: time.Now(), peer: fc.peer, peerAddr: fc.peerAddr,
			requestID: "a-request-id", buf: &fc.spanBuf, bagBuf: &fc.bagBuf,
		}}
		st.setRoute(l.routes[0])
		v := reqView{method: "GET", host: "svc", uri: "/trace/1", proto: "HTTP/1.1", userAgent: "bench", header: &fc.carrier, volatile: true}
		if o.grpc {
			v.method, v.uri, v.proto, v.contentType = "POST", "/shop.Cart/AddItem", "HTTP/2.0", "application/grpc"
		}
		l.tracer.begin(&st.reqTrace, &v)
		l.tracer.prop.InjectInto(fc.mut, st.out)
		if st.sampled && l.tracer.wantsResponse(st.routeTracing) { // as relay does
			fc.respCap.capture(resp, l.tracer, st.routeTracing)
			v.respHeader = &fc.respCap
		}
		v.status, v.respBytes = 200, 100
		if o.grpc {
			v.grpcStatus, v.grpcMessage = "14", "upstream%20unavailable"
		}
		l.tracer.finish(&st.reqTrace, &v, time.Now())
	}
}

// BenchmarkTracingHotPath is tracing's own cost per request on the fast
// path, without the network: compare with BenchmarkServeHTTP and the
// CPU per request of `make bench`.
//
// "features" configures a route's own tracing, response-header, request-
// header and baggage tags; "plain" none of them, to show what they cost
// when unused.
func BenchmarkTracingHotPath(b *testing.B) {
	for _, c := range []struct {
		name string
		o    benchOptions
	}{{"plain", benchPlain}, {"features", benchFeatures}, {"template", benchTemplate}, {"spans", benchSpans}, {"grpc", benchGRPC}, {"sampling", benchSampling}} {
		b.Run(c.name, func(b *testing.B) {
			run := tracingHotPath(b, c.o)
			b.ReportAllocs()
			for b.Loop() {
				run()
			}
		})
	}
}

// TestTracingHotPathAllocations holds tracing on the fast path to no
// allocation per request: extract, sampling, inject, finish (tags built in
// the connection's memory) and enqueue (copied into the queue's slots).
// The pipeline's goroutine exports batches of 1024, whose few allocations
// round down to nothing per request here.
func TestTracingHotPathAllocations(t *testing.T) {
	for _, c := range []struct {
		name string
		o    benchOptions
	}{{"plain", benchPlain}, {"features", benchFeatures}, {"spans", benchSpans}, {"grpc", benchGRPC}, {"sampling", benchSampling}} {
		t.Run(c.name, func(t *testing.T) {
			run := tracingHotPath(t, c.o)
			// Full batches, every slot of the queue warm (at 50% sampling a
			// batch takes twice the requests).
			for range 4 * hotQueue {
				run()
			}
			if n := testing.AllocsPerRun(1000, run); n != 0 {
				t.Fatalf("tracing allocates %.1f times per request, want 0", n)
			}
		})
	}
}

// BenchmarkObserveSampled is a sampled request's metrics: the counters,
// the duration histogram, and now and then (exemplarEvery) its exemplar.
func BenchmarkObserveSampled(b *testing.B) {
	m := newMetrics(prometheus.NewRegistry(), nil, nil).route("l", "r", "c")
	var id core.TraceID
	id.Low = 42
	start := time.Now()
	for b.Loop() {
		m.observe(200, start, time.Now(), true, &id)
	}
}

// BenchmarkTraceresponse is what a listener with traceresponse: true adds
// to a traced answer (issue 27): the header field, written in place.
func BenchmarkTraceresponse(b *testing.B) {
	tr := reqTrace{traced: true}
	tr.span.TraceID = core.TraceID{High: 0x0af7651916cd43dd, Low: 0x8448eb211c80319c}
	tr.span.SpanID = 0xb7ad6b7169203331
	tr.sampled = true
	w := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		w = tr.appendTraceresponse(w[:0])
	}
	if len(w) != 55 {
		b.Fatalf("traceresponse %q: want 55 bytes", w)
	}
}
