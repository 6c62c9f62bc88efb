package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// The receiver counts the spans of OTLP/HTTP and Zipkin JSON batches,
// with their length declared (into the buffers it keeps: a smaller batch
// after a larger one must not count the larger one's leftovers) or
// chunked, and refuses a batch that is not OTLP.
func TestSinkCounts(t *testing.T) {
	srv := httptest.NewServer(sinkHandler())
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	otlp := func(spans int) []byte {
		ss := &tracepb.ScopeSpans{}
		for i := range spans {
			ss.Spans = append(ss.Spans, &tracepb.Span{TraceId: bytes.Repeat([]byte{1}, 16), SpanId: []byte{0, 0, 0, 0, 0, 0, 0, byte(i + 1)}, Name: "GET /"})
		}
		b, err := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{ScopeSpans: []*tracepb.ScopeSpans{ss, ss}}}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	post := func(path, ctype string, body []byte, chunked bool, want int) {
		t.Helper()
		var r io.Reader = bytes.NewReader(body)
		if chunked {
			r = io.MultiReader(r) // no length: sent chunked
		}
		req, _ := http.NewRequest("POST", "http://"+addr+path, r)
		req.Header.Set("Content-Type", ctype)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("POST %s (%d bytes, chunked %v): %s, want %d", path, len(body), chunked, resp.Status, want)
		}
	}
	post("/v1/traces", "application/x-protobuf", otlp(300), false, 200)
	post("/v1/traces", "application/x-protobuf", otlp(2), false, 200)
	post("/v1/traces", "application/x-protobuf", otlp(5), true, 200)
	post("/v1/traces", "application/x-protobuf", []byte{0x0a, 0x7f, 0x01}, false, 400) // a length past the end
	post("/api/v2/spans", "application/json", []byte(`[{"traceId":"1"},{"traceId":"2"}]`), false, 202)
	resp, err := http.Get("http://" + addr + "/count")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var zipkin, batches, bad, spans int
	fmt.Sscan(string(b), &zipkin, &batches, &bad, &spans)
	if zipkin != 2 || batches != 1 || bad != 1 || spans != 2*(300+2+5) {
		t.Errorf("the receiver counted zipkin %d in %d batches, %d refused, otlp %d; want 2, 1, 1, %d", zipkin, batches, bad, spans, 2*(300+2+5))
	}
}
