package zipkin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/openzipkin/zipkin-go/model"
	zipkinproto "github.com/openzipkin/zipkin-go/proto/zipkin_proto3"

	"github.com/tracehop/tracehop/drivers/internal/zipkinmodel"
	"github.com/tracehop/tracehop/drivers/zipkin"
	"github.com/tracehop/tracehop/sdk"
	"github.com/tracehop/tracehop/sdk/drivertest"
)

// receiver is a Zipkin collector stand-in that decodes what was posted with
// zipkin-go's own decoders (JSON v2 and proto3), as a real collector would.
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	spans    []sdk.Span
	posts    int
	types    []string
	headers  []http.Header
	failWith []int // status codes to answer with first, one per POST
	failAll  int   // a status code to answer every POST with, until cleared
	traceIDs []string
	// discard: decode every POST, keep nothing (benchmarks: a receiver
	// holding every span of a run weighs on the figures through its
	// garbage collection); undecoded: read it, not even decode it
	discard, undecoded bool
}

// answer makes the receiver answer as an overloaded (503), refusing (400)
// or throttling (429) collector does, for drivertest's failure checks.
func (r *receiver) answer(f drivertest.Failure) (restore func()) {
	code := map[drivertest.Failure]int{drivertest.FailOverloaded: http.StatusServiceUnavailable, drivertest.FailRefuse: http.StatusBadRequest,
		drivertest.FailThrottled: http.StatusTooManyRequests}[f]
	r.mu.Lock()
	r.failAll = code
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		r.failAll = 0
		r.mu.Unlock()
	}
}

// ids returns the trace ids as Zipkin writes them (hex), read by zipkin-go,
// not by the driver's codec: the kit's anchor against byte-order bugs.
func (r *receiver) ids() ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.traceIDs...), nil
}

func newReceiver(t testing.TB) *receiver {
	r := &receiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		r.posts++
		if r.discard {
			if !r.undecoded {
				if _, err := zipkinproto.ParseSpans(body, false); err != nil {
					http.Error(w, err.Error(), http.StatusBadRequest)
					return
				}
			}
			w.WriteHeader(http.StatusAccepted)
			return
		}
		r.types = append(r.types, req.Header.Get("Content-Type"))
		r.headers = append(r.headers, req.Header.Clone())
		if len(r.failWith) > 0 {
			code := r.failWith[0]
			r.failWith = r.failWith[1:]
			http.Error(w, "injected failure", code)
			return
		}
		if r.failAll != 0 {
			http.Error(w, "injected failure", r.failAll)
			return
		}
		var models []*model.SpanModel
		var err error
		switch req.Header.Get("Content-Type") {
		case "application/json":
			err = json.Unmarshal(body, &models)
		case "application/x-protobuf":
			models, err = zipkinproto.ParseSpans(body, false)
		default:
			err = fmt.Errorf("unknown content type %q", req.Header.Get("Content-Type"))
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, m := range models {
			r.spans = append(r.spans, zipkinmodel.FromModel(m))
			r.traceIDs = append(r.traceIDs, m.TraceID.String())
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) received() ([]sdk.Span, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]sdk.Span(nil), r.spans...), nil
}

func (r *receiver) endpoint() string { return r.URL + "/api/v2/spans" }

func TestConformance(t *testing.T) {
	for _, enc := range []string{"json", "proto"} {
		t.Run(enc, func(t *testing.T) {
			drivertest.Run(t, drivertest.Suite{
				Name:        "zipkin",
				New:         func() sdk.Driver { return zipkin.New() },
				MainPackage: "github.com/tracehop/tracehop/cmd/tracehop-driver-zipkin",
				Backend: func(t *testing.T) drivertest.Backend {
					r := newReceiver(t)
					g := drivertest.NewGate(t, r.Listener.Addr().String())
					return drivertest.Backend{
						Config:   map[string]any{"collector_endpoint": "http://" + g.Addr() + "/api/v2/spans", "encoding": enc},
						Received: r.received,
						Fail:     func(f drivertest.Failure) func() { return g.Fail(f, r.answer) },
						TraceIDs: r.ids,
						// Stored as it comes, answered late: no
						// duplicate when tracehop stops meanwhile.
						AnswerLate: g.AnswerLate,
					}
				},
				Invalid: []drivertest.InvalidConfig{
					{Name: "no endpoint", Config: map[string]any{}, Key: "collector_endpoint"},
					{Name: "not a URL", Config: map[string]any{"collector_endpoint": "ftp://x"}, Key: "collector_endpoint"},
					{Name: "encoding", Config: map[string]any{"collector_endpoint": "http://x", "encoding": "thrift"}, Key: "encoding"},
					{Name: "timeout", Config: map[string]any{"collector_endpoint": "http://x", "timeout": "soon"}, Key: "timeout"},
					{Name: "batch", Config: map[string]any{"collector_endpoint": "http://x", "max_batch_spans": -1}, Key: "max_batch_spans"},
					{Name: "unknown", Config: map[string]any{"collector_endpoint": "http://x", "collector": "y"}, Key: "collector"},
				},
			})
		})
	}
}

func configured(t *testing.T, cfg map[string]any) (*zipkin.Driver, sdk.Capabilities) {
	t.Helper()
	raw, _ := json.Marshal(cfg)
	d := zipkin.New()
	caps, err := d.Configure(context.Background(), raw, sdk.HostInfo{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Shutdown(context.Background()) })
	return d, caps
}

func TestErrorClasses(t *testing.T) {
	cases := []struct {
		code      int
		permanent bool
	}{{500, false}, {503, false}, {429, false}, {408, false}, {400, true}, {413, true}, {404, true}}
	for _, c := range cases {
		t.Run(fmt.Sprint(c.code), func(t *testing.T) {
			r := newReceiver(t)
			r.failWith = []int{c.code}
			d, _ := configured(t, map[string]any{"collector_endpoint": r.endpoint()})
			err := d.Export(context.Background(), drivertest.Spans(1, 3))
			if err == nil || !strings.Contains(err.Error(), fmt.Sprint(c.code)) {
				t.Fatalf("err = %v, want one naming %d", err, c.code)
			}
			if got := sdk.IsPermanent(err); got != c.permanent {
				t.Fatalf("%d: permanent = %v, want %v", c.code, got, c.permanent)
			}
		})
	}
	t.Run("connection refused", func(t *testing.T) {
		r := newReceiver(t)
		url := r.endpoint()
		r.Close()
		d, _ := configured(t, map[string]any{"collector_endpoint": url})
		err := d.Export(context.Background(), drivertest.Spans(1, 1))
		if err == nil || sdk.IsPermanent(err) {
			t.Fatalf("err = %v, want a retryable error", err)
		}
	})
}

func TestChunksHeadersAndCapabilities(t *testing.T) {
	r := newReceiver(t)
	d, caps := configured(t, map[string]any{
		"collector_endpoint": r.endpoint(), "encoding": "proto", "max_batch_spans": 100,
		"headers": map[string]string{"Authorization": "Bearer s3cret"}, "shared_span_context": true, "trace_id_128bit": false,
	})
	if err := d.Export(context.Background(), drivertest.Spans(1, 250)); err != nil {
		t.Fatal(err)
	}
	if r.posts != 3 || len(r.spans) != 250 {
		t.Fatalf("%d POSTs carrying %d spans, want 3 carrying 250", r.posts, len(r.spans))
	}
	h := r.headers[0]
	if h.Get("Authorization") != "Bearer s3cret" || h.Get("Content-Type") != "application/x-protobuf" || h.Get("B3") != "0" {
		t.Errorf("POST headers %v", h)
	}
	if caps.TraceID128 || !caps.SharedSpans || caps.Propagation[0] != "b3" {
		t.Errorf("capabilities %+v: want 64-bit ids and shared spans as configured", caps)
	}
}

// Header values are secrets: an error must never show them.
func TestSecretsStayOutOfErrors(t *testing.T) {
	raw, _ := json.Marshal(map[string]any{"collector_endpoint": "http://x", "encoding": "nope", "headers": map[string]string{"Authorization": "Bearer s3cret"}})
	_, err := zipkin.New().Configure(context.Background(), raw, sdk.HostInfo{})
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("err = %v", err)
	}
}

// Header values need not be UTF-8; Zipkin's proto3 refuses such strings.
// Found by FuzzToModel: one such span used to fail its whole batch.
func TestNonUTF8TagsInProto(t *testing.T) {
	r := newReceiver(t)
	d, _ := configured(t, map[string]any{"collector_endpoint": r.endpoint(), "encoding": "proto"})
	spans := drivertest.Spans(1, 3)
	spans[1].Tags = append(spans[1].Tags, sdk.Tag{Key: "user_agent", Value: "curl\xff\xfe"})
	if err := d.Export(context.Background(), spans); err != nil {
		t.Fatalf("a non-UTF-8 tag failed the batch: %v", err)
	}
	if len(r.spans) != 3 {
		t.Fatalf("%d of 3 spans arrived", len(r.spans))
	}
}

// attribute_names: envoy by default; otel and both rename as sdk/attrnames
// says, without touching the caller's spans.
func TestAttributeNames(t *testing.T) {
	for _, tc := range []struct {
		names            string
		wantOld, wantNew bool
		wantName         string
	}{{"", true, false, "ingress"}, {"otel", false, true, "get"}, {"both", true, true, "ingress"}} {
		t.Run("names="+tc.names, func(t *testing.T) {
			r := newReceiver(t)
			cfg := map[string]any{"collector_endpoint": r.endpoint()}
			if tc.names != "" {
				cfg["attribute_names"] = tc.names
			}
			d, _ := configured(t, cfg)
			spans := drivertest.Spans(1, 2)
			for i := range spans {
				spans[i].Name = "ingress" // tracehop's default name: otel names it after the method
			}
			if err := d.Export(context.Background(), spans); err != nil {
				t.Fatal(err)
			}
			if spans[0].Name != "ingress" || spans[0].Tags[0].Key != "http.method" {
				t.Fatalf("Export changed the caller's span: %+v", spans[0])
			}
			got, _ := r.received()
			_, old := got[1].Tag("http.method")
			_, otel := got[1].Tag("http.request.method")
			if len(got) != 2 || old != tc.wantOld || otel != tc.wantNew || got[1].Name != tc.wantName {
				t.Fatalf("received %+v", got[1])
			}
		})
	}
	raw, _ := json.Marshal(map[string]any{"collector_endpoint": "http://x", "attribute_names": "semconv"})
	if _, err := zipkin.New().Configure(context.Background(), raw, sdk.HostInfo{}); err == nil || !strings.Contains(err.Error(), "attribute_names") {
		t.Fatalf("err = %v", err)
	}
}
