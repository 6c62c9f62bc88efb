// Package zipkinmodel converts tracehop spans to and from zipkin-go's span
// model, the Zipkin v2 format that the file and zipkin drivers both write.
package zipkinmodel

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/openzipkin/zipkin-go/model"

	"github.com/tracehop/tracehop/drivers/internal/utf8scan"
	"github.com/tracehop/tracehop/sdk"
)

var toKind = map[sdk.Kind]model.Kind{
	sdk.KindServer:   model.Server,
	sdk.KindClient:   model.Client,
	sdk.KindProducer: model.Producer,
	sdk.KindConsumer: model.Consumer,
}

// utf8 returns s with invalid UTF-8 replaced by U+FFFD. Header values need
// not be UTF-8, but Zipkin's proto3 encoding refuses such strings, and one
// would fail the whole batch. Valid strings are returned as they are.
func utf8Safe(s string) string {
	if utf8scan.Valid(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// ToModel converts s to Zipkin's model. Zipkin marks an error with an
// "error" tag: a span flagged as an error without one gets error=true.
func ToModel(s *sdk.Span, dst *model.SpanModel) {
	*dst = model.SpanModel{
		SpanContext: model.SpanContext{
			TraceID: model.TraceID{High: s.TraceID.High, Low: s.TraceID.Low},
			ID:      model.ID(s.SpanID),
			Debug:   s.Debug,
		},
		Name:      utf8Safe(s.Name),
		Kind:      toKind[s.Kind],
		Timestamp: time.Unix(0, s.StartUnixNano),
		Duration:  s.Duration,
		Shared:    s.Shared,
	}
	if s.ParentID != 0 {
		p := model.ID(s.ParentID)
		dst.ParentID = &p
	}
	if s.LocalService != "" {
		dst.LocalEndpoint = &model.Endpoint{ServiceName: utf8Safe(s.LocalService)}
	}
	if !s.Remote.IsZero() {
		ep := &model.Endpoint{ServiceName: utf8Safe(s.Remote.Service), Port: s.Remote.Port}
		if ip := s.Remote.IP.Unmap(); ip.Is4() {
			b := ip.As4()
			ep.IPv4 = net.IP(b[:])
		} else if ip.Is6() {
			b := ip.As16()
			ep.IPv6 = net.IP(b[:])
		}
		dst.RemoteEndpoint = ep
	}
	if len(s.Tags) > 0 || s.Error {
		dst.Tags = make(map[string]string, len(s.Tags)+1)
		for _, t := range s.Tags {
			dst.Tags[utf8Safe(t.Key)] = utf8Safe(t.Value)
		}
		if _, ok := dst.Tags["error"]; s.Error && !ok {
			dst.Tags["error"] = "true"
		}
	}
	if len(s.Events) > 0 {
		dst.Annotations = make([]model.Annotation, len(s.Events))
		for i, e := range s.Events {
			dst.Annotations[i] = model.Annotation{Timestamp: time.Unix(0, e.UnixNano), Value: utf8Safe(e.Value)}
		}
	}
}

var fromKind = map[model.Kind]sdk.Kind{
	model.Server:   sdk.KindServer,
	model.Client:   sdk.KindClient,
	model.Producer: sdk.KindProducer,
	model.Consumer: sdk.KindConsumer,
}

// FromModel converts a Zipkin span back, for tools and tests that read what
// a driver wrote. Tags come back sorted by key, since Zipkin keeps a map.
func FromModel(m *model.SpanModel) sdk.Span {
	s := sdk.Span{
		TraceID:       sdk.TraceID{High: m.TraceID.High, Low: m.TraceID.Low},
		SpanID:        sdk.SpanID(m.ID),
		Name:          m.Name,
		Kind:          sdk.KindInternal,
		StartUnixNano: m.Timestamp.UnixNano(),
		Duration:      m.Duration,
		Shared:        m.Shared,
		Debug:         m.Debug,
		Sampled:       true,
	}
	if k, ok := fromKind[m.Kind]; ok {
		s.Kind = k
	}
	if m.ParentID != nil {
		s.ParentID = sdk.SpanID(*m.ParentID)
	}
	if m.LocalEndpoint != nil {
		s.LocalService = m.LocalEndpoint.ServiceName
	}
	if r := m.RemoteEndpoint; r != nil {
		s.Remote.Service = r.ServiceName
		s.Remote.Port = r.Port
		if ip, ok := netip.AddrFromSlice(r.IPv4.To4()); ok && r.IPv4 != nil {
			s.Remote.IP = ip
		} else if ip, ok := netip.AddrFromSlice(r.IPv6); ok {
			s.Remote.IP = ip
		}
	}
	for k, v := range m.Tags {
		s.Tags = append(s.Tags, sdk.Tag{Key: k, Value: v})
		if k == "error" {
			s.Error = true
		}
	}
	slices.SortFunc(s.Tags, func(a, b sdk.Tag) int { return strings.Compare(a.Key, b.Key) })
	for _, a := range m.Annotations {
		s.Events = append(s.Events, sdk.Event{UnixNano: a.Timestamp.UnixNano(), Value: a.Value})
	}
	return s
}
