// Package zipkinreceiver is a reference Zipkin collector for drivertest:
// it takes POSTs of Zipkin v2 JSON or proto3 and decodes them with
// zipkin-go, the Zipkin project's own model and decoders, so that the
// author of a driver for Zipkin's protocol writes no receiver, and no
// decoding of their own that could share their driver's bugs.
//
// Its Backend reads the spans back, fails on demand (down, overloaded,
// slow, refusing, throttled), reports trace ids as Zipkin writes them and
// what the wire format shows wrong (a root's parentId of zeros).
package zipkinreceiver

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"

	"github.com/openzipkin/zipkin-go/model"
	zipkinproto "github.com/openzipkin/zipkin-go/proto/zipkin_proto3"

	"github.com/tracehop/tracehop/sdk"
	"github.com/tracehop/tracehop/sdk/drivertest"
)

// Receiver is a running reference collector.
type Receiver struct {
	srv  *httptest.Server
	gate *drivertest.Gate

	mu       sync.Mutex
	spans    []sdk.Span
	ids      []string
	problems []string
	answer   int // an HTTP status to answer every POST with, while set
}

// Start starts a collector on 127.0.0.1; it stops with the test.
func Start(t drivertest.T) *Receiver {
	t.Helper()
	r := &Receiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	r.gate = drivertest.NewGate(t, r.srv.Listener.Addr().String())
	return r
}

// Endpoint is the URL to post spans to (Zipkin's /api/v2/spans), through
// the gate that makes the collector fail on demand.
func (r *Receiver) Endpoint() string { return "http://" + r.gate.Addr() + "/api/v2/spans" }

// Backend is drivertest's view of the collector for a driver config that
// posts to Endpoint.
func (r *Receiver) Backend(config map[string]any) drivertest.Backend {
	return drivertest.Backend{
		Config:     config,
		Received:   r.Spans,
		TraceIDs:   r.TraceIDs,
		Problems:   r.Problems,
		AnswerLate: r.gate.AnswerLate,
		Fail: func(f drivertest.Failure) func() {
			return r.gate.Fail(f, func(f drivertest.Failure) func() {
				code := map[drivertest.Failure]int{drivertest.FailOverloaded: http.StatusServiceUnavailable,
					drivertest.FailRefuse: http.StatusBadRequest, drivertest.FailThrottled: http.StatusTooManyRequests}[f]
				r.mu.Lock()
				r.answer = code
				r.mu.Unlock()
				return func() {
					r.mu.Lock()
					r.answer = 0
					r.mu.Unlock()
				}
			})
		},
	}
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	answer := r.answer
	r.mu.Unlock()
	if answer != 0 {
		http.Error(w, "drivertest: failing on purpose", answer)
		return
	}
	var spans []*model.SpanModel
	var err error
	switch ct := req.Header.Get("Content-Type"); ct {
	case "application/json", "":
		err = json.Unmarshal(body, &spans)
	case "application/x-protobuf":
		spans, err = zipkinproto.ParseSpans(body, false)
	default:
		err = fmt.Errorf("content type %q is not Zipkin's (application/json or application/x-protobuf)", ct)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range spans {
		if m.ParentID != nil && *m.ParentID == 0 {
			r.problems = append(r.problems, fmt.Sprintf("span %s (%s) has a parentId of zeros: a root's parentId must be absent, or Zipkin finds no root", m.ID, m.Name))
		}
		r.spans = append(r.spans, fromModel(m))
		r.ids = append(r.ids, m.TraceID.String())
	}
	w.WriteHeader(http.StatusAccepted)
}

// Spans returns every span received so far.
func (r *Receiver) Spans() ([]sdk.Span, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]sdk.Span(nil), r.spans...), nil
}

// Problems returns what the spans received show wrong that Spans cannot:
// drivertest's Backend.Problems.
func (r *Receiver) Problems() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.problems...)
}

// TraceIDs returns the trace id of every span received, in hex, as
// zipkin-go reads it.
func (r *Receiver) TraceIDs() ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ids...), nil
}

var kinds = map[model.Kind]sdk.Kind{model.Server: sdk.KindServer, model.Client: sdk.KindClient, model.Producer: sdk.KindProducer, model.Consumer: sdk.KindConsumer}

func fromModel(m *model.SpanModel) sdk.Span {
	s := sdk.Span{
		TraceID: sdk.TraceID{High: m.TraceID.High, Low: m.TraceID.Low}, SpanID: sdk.SpanID(m.ID),
		Name: m.Name, Kind: sdk.KindInternal, StartUnixNano: m.Timestamp.UnixNano(), Duration: m.Duration,
		Shared: m.Shared, Debug: m.Debug, Sampled: true,
	}
	if k, ok := kinds[m.Kind]; ok {
		s.Kind = k
	}
	if m.ParentID != nil {
		s.ParentID = sdk.SpanID(*m.ParentID)
	}
	if m.LocalEndpoint != nil {
		s.LocalService = m.LocalEndpoint.ServiceName
	}
	if e := m.RemoteEndpoint; e != nil {
		s.Remote.Service, s.Remote.Port = e.ServiceName, e.Port
		if ip, ok := netip.AddrFromSlice(e.IPv4.To4()); ok && e.IPv4 != nil {
			s.Remote.IP = ip
		} else if ip, ok := netip.AddrFromSlice(e.IPv6); ok && len(e.IPv6) == net.IPv6len {
			s.Remote.IP = ip
		}
	}
	for k, v := range m.Tags {
		s.Tags = append(s.Tags, sdk.Tag{Key: k, Value: v})
		s.Error = s.Error || k == "error"
	}
	for _, a := range m.Annotations {
		s.Events = append(s.Events, sdk.Event{UnixNano: a.Timestamp.UnixNano(), Value: a.Value})
	}
	return s
}
