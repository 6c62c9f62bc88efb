package traceview

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The web view's API gives the most recent traces first, their spans in
// waterfall order with depths and offsets from the trace's start, and the
// tags for the span details; the page is served self-contained.
func TestWebHandler(t *testing.T) {
	start := time.UnixMicro(1_700_000_000_000_000)
	spans := []Span{
		{TraceID: "t1", SpanID: "b", ParentID: "a", Service: "s2", Name: "child", Start: start.Add(100 * time.Microsecond), Duration: 50 * time.Microsecond, Error: true, Tags: map[string]string{"error": "true"}},
		{TraceID: "t1", SpanID: "a", Service: "s1", Name: "root", Start: start, Duration: 300 * time.Microsecond},
		{TraceID: "t2", SpanID: "c", Service: "s1", Name: "later", Start: start.Add(time.Second), Duration: time.Millisecond},
	}
	srv := httptest.NewServer(Handler(func(context.Context) ([]Span, error) { return spans, nil }, 50))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/api/traces")
	if err != nil {
		t.Fatal(err)
	}
	var got []webTrace
	json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if len(got) != 2 || got[0].ID != "t2" || got[1].ID != "t1" {
		t.Fatalf("traces %+v, want t2 then t1", got)
	}
	t1 := got[1]
	if t1.DurationUs != 300 || len(t1.Spans) != 2 || t1.Spans[0].SpanID != "a" || t1.Spans[1].Depth != 1 || t1.Spans[1].OffsetUs != 100 ||
		!t1.Spans[1].Error || t1.Spans[1].Tags["error"] != "true" || strings.Join(t1.Services, ",") != "s1,s2" {
		t.Fatalf("trace t1 as %+v", t1)
	}
	page, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(page.Body)
	page.Body.Close()
	if !strings.Contains(string(body), `fetch("api/traces")`) || strings.Contains(string(body), "http://") || strings.Contains(string(body), "https://") {
		t.Errorf("the page is not self-contained or does not load the API")
	}
}
