package zipkinmodel

import (
	"encoding/binary"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tracehop/tracehop/sdk"
)

// AppendProto appends spans to dst as a Zipkin v2 ListOfSpans in proto3,
// the payload zipkin-go's zipkin_proto3.SpanSerializer writes for the
// models ToModel makes, field for field. It encodes straight from the
// spans: going through zipkin-go's model (a tag map per span) and its
// generated messages cost the driver about 7 µs per span, most of the
// tracing budget of a request (issue 6). scratch is reused between spans;
// the result and the grown scratch are returned.
func AppendProto(dst, scratch []byte, spans []sdk.Span) (out, scratchOut []byte) {
	for i := range spans {
		scratch = appendSpan(scratch[:0], &spans[i])
		dst = protowire.AppendTag(dst, 1, protowire.BytesType)
		dst = protowire.AppendBytes(dst, scratch)
	}
	return dst, scratch
}

// Zipkin's proto3 Span.Kind values.
var protoKind = [...]uint64{sdk.KindServer: 2, sdk.KindClient: 1, sdk.KindProducer: 3, sdk.KindConsumer: 4}

func appendSpan(b []byte, s *sdk.Span) []byte {
	var id [16]byte
	binary.BigEndian.PutUint64(id[:8], s.TraceID.High)
	binary.BigEndian.PutUint64(id[8:], s.TraceID.Low)
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendBytes(b, id[:])
	// zipkin-go writes a zero parent id rather than none.
	binary.BigEndian.PutUint64(id[:8], uint64(s.ParentID))
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendBytes(b, id[:8])
	binary.BigEndian.PutUint64(id[:8], uint64(s.SpanID))
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	b = protowire.AppendBytes(b, id[:8])
	if int(s.Kind) < len(protoKind) && protoKind[s.Kind] != 0 {
		b = protowire.AppendTag(b, 4, protowire.VarintType)
		b = protowire.AppendVarint(b, protoKind[s.Kind])
	}
	b = appendString(b, 5, s.Name)
	if ts := time.Unix(0, s.StartUnixNano).Round(time.Microsecond).UnixNano() / 1e3; ts != 0 {
		b = protowire.AppendTag(b, 6, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, uint64(ts))
	}
	if d := uint64(s.Duration.Nanoseconds() / 1e3); d != 0 {
		b = protowire.AppendTag(b, 7, protowire.VarintType)
		b = protowire.AppendVarint(b, d)
	}
	if s.LocalService != "" {
		b = appendEndpoint(b, 8, sdk.Endpoint{Service: s.LocalService})
	}
	if !s.Remote.IsZero() {
		b = appendEndpoint(b, 9, s.Remote)
	}
	for _, e := range s.Events {
		v := utf8Safe(e.Value)
		b = protowire.AppendTag(b, 10, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(9+stringSize(2, v)))
		b = protowire.AppendTag(b, 1, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, uint64(e.UnixNano)/1e3)
		b = appendString(b, 2, v)
	}
	hasError := false
	for _, t := range s.Tags {
		b = appendTag(b, t.Key, t.Value)
		hasError = hasError || t.Key == "error"
	}
	if s.Error && !hasError {
		b = appendTag(b, "error", "true")
	}
	if s.Debug {
		b = protowire.AppendTag(b, 12, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
	}
	if s.Shared {
		b = protowire.AppendTag(b, 13, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
	}
	return b
}

// appendTag appends one entry of the tags map (field 11); a later entry
// with the same key wins, as the map assignment in ToModel does.
func appendTag(b []byte, k, v string) []byte {
	k, v = utf8Safe(k), utf8Safe(v)
	b = protowire.AppendTag(b, 11, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(protowire.SizeTag(1)+protowire.SizeBytes(len(k))+protowire.SizeTag(2)+protowire.SizeBytes(len(v))))
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, k)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	return protowire.AppendString(b, v)
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, utf8Safe(s))
}

func stringSize(num protowire.Number, s string) int {
	if s == "" {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeBytes(len(s))
}

func appendEndpoint(b []byte, num protowire.Number, e sdk.Endpoint) []byte {
	service := utf8Safe(e.Service)
	var ip []byte
	var ipField protowire.Number
	if a := e.IP.Unmap(); a.Is4() {
		v := a.As4()
		ip, ipField = v[:], 2
	} else if a.Is6() {
		v := a.As16()
		ip, ipField = v[:], 3
	}
	size := stringSize(1, service)
	if ip != nil {
		size += protowire.SizeTag(ipField) + protowire.SizeBytes(len(ip))
	}
	if e.Port != 0 {
		size += protowire.SizeTag(4) + protowire.SizeVarint(uint64(int64(int32(e.Port))))
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(size))
	b = appendString(b, 1, service)
	if ip != nil {
		b = protowire.AppendTag(b, ipField, protowire.BytesType)
		b = protowire.AppendBytes(b, ip)
	}
	if e.Port != 0 {
		b = protowire.AppendTag(b, 4, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(int64(int32(e.Port))))
	}
	return b
}
