package proxy

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/proxy/config"
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

type discardSink struct{}

func (discardSink) Enqueue(core.Span) {}

func benchListener(b *testing.B, traced bool) *listener {
	yaml := `listeners:
  - {name: l, address: "127.0.0.1:0", direction: ingress, routes: [{match: {prefix: /}, cluster: up, operation: op}]}
clusters:
  - {name: up, endpoints: ["127.0.0.1:1"]}
`
	if traced {
		yaml += "tracing:\n  driver: {name: file}\n"
	}
	cfg, err := config.Parse("bench.yaml", []byte(yaml))
	if err != nil {
		b.Fatal(err)
	}
	var tracer *Tracer
	if traced {
		tracer, err = NewTracer(cfg, TracerOptions{Sink: discardSink{}, Capabilities: []core.Capabilities{{Propagation: []string{"b3", "tracecontext"}, TraceID128: true}}})
		if err != nil {
			b.Fatal(err)
		}
	}
	s := NewServer(cfg, Options{Tracer: tracer})
	l := s.listeners[0]
	for _, rt := range l.routes {
		rt.cluster.transport.RegisterProtocol("http", cannedTransport{})
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
