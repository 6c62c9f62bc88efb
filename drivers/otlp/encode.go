package otlp

import (
	"encoding/binary"
	"strconv"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tracehop/tracehop/drivers/internal/utf8scan"
	"github.com/tracehop/tracehop/sdk"
	"github.com/tracehop/tracehop/sdk/attrnames"
)

// Field numbers of the OTLP messages appendRequest writes, from
// opentelemetry/proto/{collector/trace,trace,resource,common}/v1/*.proto.
const (
	fRequestResourceSpans = 1 // ExportTraceServiceRequest.resource_spans
	fResourceSpansRes     = 1 // ResourceSpans.resource
	fResourceSpansScope   = 2 // ResourceSpans.scope_spans
	fResourceAttributes   = 1 // Resource.attributes
	fScopeSpansScope      = 1 // ScopeSpans.scope
	fScopeSpansSpans      = 2 // ScopeSpans.spans
	fScopeName            = 1 // InstrumentationScope.name
	fScopeVersion         = 2 // InstrumentationScope.version
	fSpanTraceID          = 1
	fSpanSpanID           = 2
	fSpanTraceState       = 3
	fSpanParentID         = 4
	fSpanName             = 5
	fSpanKind             = 6
	fSpanStart            = 7 // fixed64
	fSpanEnd              = 8 // fixed64
	fSpanAttributes       = 9
	fSpanEvents           = 11
	fSpanStatus           = 15
	fSpanFlags            = 16 // fixed32
	fEventTime            = 1  // fixed64
	fEventName            = 2
	fStatusMessage        = 2
	fStatusCode           = 3
	fKVKey                = 1
	fKVValue              = 2
	fAnyString            = 1
	fAnyInt               = 3
	statusCodeError       = 2 // Status.STATUS_CODE_ERROR
)

// encoder writes an ExportTraceServiceRequest straight from the spans, as
// the mapper's protobuf structs would marshal (TestEncoderMatchesMapper
// holds it to that, byte count included), without building those structs:
// a proxy span's 20 attributes are 60 allocations through the generated
// types and none here.
//
// It writes in one pass. A message's length goes before it, so the bytes
// for the length are reserved, the message written after them, and the
// length put in once known (putLength). The reservation is what the length
// nearly always needs (2 bytes for a span of 128 B to 16 KiB, 3 for a
// batch up to 2 MiB), so the message is only moved when it is unusually
// small or large. Computing every size first took a fifth of the time.
type encoder struct {
	m *mapper
	// scratch, reused span after span: the span's translated tags, and a
	// copy of a span whose strings are not all valid UTF-8
	tags   []sdk.Tag
	fix    sdk.Span
	groups []group
	// kept is, per well-known tag key (sdk.TagKeyNumber) and kind of
	// span (keptKind), the last value written for it and the attributes
	// it was written as.
	kept [sdk.TagKeyCount + 1][3]keptAttr
}

// keptKind is where encoder.kept keeps a span's tags by its kind: server
// and client spans apart (a sidecar's ingress and egress spans alternate,
// with different values and, for a URL or a peer address, different
// attributes), every other kind together: attrnames.TranslateTag tells
// kinds apart no further (TestKeptKindSlots holds it to that).
func keptKind(k sdk.Kind) int {
	switch k {
	case sdk.KindServer:
		return 0
	case sdk.KindClient:
		return 1
	}
	return 2
}

// keptAttr is what a tag with a well-known key was last written as: most
// of a proxy's tags (component, node_id, the method, the protocol, the
// user agent, the cluster, the status, ...) are the same span after span,
// and writing one again from what it was written as, after comparing its
// value, is a copy where translating, checking and encoding it was about
// 300 instructions (make bench-instr).
type keptAttr struct {
	ok bool
	// misses counts misses in a row; after maxMisses, the key is left
	// alone for rest spans: its values keep changing (a request id, a
	// URL), and keeping them cost a copy each.
	misses uint8
	rest   uint16
	value  []byte // the tag's value
	enc    []byte // its attributes, encoded (fields fSpanAttributes)
}

// How a keptAttr gives up on a key whose values keep changing, and the
// longest value kept. Unlike the Zipkin JSON writer's tag steps, which
// live for one batch and stop keeping for its rest, kept attributes live
// as long as the encoder, batch after batch: a key given up on is tried
// again after restSpans, since traffic changes.
const (
	maxMisses    = 4
	restSpans    = 256
	maxKeptValue = 256
)

type group struct {
	service string
	spans   []int // indexes into the batch, in order
}

// The bytes reserved for the length of a span and of a batch's group.
const (
	spanLenBytes  = 2 // 128 B to 16 KiB
	groupLenBytes = 3 // 16 KiB to 2 MiB
)

func (e *encoder) appendRequest(dst []byte, spans []sdk.Span) []byte {
	e.groupByService(spans)
	for _, g := range e.groups {
		service := valid(g.service)
		dst = appendTag(dst, fRequestResourceSpans, protowire.BytesType)
		rs := len(dst)
		dst = append(dst, make([]byte, groupLenBytes)...)
		dst = appendTag(dst, fResourceSpansRes, protowire.BytesType)
		dst = appendVarint(dst, uint64(e.resourceSize(service)))
		dst = e.appendResource(dst, service)
		dst = appendTag(dst, fResourceSpansScope, protowire.BytesType)
		ss := len(dst)
		dst = append(dst, make([]byte, groupLenBytes)...)
		dst = appendTag(dst, fScopeSpansScope, protowire.BytesType)
		dst = appendVarint(dst, uint64(e.scopeSize()))
		dst = appendString(dst, fScopeName, scopeName)
		dst = appendString(dst, fScopeVersion, valid(e.m.version))
		for _, i := range g.spans {
			s := &spans[i]
			dst = appendTag(dst, fScopeSpansSpans, protowire.BytesType)
			at := len(dst)
			dst = append(dst, make([]byte, spanLenBytes)...)
			var ok bool
			if dst, ok = e.appendSpanKept(dst, s); !ok {
				var name string
				e.tags, name = attrnames.Translate(e.tags[:0], s, e.m.mode)
				// Strings are checked for UTF-8 here, once; the writing
				// takes them as valid.
				if !spanValid(s) {
					s, name = e.repair(s, name, e.tags)
				}
				dst = appendSpan(dst, s, name, e.tags)
			}
			dst = putLength(dst, at, spanLenBytes)
		}
		// Inner first: moving the scope's bytes does not move the
		// resource spans' reservation, which is before them.
		dst = putLength(dst, ss, groupLenBytes)
		dst = putLength(dst, rs, groupLenBytes)
	}
	return dst
}

// appendSpanKept appends s as appendSpan does, writing each tag whose
// key is well-known and whose value is the one written last for it (in a
// span of the same keptKind) from the bytes it was written as. false, with
// dst as it was: a string of s is not ASCII (the caller's path checks and
// repairs UTF-8).
func (e *encoder) appendSpanKept(dst []byte, s *sdk.Span) ([]byte, bool) {
	if !utf8scan.ASCII(ownBits(s)) {
		return dst, false
	}
	start := len(dst)
	dst = appendSpanHead(dst, s)
	slot := keptKind(s.Kind)
	// The span's name comes from its tags: it is written after them (a
	// protobuf message's fields may come in any order), and the one walk
	// of the tags gathers it.
	var facts attrnames.Facts
	for _, t := range s.Tags {
		var k *keptAttr
		n := sdk.TagKeyNumber(t.Key)
		facts.Note(n, t)
		if n != 0 { // a well-known key is ASCII
			k = &e.kept[n][slot]
			switch {
			case k.rest > 0:
				k.rest--
				k = nil
			case k.ok && string(k.value) == t.Value:
				dst = append(dst, k.enc...)
				k.misses = 0
				continue
			}
		} else if !utf8scan.ASCII(utf8scan.OrBytes(0, t.Key)) {
			return dst[:start], false
		}
		if !utf8scan.ASCII(utf8scan.OrBytes(0, t.Value)) {
			return dst[:start], false
		}
		from := len(dst)
		e.tags = attrnames.TranslateTag(e.tags[:0], t, s.Kind, e.m.mode)
		for _, a := range e.tags {
			dst = appendAttr(dst, fSpanAttributes, a.Key, a.Value)
		}
		if k != nil {
			e.keep(k, t.Value, dst[from:])
		}
	}
	name, errType := facts.Naming(s, e.m.mode)
	dst = appendString(dst, fSpanName, name)
	if errType != "" {
		dst = appendAttr(dst, fSpanAttributes, "error.type", errType)
	}
	return appendSpanTail(dst, s), true
}

// keep notes that a tag with value was written as enc.
func (e *encoder) keep(k *keptAttr, value string, enc []byte) {
	if k.ok {
		if k.misses++; k.misses >= maxMisses {
			*k = keptAttr{rest: restSpans, value: k.value[:0], enc: k.enc[:0]}
			return
		}
	}
	if len(value) > maxKeptValue {
		k.ok = false
		return
	}
	k.ok = true
	k.value = append(k.value[:0], value...)
	k.enc = append(k.enc[:0], enc...)
}

// putLength writes, at dst[at:], the varint length of what follows the
// reserved bytes there, moving what follows when the varint is shorter or
// longer than the reservation.
func putLength(dst []byte, at, reserved int) []byte {
	n := uint64(len(dst) - at - reserved)
	need := protowire.SizeVarint(n)
	switch {
	case need < reserved:
		copy(dst[at+need:], dst[at+reserved:])
		dst = dst[:len(dst)-(reserved-need)]
	case need > reserved:
		dst = append(dst, make([]byte, need-reserved)...)
		copy(dst[at+need:], dst[at+reserved:])
	}
	for ; n >= 0x80; n >>= 7 {
		dst[at] = byte(n) | 0x80
		at++
	}
	dst[at] = byte(n)
	return dst
}

// spanValid says whether every string encoded for s is valid UTF-8 (the
// status message is checked where it is made; the service, per group). It
// reads the span's own strings: every translated name and value is one of
// them, a part of one, or a constant. Nearly every string is ASCII: one
// pass ORs their bytes together, and only a span with a byte of 0x80 or
// more has its strings decoded. (Calling utf8.ValidString on each of a
// proxy span's 40 short strings was a quarter of the encoding's time.)
func spanValid(s *sdk.Span) bool {
	bits := ownBits(s)
	for _, t := range s.Tags {
		if sdk.TagKeyNumber(t.Key) == 0 { // a well-known key is ASCII
			bits = utf8scan.OrBytes(bits, t.Key)
		}
		bits = utf8scan.OrBytes(bits, t.Value)
	}
	if utf8scan.ASCII(bits) {
		return true
	}
	ok := utf8.ValidString(s.Name) && utf8.ValidString(s.Remote.Service) && utf8.ValidString(s.TraceState)
	for _, t := range s.Tags {
		ok = ok && utf8.ValidString(t.Key) && utf8.ValidString(t.Value)
	}
	for _, ev := range s.Events {
		ok = ok && utf8.ValidString(ev.Value)
	}
	return ok
}

// ownBits ORs the bytes of the span's strings other than its tags'.
func ownBits(s *sdk.Span) uint64 {
	bits := utf8scan.OrBytes(utf8scan.OrBytes(utf8scan.OrBytes(0, s.Name), s.Remote.Service), s.TraceState)
	for _, ev := range s.Events {
		bits = utf8scan.OrBytes(bits, ev.Value)
	}
	return bits
}

// repair makes the strings of s valid: its translated tags in place (they
// are the encoder's copy), the rest in the encoder's copy of the span.
func (e *encoder) repair(s *sdk.Span, name string, tags []sdk.Tag) (*sdk.Span, string) {
	for j := range tags {
		tags[j].Key, tags[j].Value = valid(tags[j].Key), valid(tags[j].Value)
	}
	e.fix = *s
	e.fix.Remote.Service = valid(s.Remote.Service)
	e.fix.TraceState = valid(s.TraceState)
	e.fix.Events = make([]sdk.Event, len(s.Events))
	for j, ev := range s.Events {
		e.fix.Events[j] = sdk.Event{UnixNano: ev.UnixNano, Value: valid(ev.Value)}
	}
	return &e.fix, valid(name)
}

func (e *encoder) groupByService(spans []sdk.Span) {
	for i := range e.groups {
		e.groups[i].spans = e.groups[i].spans[:0]
	}
	n := 0
outer:
	for i := range spans {
		for g := range e.groups[:n] {
			if e.groups[g].service == spans[i].LocalService {
				e.groups[g].spans = append(e.groups[g].spans, i)
				continue outer
			}
		}
		if n < len(e.groups) {
			e.groups[n].service = spans[i].LocalService
			e.groups[n].spans = append(e.groups[n].spans, i)
		} else {
			e.groups = append(e.groups, group{service: spans[i].LocalService, spans: []int{i}})
		}
		n++
	}
	e.groups = e.groups[:n]
}

// resourceKVs calls f for each resource attribute of service, in the
// mapper's order.
func (e *encoder) resourceKVs(service string, f func(k, v string)) {
	if _, set := e.m.resource["service.name"]; !set {
		f("service.name", service)
	}
	if _, set := e.m.resource["service.instance.id"]; !set && e.m.instance != "" {
		f("service.instance.id", valid(e.m.instance))
	}
	for _, k := range e.m.resourceKeys {
		f(valid(k), valid(e.m.resource[k]))
	}
}

func (e *encoder) resourceSize(service string) int {
	n := 0
	e.resourceKVs(service, func(k, v string) {
		n += sizeTag(fResourceAttributes) + sizeBytes(kvSize(k, v))
	})
	return n
}

func (e *encoder) appendResource(dst []byte, service string) []byte {
	e.resourceKVs(service, func(k, v string) { dst = appendKV(dst, fResourceAttributes, k, v) })
	return dst
}

func (e *encoder) scopeSize() int {
	return stringSize(fScopeName, scopeName) + stringSize(fScopeVersion, valid(e.m.version))
}

func appendSpan(dst []byte, s *sdk.Span, name string, tags []sdk.Tag) []byte {
	dst = appendString(appendSpanHead(dst, s), fSpanName, name)
	for _, t := range tags {
		dst = appendAttr(dst, fSpanAttributes, t.Key, t.Value)
	}
	return appendSpanTail(dst, s)
}

// appendSpanHead writes a span's fields before its attributes, but its name:
// appendSpanKept knows the name only after it has walked the tags.
func appendSpanHead(dst []byte, s *sdk.Span) []byte {
	dst = appendTag(dst, fSpanTraceID, protowire.BytesType)
	dst = appendVarint(dst, 16)
	dst = binary.BigEndian.AppendUint64(dst, s.TraceID.High)
	dst = binary.BigEndian.AppendUint64(dst, s.TraceID.Low)
	dst = appendTag(dst, fSpanSpanID, protowire.BytesType)
	dst = appendVarint(dst, 8)
	dst = binary.BigEndian.AppendUint64(dst, uint64(s.SpanID))
	dst = appendString(dst, fSpanTraceState, s.TraceState)
	if s.ParentID != 0 {
		dst = appendTag(dst, fSpanParentID, protowire.BytesType)
		dst = appendVarint(dst, 8)
		dst = binary.BigEndian.AppendUint64(dst, uint64(s.ParentID))
	}
	// proto3 leaves zero values out.
	if k := kind(s.Kind); k != 0 {
		dst = appendTag(dst, fSpanKind, protowire.VarintType)
		dst = appendVarint(dst, uint64(k))
	}
	if s.StartUnixNano != 0 {
		dst = appendTag(dst, fSpanStart, protowire.Fixed64Type)
		dst = protowire.AppendFixed64(dst, uint64(s.StartUnixNano))
	}
	if end := s.StartUnixNano + int64(s.Duration); end != 0 {
		dst = appendTag(dst, fSpanEnd, protowire.Fixed64Type)
		dst = protowire.AppendFixed64(dst, uint64(end))
	}
	return dst
}

// appendSpanTail writes a span's fields after its tags' attributes.
func appendSpanTail(dst []byte, s *sdk.Span) []byte {
	dst = appendRemote(dst, s)
	for _, ev := range s.Events {
		dst = appendTag(dst, fSpanEvents, protowire.BytesType)
		dst = appendVarint(dst, uint64(eventSize(ev)))
		if ev.UnixNano != 0 {
			dst = appendTag(dst, fEventTime, protowire.Fixed64Type)
			dst = protowire.AppendFixed64(dst, uint64(ev.UnixNano))
		}
		dst = appendString(dst, fEventName, ev.Value)
	}
	if s.Error {
		dst = appendTag(dst, fSpanStatus, protowire.BytesType)
		dst = appendVarint(dst, uint64(statusSize(s)))
		dst = appendString(dst, fStatusMessage, valid(statusMessage(s)))
		dst = appendTag(dst, fStatusCode, protowire.VarintType)
		dst = appendVarint(dst, statusCodeError)
	}
	dst = appendTag(dst, fSpanFlags, protowire.Fixed32Type)
	return protowire.AppendFixed32(dst, spanFlags(s))
}

// spanFlags is the span's W3C trace flags and OTLP's word on its parent;
// mapping.go's toSpan sets the same.
func spanFlags(s *sdk.Span) uint32 {
	var f uint32
	if s.Sampled {
		f = flagSampled
	}
	f |= flagHasIsRemote
	if parentIsRemote(s) {
		f |= flagIsRemote
	}
	return f
}

func eventSize(ev sdk.Event) int {
	n := stringSize(fEventName, ev.Value)
	if ev.UnixNano != 0 {
		n += sizeTag(fEventTime) + protowire.SizeFixed64()
	}
	return n
}

func statusSize(s *sdk.Span) int {
	return stringSize(fStatusMessage, valid(statusMessage(s))) + sizeTag(fStatusCode) + protowire.SizeVarint(statusCodeError)
}

func appendRemote(dst []byte, s *sdk.Span) []byte {
	if s.Remote.Service != "" {
		dst = appendKV(dst, fSpanAttributes, "peer.service", s.Remote.Service)
	}
	if s.Remote.IP.IsValid() {
		var buf [64]byte
		dst = appendKV(dst, fSpanAttributes, "network.peer.address", string(s.Remote.IP.Unmap().AppendTo(buf[:0])))
		if s.Remote.Port != 0 {
			dst = appendIntKV(dst, fSpanAttributes, "network.peer.port", int64(s.Remote.Port))
		}
	}
	return dst
}

// attrInt says whether a tag is written as an int attribute, and which.
func attrInt(k, v string) (int64, bool) {
	if !intAttribute(k) {
		return 0, false
	}
	return parseInt(v)
}

// parseInt is strconv.ParseInt(v, 10, 64) with a fast path for what the
// int attributes nearly always hold: up to 18 plain digits, which cannot
// overflow.
func parseInt(v string) (int64, bool) {
	if v != "" && len(v) <= 18 {
		var n int64
		for i := 0; i < len(v); i++ {
			c := v[i] - '0'
			if c > 9 {
				goto slow
			}
			n = n*10 + int64(c)
		}
		return n, true
	}
slow:
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil
}

func appendAttr(dst []byte, field protowire.Number, k, v string) []byte {
	if n, ok := attrInt(k, v); ok {
		return appendIntKV(dst, field, k, n)
	}
	return appendKV(dst, field, k, v)
}

// A KeyValue with a string AnyValue. proto3 leaves an empty key out, and an
// AnyValue's oneof string is written even when empty.
func kvSize(k, v string) int {
	return stringSize(fKVKey, k) + sizeTag(fKVValue) + sizeBytes(anySize(v))
}

func anySize(v string) int {
	return sizeTag(fAnyString) + sizeBytes(len(v))
}

func appendKV(dst []byte, field protowire.Number, k, v string) []byte {
	// Nearly every attribute: a key, and every length under 128, so
	// each header is one byte and the four before each string are
	// written at once.
	if anyN, kvN := 2+len(v), 4+len(k)+2+len(v); k != "" && kvN < 0x80 && field < 16 {
		dst = append(dst, byte(field)<<3|byte(protowire.BytesType), byte(kvN), fKVKey<<3|byte(protowire.BytesType), byte(len(k)))
		dst = append(dst, k...)
		dst = append(dst, fKVValue<<3|byte(protowire.BytesType), byte(anyN), fAnyString<<3|byte(protowire.BytesType), byte(len(v)))
		return append(dst, v...)
	}
	dst = appendTag(dst, field, protowire.BytesType)
	dst = appendVarint(dst, uint64(kvSize(k, v)))
	dst = appendString(dst, fKVKey, k)
	dst = appendTag(dst, fKVValue, protowire.BytesType)
	dst = appendVarint(dst, uint64(anySize(v)))
	dst = appendTag(dst, fAnyString, protowire.BytesType)
	return protowire.AppendString(dst, v)
}

func intKVSize(k string, n int64) int {
	return stringSize(fKVKey, k) + sizeTag(fKVValue) + sizeBytes(sizeTag(fAnyInt)+protowire.SizeVarint(uint64(n)))
}

func appendIntKV(dst []byte, field protowire.Number, k string, n int64) []byte {
	// As in appendKV: one-byte headers written at once.
	if valN := 1 + protowire.SizeVarint(uint64(n)); k != "" && 4+len(k)+2+valN < 0x80 && field < 16 {
		dst = append(dst, byte(field)<<3|byte(protowire.BytesType), byte(4+len(k)+valN), fKVKey<<3|byte(protowire.BytesType), byte(len(k)))
		dst = append(dst, k...)
		dst = append(dst, fKVValue<<3|byte(protowire.BytesType), byte(valN), fAnyInt<<3|byte(protowire.VarintType))
		return appendVarint(dst, uint64(n))
	}
	dst = appendTag(dst, field, protowire.BytesType)
	dst = appendVarint(dst, uint64(intKVSize(k, n)))
	dst = appendString(dst, fKVKey, k)
	dst = appendTag(dst, fKVValue, protowire.BytesType)
	dst = appendVarint(dst, uint64(sizeTag(fAnyInt)+protowire.SizeVarint(uint64(n))))
	dst = appendTag(dst, fAnyInt, protowire.VarintType)
	return appendVarint(dst, uint64(n))
}

// A proto3 string field, left out when empty. The strings are valid UTF-8
// by now (appendRequest checked them).
func stringSize(field protowire.Number, s string) int {
	if s == "" {
		return 0
	}
	return sizeTag(field) + sizeBytes(len(s))
}

func appendString(dst []byte, field protowire.Number, s string) []byte {
	if s == "" {
		return dst
	}
	dst = appendTag(dst, field, protowire.BytesType)
	return protowire.AppendString(dst, s)
}

// Fast paths of protowire's functions for what nearly every call here
// writes: a field number below 16 (a one-byte tag) and a length or value
// below 128 (a one-byte varint). Small enough to be inlined, which
// protowire's are not.

func appendTag(dst []byte, f protowire.Number, t protowire.Type) []byte {
	if f < 16 {
		return append(dst, byte(f)<<3|byte(t))
	}
	return protowire.AppendTag(dst, f, t)
}

func appendVarint(dst []byte, v uint64) []byte {
	if v < 0x80 {
		return append(dst, byte(v))
	}
	return protowire.AppendVarint(dst, v)
}

func sizeTag(f protowire.Number) int {
	if f < 16 {
		return 1
	}
	return protowire.SizeTag(f)
}

func sizeBytes(n int) int {
	if n < 0x80 {
		return 1 + n
	}
	return protowire.SizeBytes(n)
}
