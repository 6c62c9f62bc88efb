package otlp

import (
	"encoding/binary"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/tracehop/tracehop/sdk"
	"github.com/tracehop/tracehop/sdk/attrnames"
)

// scopeName names tracehop as the instrumentation scope of every span.
const scopeName = "github.com/tracehop/tracehop"

// W3C trace flags and the OTLP span flags that say whether the parent is
// remote (parentIsRemote).
const (
	flagSampled      = 0x01
	flagHasIsRemote  = uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK)
	flagIsRemote     = uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK)
	maxStatusMessage = 1024
)

// parentIsRemote says whether the span's parent is in another process, as
// the host says (Span.ParentOrigin: an egress CLIENT span's parent came from
// the application, a spawned upstream span's is tracehop's own). From a host
// that says nothing (older than the field) it falls back to the kind: a
// SERVER span's parent is the caller's span.
func parentIsRemote(s *sdk.Span) bool {
	switch {
	case s.ParentID == 0:
		return false
	case s.ParentOrigin == sdk.ParentRemote:
		return true
	case s.ParentOrigin == sdk.ParentLocal:
		return false
	}
	return s.Kind == sdk.KindServer
}

// intAttribute says whether an attribute is written as an OTLP int, as the
// semantic conventions type it, when its value parses as one; everything
// else is a string. A switch, not a map: it runs for every attribute.
func intAttribute(key string) bool {
	switch key {
	case "http.response.status_code", "server.port", "client.port", "network.peer.port",
		"http.request.body.size", "http.response.body.size", "rpc.grpc.status_code":
		return true
	}
	return false
}

// mapper turns a batch of tracehop spans into OTLP ResourceSpans: one per
// local service, each with one scope naming tracehop.
type mapper struct {
	mode     attrnames.Mode
	version  string
	instance string            // service.instance.id (node.id)
	resource map[string]string // literal resource attributes
	// resourceKeys are resource's keys, sorted: every request lists them
	// in the same order.
	resourceKeys []string
}

func newMapper(mode attrnames.Mode, version, instance string, resource map[string]string) *mapper {
	keys := slices.Sorted(maps.Keys(resource))
	return &mapper{mode: mode, version: version, instance: instance, resource: resource, resourceKeys: keys}
}

// resourceSpans maps spans. Every string is valid UTF-8 in the result:
// protobuf refuses to marshal anything else, and header values (user
// agents, custom tags) need not be, so invalid bytes become U+FFFD rather
// than fail the batch.
func (m *mapper) resourceSpans(spans []sdk.Span) []*tracepb.ResourceSpans {
	var out []*tracepb.ResourceSpans
	byService := map[string]*tracepb.ScopeSpans{}
	scratch := make([]sdk.Tag, 0, 32) // for attrnames.Translate, span after span
	for i := range spans {
		s := &spans[i]
		ss := byService[s.LocalService]
		if ss == nil {
			ss = &tracepb.ScopeSpans{Scope: &commonpb.InstrumentationScope{Name: scopeName, Version: m.version}}
			byService[s.LocalService] = ss
			out = append(out, &tracepb.ResourceSpans{
				Resource:   &resourcepb.Resource{Attributes: m.resourceAttrs(s.LocalService)},
				ScopeSpans: []*tracepb.ScopeSpans{ss},
			})
		}
		ss.Spans = append(ss.Spans, m.span(s, &scratch))
	}
	return out
}

func (m *mapper) resourceAttrs(service string) []*commonpb.KeyValue {
	attrs := make([]*commonpb.KeyValue, 0, 2+len(m.resource))
	if _, set := m.resource["service.name"]; !set {
		attrs = append(attrs, kv("service.name", service))
	}
	if _, set := m.resource["service.instance.id"]; !set && m.instance != "" {
		attrs = append(attrs, kv("service.instance.id", m.instance))
	}
	for _, k := range m.resourceKeys {
		attrs = append(attrs, kv(k, m.resource[k]))
	}
	return attrs
}

func (m *mapper) span(s *sdk.Span, scratch *[]sdk.Tag) *tracepb.Span {
	tags, name := attrnames.Translate((*scratch)[:0], s, m.mode)
	*scratch = tags[:0]
	out := &tracepb.Span{
		TraceId:           traceID(s.TraceID),
		SpanId:            spanID(s.SpanID),
		TraceState:        valid(s.TraceState),
		Name:              valid(name),
		Kind:              kind(s.Kind),
		StartTimeUnixNano: uint64(s.StartUnixNano),
		EndTimeUnixNano:   uint64(s.StartUnixNano + int64(s.Duration)),
		Attributes:        make([]*commonpb.KeyValue, 0, len(tags)+3),
	}
	if s.ParentID != 0 {
		out.ParentSpanId = spanID(s.ParentID)
	}
	if s.Sampled {
		out.Flags = flagSampled
	}
	out.Flags |= flagHasIsRemote
	if parentIsRemote(s) {
		out.Flags |= flagIsRemote
	}
	for _, t := range tags {
		if intAttribute(t.Key) {
			if n, err := strconv.ParseInt(t.Value, 10, 64); err == nil {
				out.Attributes = append(out.Attributes, &commonpb.KeyValue{Key: t.Key, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: n}}})
				continue
			}
		}
		out.Attributes = append(out.Attributes, kv(t.Key, t.Value))
	}
	// The remote side, by its semantic-convention names in every mode:
	// OTLP has no endpoint field of its own.
	if s.Remote.Service != "" {
		out.Attributes = append(out.Attributes, kv("peer.service", s.Remote.Service))
	}
	if s.Remote.IP.IsValid() {
		out.Attributes = append(out.Attributes, kv("network.peer.address", s.Remote.IP.Unmap().String()))
		if s.Remote.Port != 0 {
			out.Attributes = append(out.Attributes, &commonpb.KeyValue{Key: "network.peer.port",
				Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: int64(s.Remote.Port)}}})
		}
	}
	for _, e := range s.Events {
		out.Events = append(out.Events, &tracepb.Span_Event{TimeUnixNano: uint64(e.UnixNano), Name: valid(e.Value)})
	}
	if s.Error {
		out.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: valid(statusMessage(s))}
	}
	return out
}

// statusMessage is the error span's status message: the proxy's
// error.message, else its HTTP status.
func statusMessage(s *sdk.Span) string {
	if msg, ok := s.Tag("error.message"); ok && msg != "" {
		if len(msg) > maxStatusMessage {
			msg = msg[:maxStatusMessage]
		}
		return msg
	}
	if code, ok := s.Tag("http.status_code"); ok {
		return "HTTP " + code
	}
	if code, ok := s.Tag("grpc.status_code"); ok {
		return "gRPC status " + code
	}
	return ""
}

func kv(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: valid(k), Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: valid(v)}}}
}

// valid returns s, or a copy with each invalid UTF-8 sequence replaced by
// U+FFFD.
func valid(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

func traceID(t sdk.TraceID) []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint64(b, t.High)
	binary.BigEndian.PutUint64(b[8:], t.Low)
	return b
}

func spanID(id sdk.SpanID) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, uint64(id))
	return b
}

func kind(k sdk.Kind) tracepb.Span_SpanKind {
	switch k {
	case sdk.KindServer:
		return tracepb.Span_SPAN_KIND_SERVER
	case sdk.KindClient:
		return tracepb.Span_SPAN_KIND_CLIENT
	case sdk.KindProducer:
		return tracepb.Span_SPAN_KIND_PRODUCER
	case sdk.KindConsumer:
		return tracepb.Span_SPAN_KIND_CONSUMER
	}
	return tracepb.Span_SPAN_KIND_INTERNAL
}
