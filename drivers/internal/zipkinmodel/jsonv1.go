package zipkinmodel

import (
	"strconv"
	"time"

	"github.com/tracehop/tracehop/sdk"
)

// Zipkin v1's core annotations, by span kind: what marks the start and the
// end of a span of that kind.
var v1Core = map[sdk.Kind]struct{ start, end string }{
	sdk.KindClient:   {"cs", "cr"},
	sdk.KindServer:   {"sr", "ss"},
	sdk.KindProducer: {"ms", "ws"},
	sdk.KindConsumer: {"wr", "mr"},
}

// AppendJSONV1 appends s to dst as one Zipkin v1 JSON span, the format of
// Zipkin's /api/v1/spans (what the seed's Envoy config posts to), as
// Zipkin's own v2-to-v1 converter writes it: the kind becomes core
// annotations (cs/cr, sr/ss, ms/ws, wr/mr) at the start and the end, each
// with the local endpoint; tags become string binary annotations; a span
// of no remote kind gets the "lc" annotation. A shared server span leaves
// its timestamp and duration to the client that owns them, as v1 does.
//
// The remote endpoint is written as the string binary annotations
// peer.service, peer.ipv4 or peer.ipv6 and peer.port, not as Zipkin's
// boolean address annotations (sa, ca, ma): Jaeger's Zipkin receiver (the
// OpenTelemetry Collector's v1 reader) takes string values only and
// refuses a whole batch with a boolean one.
func AppendJSONV1(dst []byte, s *sdk.Span) []byte {
	dst = append(dst, `{"traceId":"`...)
	dst = s.TraceID.AppendHex(dst)
	dst = append(dst, `","id":"`...)
	dst = s.SpanID.AppendHex(dst)
	dst = append(dst, '"')
	if s.ParentID != 0 {
		dst = append(dst, `,"parentId":"`...)
		dst = s.ParentID.AppendHex(dst)
		dst = append(dst, '"')
	}
	dst = append(dst, `,"name":`...)
	dst = appendJSONString(dst, lower(utf8Safe(s.Name)))
	start := micros(s.StartUnixNano)
	d := jsonDuration(s.Duration)
	if !s.Shared {
		dst = append(dst, `,"timestamp":`...)
		dst = strconv.AppendInt(dst, start, 10)
		if d != 0 {
			dst = append(dst, `,"duration":`...)
			dst = strconv.AppendInt(dst, d, 10)
		}
	}
	if s.Debug {
		dst = append(dst, `,"debug":true`...)
	}
	local := sdk.Endpoint{Service: s.LocalService}
	core, remoteKind := v1Core[s.Kind]
	dst = append(dst, `,"annotations":[`...)
	n := 0
	annotation := func(ts int64, value string) {
		if n > 0 {
			dst = append(dst, ',')
		}
		n++
		dst = append(dst, `{"timestamp":`...)
		dst = strconv.AppendInt(dst, ts, 10)
		dst = append(dst, `,"value":`...)
		dst = appendJSONString(dst, value)
		dst = append(dst, `,"endpoint":`...)
		dst = appendJSONEndpoint(dst, local)
		dst = append(dst, '}')
	}
	if remoteKind {
		annotation(start, core.start)
	}
	for _, e := range s.Events {
		annotation(micros(e.UnixNano), e.Value)
	}
	if remoteKind {
		annotation(start+d, core.end)
	}
	dst = append(dst, `],"binaryAnnotations":[`...)
	n = 0
	binary := func(key string, value []byte, e sdk.Endpoint) {
		if n > 0 {
			dst = append(dst, ',')
		}
		n++
		dst = append(dst, `{"key":`...)
		dst = appendJSONString(dst, key)
		dst = append(dst, `,"value":`...)
		dst = append(dst, value...)
		dst = append(dst, `,"endpoint":`...)
		dst = appendJSONEndpoint(dst, e)
		dst = append(dst, '}')
	}
	var buf []byte
	hasError := false
	for _, t := range s.Tags {
		hasError = hasError || t.Key == "error"
		buf = appendJSONString(buf[:0], t.Value)
		binary(t.Key, buf, local)
	}
	if s.Error && !hasError {
		binary("error", []byte(`"true"`), local)
	}
	if s.Remote.Service != "" {
		binary("peer.service", appendJSONString(buf[:0], lower(utf8Safe(s.Remote.Service))), local)
	}
	if ip := s.Remote.IP.Unmap(); ip.IsValid() {
		key := "peer.ipv6"
		if ip.Is4() {
			key = "peer.ipv4"
		}
		b := append(ip.AppendTo(append(buf[:0], '"')), '"')
		binary(key, b, local)
	}
	if s.Remote.Port != 0 {
		b := append(strconv.AppendUint(append(buf[:0], '"'), uint64(s.Remote.Port), 10), '"')
		binary("peer.port", b, local)
	}
	if !remoteKind {
		// A local span: v1 knows its service only through "lc".
		binary("lc", []byte(`""`), local)
	}
	return append(dst, "]}"...)
}

// AppendJSONV1List appends spans as a Zipkin v1 JSON array.
func AppendJSONV1List(dst []byte, spans []sdk.Span) []byte {
	return appendList(dst, spans, AppendJSONV1)
}

// micros is a time in microseconds since the epoch, rounded as the v2
// encoders round it.
func micros(unixNano int64) int64 {
	return time.Unix(0, unixNano).Round(time.Microsecond).UnixNano() / 1e3
}
