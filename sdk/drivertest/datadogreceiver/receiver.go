// Package datadogreceiver is a Datadog agent stand-in for tests: it answers
// /info, decodes the trace payloads the tracer really sends (v0.4 msgpack:
// an array of chunks, each an array of spans), and records every other
// request, so that a test can assert the driver sent no telemetry or remote
// configuration traffic.
package datadogreceiver

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/tracehop/tracehop/sdk"
)

// Span is a span as the v0.4 payload carries it.
type Span struct {
	Service    string             `msgpack:"service"`
	Name       string             `msgpack:"name"`
	Resource   string             `msgpack:"resource"`
	Type       string             `msgpack:"type"`
	TraceID    uint64             `msgpack:"trace_id"`
	SpanID     uint64             `msgpack:"span_id"`
	ParentID   uint64             `msgpack:"parent_id"`
	Start      int64              `msgpack:"start"`
	Duration   int64              `msgpack:"duration"`
	Error      int32              `msgpack:"error"`
	Meta       map[string]string  `msgpack:"meta"`
	Metrics    map[string]float64 `msgpack:"metrics"`
	SpanEvents []struct {
		Name         string `msgpack:"name"`
		TimeUnixNano uint64 `msgpack:"time_unix_nano"`
	} `msgpack:"span_events"`
}

// Receiver records what the tracer sends.
type Receiver struct {
	Addr string
	srv  *http.Server

	mu     sync.Mutex
	raw    []Span
	other  []string
	failed int // answer this many trace payloads with 503 first
	always int // answer every trace payload with this status while set
}

// Start serves on 127.0.0.1 with a port from the kernel.
func Start() (*Receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &Receiver{Addr: ln.Addr().String()}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /info", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `{"version":"7.60.0","endpoints":["/v0.4/traces"],"client_drop_p0s":false}`)
	})
	mux.HandleFunc("/v0.4/traces", r.traces)
	mux.HandleFunc("/", func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.other = append(r.other, req.Method+" "+req.URL.Path)
		r.mu.Unlock()
		http.NotFound(w, req)
	})
	r.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go r.srv.Serve(ln)
	return r, nil
}

func (r *Receiver) traces(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	if r.failed > 0 {
		r.failed--
		r.mu.Unlock()
		http.Error(w, "injected failure", http.StatusServiceUnavailable)
		return
	}
	if r.always != 0 {
		code := r.always
		r.mu.Unlock()
		http.Error(w, "injected failure", code)
		return
	}
	r.mu.Unlock()
	var chunks [][]Span
	if err := msgpack.Unmarshal(body, &chunks); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	for _, c := range chunks {
		r.raw = append(r.raw, c...)
	}
	r.mu.Unlock()
	fmt.Fprint(w, `{"rate_by_service":{"service:,env:":1}}`)
}

// FailNext answers the next n trace payloads with 503.
func (r *Receiver) FailNext(n int) {
	r.mu.Lock()
	r.failed = n
	r.mu.Unlock()
}

// FailAll answers every trace payload with status code until restore is
// called.
func (r *Receiver) FailAll(code int) (restore func()) {
	r.mu.Lock()
	r.always = code
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		r.always = 0
		r.mu.Unlock()
	}
}

// TraceIDs returns each span's trace id as Datadog shows it with 128-bit
// ids (_dd.p.tid then the low 64 bits, in hex), from what the msgpack
// library decoded: drivertest's anchor against byte-order bugs.
func (r *Receiver) TraceIDs() ([]string, error) {
	var out []string
	for _, s := range r.Raw() {
		out = append(out, fmt.Sprintf("%016s%016x", s.Meta["_dd.p.tid"], s.TraceID))
	}
	return out, nil
}

// Close stops the receiver.
func (r *Receiver) Close() { r.srv.Close() }

// Raw returns the spans as they arrived.
func (r *Receiver) Raw() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Span(nil), r.raw...)
}

// Other lists requests to anything but /info and /v0.4/traces.
func (r *Receiver) Other() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.other...)
}

var kinds = map[string]sdk.Kind{"server": sdk.KindServer, "client": sdk.KindClient, "producer": sdk.KindProducer, "consumer": sdk.KindConsumer, "internal": sdk.KindInternal}

// Spans returns what arrived, converted back into spans.
func (r *Receiver) Spans() ([]sdk.Span, error) {
	var out []sdk.Span
	for _, d := range r.Raw() {
		s := sdk.Span{
			TraceID: sdk.TraceID{Low: d.TraceID}, SpanID: sdk.SpanID(d.SpanID), ParentID: sdk.SpanID(d.ParentID),
			Name: d.Meta["tracehop.name"], Kind: kinds[d.Meta["span.kind"]], LocalService: d.Service,
			StartUnixNano: d.Start, Duration: time.Duration(d.Duration), Error: d.Error == 1, Sampled: true,
		}
		if tid := d.Meta["_dd.p.tid"]; tid != "" {
			s.TraceID.High, _ = strconv.ParseUint(tid, 16, 64)
		}
		for k, v := range d.Meta {
			s.Tags = append(s.Tags, sdk.Tag{Key: k, Value: v})
		}
		s.Remote.Service = d.Meta["peer.service"]
		s.Remote.IP, _ = netip.ParseAddr(d.Meta["network.destination.ip"])
		if p, err := strconv.Atoi(d.Meta["network.destination.port"]); err == nil {
			s.Remote.Port = uint16(p)
		}
		for _, e := range d.SpanEvents {
			s.Events = append(s.Events, sdk.Event{UnixNano: int64(e.TimeUnixNano), Value: e.Name})
		}
		if raw := d.Meta["events"]; raw != "" && len(d.SpanEvents) == 0 {
			var evs []struct {
				Name         string `json:"name"`
				TimeUnixNano int64  `json:"time_unix_nano"`
			}
			if err := json.Unmarshal([]byte(raw), &evs); err != nil {
				return nil, fmt.Errorf("span %d: meta events: %w", d.SpanID, err)
			}
			for _, e := range evs {
				s.Events = append(s.Events, sdk.Event{UnixNano: e.TimeUnixNano, Value: e.Name})
			}
		}
		out = append(out, s)
	}
	return out, nil
}
