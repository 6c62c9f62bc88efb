package main

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/DataDog/dd-trace-go/v2/ddtrace/tracer"
	"github.com/lightstep/lightstep-tracer-go"
	"github.com/opentracing/opentracing-go"
	"github.com/openzipkin/zipkin-go/propagation/b3"
	otelprop "go.opentelemetry.io/otel/propagation"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/core/propagation"
)

// upstreamCases are the propagation settings whose cost to the upstream
// BenchmarkUpstreamPropagation compares: none, each format alone, and the
// default of a config without drivers that say otherwise.
var upstreamCases = [][]string{
	nil,
	{"tracecontext"},
	{"b3"},
	{"b3single"},
	{"datadog"},
	{"ot-tracer"},
	{"b3", "tracecontext"},
}

// upstreamRequest is a request as tracehop forwards it to the application,
// with formats' headers injected: the bytes the upstream receives.
func upstreamRequest(tb testing.TB, formats []string) []byte {
	req, _ := http.NewRequest("GET", "http://shop.internal/api/orders/42?expand=items", nil)
	req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("X-Forwarded-For", "203.0.113.7")
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("X-Request-Id", "7c1a3e0b-5b7e-4d35-9a8e-4c2f3d1e0a9b")
	if formats != nil {
		p, err := propagation.New(formats)
		if err != nil {
			tb.Fatal(err)
		}
		p.Inject(req.Header, propagation.Context{
			TraceID: core.TraceID{High: 0x0af7651916cd43dd, Low: 0x8448eb211c80319c}, SpanID: 0xb7ad6b7169203331,
			ParentID: 0x00f067aa0ba902b7, Sampled: propagation.SamplingYes, Random: true,
		})
	}
	var buf bytes.Buffer
	if err := req.Write(&buf); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// upstreamExtract is what an application's tracer does with the request:
// the real libraries of each format's ecosystem read its context.
func upstreamExtract(tb testing.TB, formats []string) func(*http.Request) bool {
	var steps []func(*http.Request) bool
	for _, f := range formats {
		switch f {
		case "tracecontext":
			tc := otelprop.TraceContext{}
			steps = append(steps, func(r *http.Request) bool {
				return tc.Extract(context.Background(), otelprop.HeaderCarrier(r.Header)) != context.Background()
			})
		case "b3", "b3single":
			steps = append(steps, func(r *http.Request) bool {
				sc, err := b3.ExtractHTTP(r)()
				return err == nil && sc != nil
			})
		case "datadog":
			dd := tracer.NewPropagator(nil)
			steps = append(steps, func(r *http.Request) bool {
				_, err := dd.Extract(tracer.HTTPHeadersCarrier(r.Header))
				return err == nil
			})
		case "ot-tracer":
			steps = append(steps, func(r *http.Request) bool {
				_, err := lightstep.LightStepPropagator.Extract(opentracing.HTTPHeadersCarrier(r.Header))
				return err == nil
			})
		default:
			tb.Fatalf("no upstream library for %q", f)
		}
	}
	return func(r *http.Request) bool {
		for _, s := range steps {
			if !s(r) {
				return false
			}
		}
		return true
	}
}

// BenchmarkUpstreamPropagation is what each propagation format costs the
// application behind tracehop, per request: its HTTP server parsing the
// head tracehop forwards (Go's net/http, http.ReadRequest) and its tracer
// reading the context (OpenTelemetry Go's TraceContext, zipkin-go's B3,
// dd-trace-go's propagator, lightstep-tracer-go's). Compare each case with
// "none" (no trace headers, nothing extracted); "bytes" is the request
// head's size. The README's Propagation section quotes it.
func BenchmarkUpstreamPropagation(b *testing.B) {
	for _, formats := range upstreamCases {
		name := "none"
		if formats != nil {
			name = strings.Join(formats, "+")
		}
		b.Run(name, func(b *testing.B) {
			raw := upstreamRequest(b, formats)
			extract := upstreamExtract(b, formats)
			readRequests(b, raw, func(req *http.Request) {
				if !extract(req) {
					b.Fatalf("the upstream's tracer found no context in\n%s", raw)
				}
			})
			b.ReportMetric(float64(len(raw)), "bytes")
		})
	}
}

// BenchmarkUpstreamParse is the part of the bench's upstream (net/http,
// no tracer) that a traced request adds by its header alone: parsing the
// head untraced tracehop forwards, and the same with the traceparent the
// otlp and file drivers ask for. make bench measures the upstream
// spending more than that per traced request; the rest is not the
// header's.
func BenchmarkUpstreamParse(b *testing.B) {
	for _, c := range []struct {
		name    string
		formats []string
	}{{"untraced", nil}, {"traceparent", []string{"tracecontext"}}} {
		b.Run(c.name, func(b *testing.B) {
			readRequests(b, upstreamRequest(b, c.formats), func(*http.Request) {})
		})
	}
}

// readRequests is the upstream's server reading the request head raw, as
// net/http does, once per iteration, and hands each request to then.
func readRequests(b *testing.B, raw []byte, then func(*http.Request)) {
	rd := bytes.NewReader(raw)
	br := bufio.NewReader(rd)
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(raw)
		br.Reset(rd)
		req, err := http.ReadRequest(br)
		if err != nil {
			b.Fatal(err)
		}
		then(req)
	}
}

// The table takes each case's median and its difference from "none".
func TestRenderUpstream(t *testing.T) {
	out := `BenchmarkUpstreamPropagation/none         	  243820	      1000 ns/op	       310.0 bytes	    1256 B/op	      14 allocs/op
BenchmarkUpstreamPropagation/none         	  243820	      1200 ns/op	       310.0 bytes	    1256 B/op	      14 allocs/op
BenchmarkUpstreamPropagation/none         	  243820	      9000 ns/op	       310.0 bytes	    1256 B/op	      14 allocs/op
BenchmarkUpstreamPropagation/b3+tracecontext-2 	  125512	      2500 ns/op	       513.0 bytes	    2288 B/op	      38 allocs/op
BenchmarkUpstreamPropagation/ot-tracer 	  125512	      2000 ns/op	       408.0 bytes	    2288 B/op	      42 allocs/op
`
	readme := t.TempDir() + "/README.md"
	if err := os.WriteFile(readme, []byte("a\n"+upstreamBegin+"\nold\n"+upstreamEnd+"\nb\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := renderUpstream(strings.NewReader(out), readme); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(readme)
	for _, want := range []string{"| none | 310 (+0) | 1200 | +0 | 14 (+0) |", "| b3+tracecontext | 513 (+203) | 2500 | +1300 | 38 (+24) |", "| ot-tracer | 408 (+98) |", "\nb\n"} {
		if !strings.Contains(string(got), want) {
			t.Errorf("the README lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(string(got), "old") {
		t.Error("the old table is still there")
	}
}
