package wire_test

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/core/wire"
)

// The test vectors of the span batch layout (docs/driver-protocol.md,
// "Test vectors"): testdata/vectors/NAME.hex holds a batch and NAME.json
// what it decodes to, in a JSON shape any language reads. They are the
// contract for every implementation of the layout, this one included:
// TestVectors decodes and encodes them with nothing but the files.
//
// The files are generated from the table in vectors() below:
//
//	TRACEHOP_WRITE_VECTORS=1 go test -run TestVectorsUpToDate ./core/wire/
//
// rewrites them, and without the variable the same test fails when they
// differ from the table.

const vectorDir = "testdata/vectors"

// vectorNow is the "now" every vector is decoded with: the time a decoder
// gives a span whose start is missing (see core.Span.Sanitize).
const vectorNow = 1765000000000000000 // 2025-12-06T05:46:40Z

// vectorFile is the JSON shape of NAME.json.
type vectorFile struct {
	// Description says what the vector is for.
	Description string `json:"description"`
	// SpanCount is ExportRequest.span_count: how many spans to decode.
	SpanCount int `json:"span_count"`
	// Malformed, when set, says why a decoder must reject the batch; such
	// a vector has no spans.
	Malformed string `json:"malformed,omitempty"`
	// DecodeOnly marks a batch that no encoder writes (an encoder given
	// Spans writes other bytes), but that a decoder must read as Spans.
	DecodeOnly bool `json:"decode_only,omitempty"`
	// TraceState marks a batch written for a driver that reads spans'
	// trace states (ConfigureResponse.span_trace_state): flag 64 and a
	// string after the events. Only such a driver gets these bytes; it
	// encodes Spans with the trace states, the others without.
	TraceState bool `json:"trace_state,omitempty"`
	// TagKeys marks a batch written for a driver that knows this many
	// well-known tag keys (ConfigureResponse.span_tag_keys): flag 128, and
	// those keys as their numbers. An encoder writes a tag key that is in
	// the table (section 4.5) as its number, any other as 0 and the key.
	TagKeys int `json:"tag_keys,omitempty"`
	// NowUnixNano is the decoder's "now", for sanitizing.
	NowUnixNano string `json:"now_unix_nano,omitempty"`
	// Spans are the spans as the batch carries them: an encoder given
	// these writes exactly NAME.hex (unless DecodeOnly). Empty for a
	// malformed batch.
	Spans []vectorSpan `json:"spans"`
	// Sanitized are the spans after the decoder's sanitizing, present
	// only when sanitizing changes something: absent, they are Spans.
	Sanitized []vectorSpan `json:"sanitized,omitempty"`
}

// vectorSpan is one span. 64-bit integers are decimal strings (as in
// proto3's JSON mapping: a JSON number cannot hold them exactly in
// JavaScript), ids are lowercase hex of fixed width.
type vectorSpan struct {
	TraceID       string        `json:"trace_id"`
	SpanID        string        `json:"span_id"`
	ParentID      string        `json:"parent_id"`
	StartUnixNano string        `json:"start_unix_nano"`
	DurationNanos string        `json:"duration_nanos"`
	Kind          int           `json:"kind"`
	Error         bool          `json:"error"`
	Sampled       bool          `json:"sampled"`
	Debug         bool          `json:"debug"`
	Shared        bool          `json:"shared"`
	ParentOrigin  int           `json:"parent_origin"`
	Name          vectorString  `json:"name"`
	LocalService  vectorString  `json:"local_service"`
	RemoteService vectorString  `json:"remote_service"`
	RemoteIP      string        `json:"remote_ip"`
	RemotePort    int           `json:"remote_port"`
	Tags          []vectorTag   `json:"tags"`
	Events        []vectorEvent `json:"events"`
	// TraceState is the span's W3C tracestate (flag 64), only in a
	// trace_state vector.
	TraceState vectorString `json:"trace_state,omitempty"`
}

type vectorTag struct {
	Key   vectorString `json:"key"`
	Value vectorString `json:"value"`
}

type vectorEvent struct {
	UnixNano string       `json:"unix_nano"`
	Value    vectorString `json:"value"`
}

// vectorString is a string of the batch: raw bytes, not necessarily
// UTF-8. In JSON it is a string when the bytes are valid UTF-8, else an
// object {"hex": "..."} of the bytes.
type vectorString string

func (s vectorString) MarshalJSON() ([]byte, error) {
	if utf8.ValidString(string(s)) {
		return marshalNoEscape(string(s))
	}
	return marshalNoEscape(map[string]string{"hex": hex.EncodeToString([]byte(s))})
}

func (s *vectorString) UnmarshalJSON(b []byte) error {
	var str string
	if err := json.Unmarshal(b, &str); err == nil {
		*s = vectorString(str)
		return nil
	}
	var obj struct {
		Hex *string `json:"hex"`
	}
	if err := json.Unmarshal(b, &obj); err != nil || obj.Hex == nil {
		return fmt.Errorf("a string must be a JSON string or {\"hex\": ...}, got %s", b)
	}
	raw, err := hex.DecodeString(*obj.Hex)
	if err != nil {
		return err
	}
	*s = vectorString(raw)
	return nil
}

func marshalNoEscape(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

func toVector(s core.Span) vectorSpan {
	v := vectorSpan{
		TraceID:       s.TraceID.String(),
		SpanID:        s.SpanID.String(),
		ParentID:      s.ParentID.String(),
		StartUnixNano: strconv.FormatInt(s.StartUnixNano, 10),
		DurationNanos: strconv.FormatInt(int64(s.Duration), 10),
		Kind:          int(s.Kind),
		Error:         s.Error, Sampled: s.Sampled, Debug: s.Debug, Shared: s.Shared,
		ParentOrigin:  int(s.ParentOrigin),
		Name:          vectorString(s.Name),
		LocalService:  vectorString(s.LocalService),
		RemoteService: vectorString(s.Remote.Service),
		RemotePort:    int(s.Remote.Port),
		Tags:          []vectorTag{},
		Events:        []vectorEvent{},
		TraceState:    vectorString(s.TraceState),
	}
	if s.Remote.IP.IsValid() {
		v.RemoteIP = s.Remote.IP.String()
	}
	for _, t := range s.Tags {
		v.Tags = append(v.Tags, vectorTag{vectorString(t.Key), vectorString(t.Value)})
	}
	for _, e := range s.Events {
		v.Events = append(v.Events, vectorEvent{strconv.FormatInt(e.UnixNano, 10), vectorString(e.Value)})
	}
	return v
}

func fromVector(v vectorSpan) (core.Span, error) {
	var s core.Span
	var errs []error
	id := func(field, h string, digits int) uint64 {
		if len(h) != digits || strings.ToLower(h) != h {
			errs = append(errs, fmt.Errorf("%s: %q is not %d lowercase hex digits", field, h, digits))
			return 0
		}
		n, err := strconv.ParseUint(h, 16, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", field, err))
		}
		return n
	}
	i64 := func(field, d string) int64 {
		n, err := strconv.ParseInt(d, 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", field, err))
		}
		return n
	}
	if len(v.TraceID) == 32 {
		s.TraceID = core.TraceID{High: id("trace_id", v.TraceID[:16], 16), Low: id("trace_id", v.TraceID[16:], 16)}
	} else {
		errs = append(errs, fmt.Errorf("trace_id: %q is not 32 hex digits", v.TraceID))
	}
	s.SpanID = core.SpanID(id("span_id", v.SpanID, 16))
	s.ParentID = core.SpanID(id("parent_id", v.ParentID, 16))
	s.StartUnixNano = i64("start_unix_nano", v.StartUnixNano)
	s.Duration = time.Duration(i64("duration_nanos", v.DurationNanos))
	if v.Kind < 0 || v.Kind > 255 || v.ParentOrigin < 0 || v.ParentOrigin > 3 || v.RemotePort < 0 || v.RemotePort > 65535 {
		errs = append(errs, fmt.Errorf("kind %d, parent_origin %d or remote_port %d out of range", v.Kind, v.ParentOrigin, v.RemotePort))
	}
	s.Kind, s.ParentOrigin = core.Kind(v.Kind), core.ParentOrigin(v.ParentOrigin)
	s.Error, s.Sampled, s.Debug, s.Shared = v.Error, v.Sampled, v.Debug, v.Shared
	s.Name, s.LocalService, s.Remote.Service = string(v.Name), string(v.LocalService), string(v.RemoteService)
	s.TraceState = string(v.TraceState)
	if v.RemoteIP != "" {
		ip, err := netip.ParseAddr(v.RemoteIP)
		if err != nil {
			errs = append(errs, fmt.Errorf("remote_ip: %w", err))
		}
		s.Remote.IP = ip
	}
	s.Remote.Port = uint16(v.RemotePort)
	for _, t := range v.Tags {
		s.Tags = append(s.Tags, core.Tag{Key: string(t.Key), Value: string(t.Value)})
	}
	for i, e := range v.Events {
		s.Events = append(s.Events, core.Event{UnixNano: i64(fmt.Sprintf("events[%d].unix_nano", i), e.UnixNano), Value: string(e.Value)})
	}
	return s, errors.Join(errs...)
}

// vector is one entry of the table the files are generated from.
type vector struct {
	name        string
	description string
	spans       []core.Span
	// patch, when set, turns the encoded batch into bytes no encoder
	// writes: a decode-only vector (spans are then what it decodes to),
	// or a malformed one (when malformed is set).
	patch     func([]byte) []byte
	malformed string
	count     int // span_count when it is not len(spans) (malformed vectors)
	// layout: what the driver the batch is written for reads
	// (wire.AppendBatchLayout); the zero value is the base layout.
	layout wire.Layout
}

// The sandbox's trace (README): front-proxy -> service1 -> service2.
var (
	sandboxTrace = core.TraceID{High: 0x47d4d2301a32fc56, Low: 0xb61da87ffe0d493b}
	frontProxyID = core.SpanID(0x6f1c0b8e2a4d9357)
	service1In   = core.SpanID(0x5b4185666d50f68b)
	service1Out  = core.SpanID(0x0c3e9a71d24f8b16)
)

const t0 = vectorNow + 123456789 // the front proxy's span starts here

// workedExample is the span docs/driver-protocol.md takes apart byte by
// byte: service1's ingress span of the sandbox's trace.
func workedExample() core.Span {
	return core.Span{
		TraceID: sandboxTrace, SpanID: service1In, ParentID: frontProxyID, ParentOrigin: core.ParentRemote,
		Name: "checkavailability", Kind: core.KindServer, LocalService: "service1",
		StartUnixNano: t0 + 310000, Duration: 2350000,
		Tags: []core.Tag{
			{Key: "component", Value: "proxy"},
			{Key: "http.method", Value: "GET"},
			{Key: "http.status_code", Value: "200"},
		},
		Events:  []core.Event{{UnixNano: t0 + 460000, Value: "ws"}},
		Remote:  core.Endpoint{IP: netip.MustParseAddr("127.0.0.1"), Port: 54012},
		Sampled: true,
	}
}

func vectors() []vector {
	root := func(s core.Span) core.Span {
		s.TraceID, s.StartUnixNano, s.Duration, s.Sampled = core.TraceID{Low: 0x7a3f1c9e5b2d4f60}, vectorNow-5000000, 1000000, true
		return s
	}
	child := func(id core.SpanID, s core.Span) core.Span {
		s.TraceID, s.SpanID, s.ParentID = sandboxTrace, id, frontProxyID
		s.StartUnixNano, s.Duration = t0+1000, 1000
		if s.Kind == core.KindUnspecified {
			s.Kind = core.KindInternal
		}
		return s
	}
	long := strings.Repeat("0123456789abcdef", 1024) // 16384 bytes: a 3-byte length
	manyTags := make([]core.Tag, 130)                // a 2-byte count
	for i := range manyTags {
		manyTags[i] = core.Tag{Key: fmt.Sprintf("tag.%03d", i), Value: strconv.Itoa(i)}
	}
	manyTags[129].Value = long
	return []vector{
		{name: "empty", description: "No spans: span_count 0 and no bytes."},
		{
			name:        "worked_example",
			description: "The span docs/driver-protocol.md takes apart byte by byte: service1's ingress span of the sandbox's trace, a SERVER span whose parent is remote, with an IPv4 remote, three tags and an event.",
			spans:       []core.Span{workedExample()},
		},
		{
			name:        "minimal",
			description: "A root INTERNAL span with a 64-bit trace id (high half zero), no flags, every string empty, no remote address, port 0, no tags, no events.",
			spans:       []core.Span{{TraceID: core.TraceID{Low: 0x7a3f1c9e5b2d4f60}, SpanID: 0x7a3f1c9e5b2d4f60, Kind: core.KindInternal, StartUnixNano: vectorNow - 5000000, Duration: 1000000}},
		},
		{
			name:        "two_spans",
			description: "Two spans back to back, as service1's sidecar sends them: its egress CLIENT span (which finished first), then its ingress SERVER span.",
			spans: []core.Span{
				{
					TraceID: sandboxTrace, SpanID: service1Out, ParentID: service1In, ParentOrigin: core.ParentRemote,
					Name: "checkstock", Kind: core.KindClient, LocalService: "service1",
					StartUnixNano: t0 + 1000000, Duration: 980000,
					Tags:    []core.Tag{{Key: "component", Value: "proxy"}, {Key: "upstream_cluster", Value: "service2"}},
					Remote:  core.Endpoint{Service: "service2", IP: netip.MustParseAddr("127.0.0.1"), Port: 9002},
					Sampled: true,
				},
				workedExample(),
			},
		},
		{
			name:        "flags",
			description: "One span per flag: none, error, sampled, debug, shared, then all four.",
			spans: []core.Span{
				child(1, core.Span{Name: "none"}),
				child(2, core.Span{Name: "error", Error: true}),
				child(3, core.Span{Name: "sampled", Sampled: true}),
				child(4, core.Span{Name: "debug", Debug: true}),
				child(5, core.Span{Name: "shared", Shared: true, Kind: core.KindServer}),
				child(6, core.Span{Name: "all", Error: true, Sampled: true, Debug: true, Shared: true}),
			},
		},
		{
			name:        "parent_origin",
			description: "The parent origin in flag bits 16 and 32: unknown (0), local (1), remote (2), the reserved 3 (sanitized to unknown), and remote on a root span (sanitized to unknown: a root has no parent to say anything of).",
			spans: []core.Span{
				child(1, core.Span{Name: "unknown", Sampled: true}),
				child(2, core.Span{Name: "local", Sampled: true, ParentOrigin: core.ParentLocal}),
				child(3, core.Span{Name: "remote", Sampled: true, ParentOrigin: core.ParentRemote}),
				child(4, core.Span{Name: "reserved", Sampled: true, ParentOrigin: 3}),
				root(core.Span{SpanID: 5, Name: "root claiming remote", ParentOrigin: core.ParentRemote, Kind: core.KindServer}),
			},
		},
		{
			name:        "ipv6_remote",
			description: "A CLIENT span whose remote address is IPv6: length 16, then the 16 bytes in network order.",
			spans: []core.Span{root(core.Span{
				SpanID: 0x1122334455667788, Name: "egress", Kind: core.KindClient, LocalService: "service1",
				Remote: core.Endpoint{Service: "service2", IP: netip.MustParseAddr("2001:db8::8a2e:370:7334"), Port: 443},
			})},
		},
		{
			name:        "strings",
			description: "Strings are raw bytes: multi-byte UTF-8, bytes that are not UTF-8 (a tag value and a name), a NUL byte, an empty key and an empty value, and one key twice (order and duplicates are kept).",
			spans: []core.Span{root(core.Span{
				SpanID: 0x0102030405060708, Name: "get /caf\xe9", Kind: core.KindServer, LocalService: "Zoë ☃ 🚀",
				Tags: []core.Tag{
					{Key: "user", Value: "Zoë ☃ 🚀"},
					{Key: "raw", Value: "\xff\xfe not utf-8 \xc3"},
					{Key: "nul", Value: "a\x00b"},
					{Key: "", Value: "empty key"},
					{Key: "empty value", Value: ""},
					{Key: "dup", Value: "first"},
					{Key: "dup", Value: "second"},
				},
			})},
		},
		{
			name:        "events",
			description: "Events: an ordinary one, one with an empty value, and two whose times (0, negative) a decoder replaces with the span's start.",
			spans: []core.Span{root(core.Span{
				SpanID: 0x0a0b0c0d0e0f1011, Name: "with events", Kind: core.KindProducer,
				Events: []core.Event{
					{UnixNano: vectorNow - 4000000, Value: "cs"},
					{UnixNano: vectorNow - 3000000, Value: ""},
					{UnixNano: 0, Value: "time zero"},
					{UnixNano: -1, Value: "time negative"},
				},
			})},
		},
		{
			name:        "sanitize",
			description: "Values a decoder must sanitize: kind 0 and kind 200 (become 5, internal), a negative duration (becomes 0), a start of 0 (becomes now minus the duration), a start of 999 ns (within the epoch's first microsecond, which a microsecond back end reads as 0: now minus the duration too), and a start before the epoch with a duration longer than now (now).",
			spans: []core.Span{
				child(1, core.Span{Name: "kind 0"}),
				child(2, core.Span{Name: "kind 200"}),
				child(3, core.Span{Name: "negative duration"}),
				child(4, core.Span{Name: "start 0"}),
				child(5, core.Span{Name: "start 999"}),
				child(6, core.Span{Name: "start negative"}),
			},
		},
		{
			name:        "extremes",
			description: "The largest values: every id all ones, start and duration the largest int64, port 65535, address 255.255.255.255, kind 4 (consumer).",
			spans: []core.Span{{
				TraceID: core.TraceID{High: ^uint64(0), Low: ^uint64(0)}, SpanID: ^core.SpanID(0), ParentID: ^core.SpanID(0), ParentOrigin: core.ParentLocal,
				Name: "max", Kind: core.KindConsumer, StartUnixNano: 1<<63 - 1, Duration: 1<<63 - 1,
				Remote: core.Endpoint{IP: netip.MustParseAddr("255.255.255.255"), Port: 65535},
			}},
		},
		{
			name:        "long_varints",
			description: "Varints longer than a byte: a 200-byte name (length c8 01), 130 tags (count 82 01), the last with a 16384-byte value (length 80 80 01).",
			spans: []core.Span{root(core.Span{
				SpanID: 0x2222222222222222, Name: strings.Repeat("n", 200), Kind: core.KindInternal, Tags: manyTags,
			})},
		},
		{
			name: "tag_keys",
			description: "For a driver that said at Configure it knows the 26 well-known tag keys (span_tag_keys: 26): flag 128 (flags 0x82: sampled, numbered keys), " +
				"then each tag's key as its number in the table (component is 01, http.method 07, http.status_code 0f) or as 00 and the key itself (tier, a custom tag); " +
				"a span without tags is written as for any driver; the third span has every well-known key, in the table's order, each value its number.",
			spans: []core.Span{
				child(1, core.Span{Name: "numbered", Sampled: true, Tags: []core.Tag{
					{Key: wire.TagKey("component"), Value: "proxy"}, {Key: wire.TagKey("http.method"), Value: "GET"},
					{Key: "tier", Value: "gold"}, {Key: wire.TagKey("http.status_code"), Value: "200"},
				}}),
				child(2, core.Span{Name: "no tags", Sampled: true}),
				child(3, core.Span{Name: "every key", Tags: everyTagKey()}),
			},
			layout: wire.Layout{TagKeys: wire.TagKeyCount},
		},
		{
			name: "tag_keys_long_varints",
			description: "Numbered keys written longer than they need be: component's number 1 as 81 00, and the 0 before a key written out as 80 00. " +
				"A decoder accepts them (decode only: an encoder writes 01 and 00).",
			spans: []core.Span{child(1, core.Span{Name: "long", Tags: []core.Tag{
				{Key: wire.TagKey("component"), Value: "proxy"}, {Key: "tier", Value: "gold"},
			}})},
			layout: wire.Layout{TagKeys: wire.TagKeyCount},
			patch: func(b []byte) []byte {
				at := bytes.Index(b, []byte("\x05proxy")) - 1 // component's number
				b = slices.Concat(b[:at], []byte{0x81, 0x00}, b[at+1:])
				zero := bytes.Index(b, []byte("\x04tier")) - 1 // the 0 before tier
				return slices.Concat(b[:zero], []byte{0x80, 0x00}, b[zero+1:])
			},
		},
		{
			name: "trace_state",
			description: "For a driver that said at Configure it reads trace states (span_trace_state): the first span's W3C tracestate follows its events, " +
				"flag 64 saying so (flags 0x42: sampled, trace state); the second has none, and is written as it would be for any driver.",
			spans: []core.Span{
				child(1, core.Span{Name: "with", Sampled: true, TraceState: "ot=th:8,vendor=x"}),
				child(2, core.Span{Name: "without", Sampled: true}),
			},
			layout: wire.Layout{TraceState: true},
		},
		{
			name:        "ipv4_mapped",
			description: "An IPv4 address sent as 16 bytes (::ffff:10.0.0.7): a decoder reads it as the IPv4 address 10.0.0.7 (an encoder sends IPv4 as 4 bytes).",
			spans:       []core.Span{child(1, core.Span{Name: "mapped", Remote: core.Endpoint{IP: netip.MustParseAddr("10.0.0.7"), Port: 80}})},
			patch: func(b []byte) []byte {
				// name "mapped" (1+6), local service (1), remote service (1), then the address.
				at := flagsOffset + 1 + 7 + 1 + 1
				mapped := netip.MustParseAddr("::ffff:10.0.0.7").As16()
				return slices.Concat(b[:at], []byte{16}, mapped[:], b[at+5:])
			},
		},
		{
			name:        "non_minimal_varints",
			description: "Varints written longer than they need be: the name's length 6 in the longest form a decoder must accept (10 bytes: 86 80 80 80 80 80 80 80 80 00), the tag count 0 as 80 00. An encoder writes the shortest form.",
			spans:       []core.Span{child(1, core.Span{Name: "padded"})},
			patch: func(b []byte) []byte {
				name := flagsOffset + 1
				b = slices.Concat(b[:name], []byte{0x86, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00}, b[name+1:])
				tags := len(b) - 2 // tag count, event count
				return slices.Concat(b[:tags], []byte{0x80, 0x00}, b[tags+1:])
			},
		},
		{
			name: "bad_truncated", malformed: "the batch ends inside the span (its event count is missing)", count: 1,
			spans: []core.Span{child(1, core.Span{Name: "cut"})},
			patch: func(b []byte) []byte { return b[:len(b)-1] },
		},
		{
			name: "bad_trailing_byte", malformed: "a byte is left after span_count spans", count: 1,
			spans: []core.Span{child(1, core.Span{Name: "extra"})},
			patch: func(b []byte) []byte { return append(b, 0) },
		},
		{
			name: "bad_span_count", malformed: "span_count says 2 but the batch holds 1 span", count: 2,
			spans: []core.Span{child(1, core.Span{Name: "one of two", Tags: []core.Tag{{Key: "k", Value: strings.Repeat("v", 64)}}})},
		},
		{
			name: "bad_ip_length", malformed: "the remote address length is 5 (only 0, 4 and 16 are allowed)", count: 1,
			spans: []core.Span{child(1, core.Span{Name: "ip", Remote: core.Endpoint{IP: netip.MustParseAddr("10.0.0.7")}})},
			patch: func(b []byte) []byte { b[flagsOffset+1+3+1+1] = 5; return b },
		},
		{
			name: "bad_string_length", malformed: "the name's length (100) runs past the end of the batch", count: 1,
			spans: []core.Span{child(1, core.Span{Name: "abc"})},
			patch: func(b []byte) []byte { b[flagsOffset+1] = 100; return b },
		},
		{
			// A reader that builds varints with 32-bit operators
			// (JavaScript's | and <<) reads 2^32+5 as 5, and then the
			// whole batch, wrongly, without an error.
			name: "bad_string_length_past_32_bits", malformed: "the name's length is 2^32+5, which runs past the end of the batch (a reader that keeps 32 bits of it reads 5, and the name that follows)", count: 1,
			spans: []core.Span{child(1, core.Span{Name: "abcde"})},
			patch: func(b []byte) []byte {
				name := flagsOffset + 1
				return slices.Concat(b[:name], binary.AppendUvarint(nil, 1<<32+5), b[name+1:])
			},
		},
		{
			name: "bad_varint_overflow", malformed: "the name's length is a varint of 11 bytes (at most 10 are allowed)", count: 1,
			spans: []core.Span{child(1, core.Span{Name: "x", Tags: []core.Tag{{Key: "k", Value: strings.Repeat("v", 32)}}})},
			patch: func(b []byte) []byte {
				name := flagsOffset + 1
				return slices.Concat(b[:name], bytes.Repeat([]byte{0x80}, 10), []byte{0x01}, b[name+1:])
			},
		},
		{
			name: "bad_varint_10th_byte", malformed: "the name's length is a 10-byte varint whose last byte is 2: a value past 2^64-1", count: 1,
			spans: []core.Span{child(1, core.Span{Name: "x", Tags: []core.Tag{{Key: "k", Value: strings.Repeat("v", 32)}}})},
			patch: func(b []byte) []byte {
				name := flagsOffset + 1
				return slices.Concat(b[:name], bytes.Repeat([]byte{0x80}, 9), []byte{0x02}, b[name+1:])
			},
		},
		{
			name: "bad_tag_key_number", malformed: "a tag key number (27) is beyond the well-known keys the decoder announced (26)", count: 1,
			spans:  []core.Span{child(1, core.Span{Name: "tags", Tags: []core.Tag{{Key: wire.TagKey("component"), Value: "proxy"}}})},
			layout: wire.Layout{TagKeys: wire.TagKeyCount},
			patch: func(b []byte) []byte {
				b[len(b)-1-6-1] = wire.TagKeyCount + 1 // event count, the value's 6 bytes, the key's number
				return b
			},
		},
		{
			name: "bad_tag_count", malformed: "the tag count (1000) is more than the bytes left could hold (a tag takes at least 2)", count: 1,
			spans: []core.Span{child(1, core.Span{Name: "tags", Tags: []core.Tag{{Key: "k", Value: "v"}}})},
			patch: func(b []byte) []byte {
				at := len(b) - 1 - 4 - 1 // event count, the tag's 4 bytes, the tag count
				return slices.Concat(b[:at], binary.AppendUvarint(nil, 1000), b[at+1:])
			},
		},
	}
}

// flagsOffset is where a batch's first span has its flags byte: after
// four ids, the start, the duration and the kind. Its name's length
// follows.
const flagsOffset = 6*8 + 1

// sanitizeInputs are the raw values of the "sanitize" vector, which the
// table's spans cannot hold as written (child sets kind and times).
func sanitizeInputs(spans []core.Span) {
	spans[0].Kind = 0
	spans[1].Kind = 200
	spans[2].Duration = -7
	spans[3].StartUnixNano = 0
	spans[3].Duration = 5000
	spans[4].StartUnixNano = 999
	spans[5].StartUnixNano, spans[5].Duration = -1, 1<<62
}

// generate returns the files of every vector: name -> contents.
func generate(t *testing.T) map[string][]byte {
	files := map[string][]byte{}
	now := func() time.Time { return time.Unix(0, vectorNow) }
	for _, v := range vectors() {
		if v.name == "sanitize" {
			sanitizeInputs(v.spans)
		}
		batch := wire.AppendBatchLayout(nil, v.spans, v.layout)
		if v.patch != nil {
			batch = v.patch(batch)
		}
		f := vectorFile{Description: v.description, SpanCount: len(v.spans), Spans: []vectorSpan{},
			TraceState: v.layout.TraceState, TagKeys: int(v.layout.TagKeys)}
		if v.malformed != "" {
			f.Description, f.Malformed, f.SpanCount = "A decoder must reject this batch: "+v.malformed+".", v.malformed, v.count
			if _, err := wire.DecodeBatch(nil, batch, v.count, now); !errors.Is(err, wire.ErrMalformedBatch) {
				t.Fatalf("%s: the Go decoder accepts the malformed batch: %v", v.name, err)
			}
		} else {
			decoded, err := wire.DecodeBatch(nil, batch, len(v.spans), now)
			if err != nil {
				t.Fatalf("%s: %v", v.name, err)
			}
			f.NowUnixNano = strconv.FormatInt(vectorNow, 10)
			f.DecodeOnly = v.patch != nil
			for _, s := range v.spans {
				f.Spans = append(f.Spans, toVector(s))
			}
			sanitized := []vectorSpan{}
			for _, s := range decoded {
				sanitized = append(sanitized, toVector(s))
			}
			if !reflect.DeepEqual(sanitized, f.Spans) {
				if f.DecodeOnly {
					t.Fatalf("%s: a decode-only vector decodes to %+v, not to its spans", v.name, sanitized)
				}
				f.Sanitized = sanitized
			}
		}
		var js bytes.Buffer
		enc := json.NewEncoder(&js)
		enc.SetEscapeHTML(false) // the files are read by people too
		enc.SetIndent("", "  ")
		if err := enc.Encode(f); err != nil {
			t.Fatal(err)
		}
		files[v.name+".json"] = js.Bytes()
		files[v.name+".hex"] = hexLines(batch)
	}
	files["worked_example.annotated.txt"] = []byte(annotate(wire.AppendBatch(nil, []core.Span{workedExample()})))
	files["worked_example.ring_header.txt"] = []byte(ringHeaderExample())
	return files
}

// hexLines is b in lowercase hex, 32 bytes a line.
func hexLines(b []byte) []byte {
	var out []byte
	for len(b) > 0 {
		n := min(32, len(b))
		out = append(hex.AppendEncode(out, b[:n]), '\n')
		b = b[n:]
	}
	return out
}

// TestVectorsUpToDate checks that the files are what the table makes
// (and rewrites them with TRACEHOP_WRITE_VECTORS=1), and that the worked
// example in docs/driver-protocol.md is the annotated batch.
func TestVectorsUpToDate(t *testing.T) {
	want := generate(t)
	if os.Getenv("TRACEHOP_WRITE_VECTORS") == "1" {
		old, _ := filepath.Glob(filepath.Join(vectorDir, "*"))
		for _, p := range old {
			if _, keep := want[filepath.Base(p)]; !keep && filepath.Base(p) != "README.md" {
				os.Remove(p)
			}
		}
		if err := os.MkdirAll(vectorDir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, b := range want {
			if err := os.WriteFile(filepath.Join(vectorDir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	have, _ := filepath.Glob(filepath.Join(vectorDir, "*"))
	for _, p := range have {
		if _, ok := want[filepath.Base(p)]; !ok && filepath.Base(p) != "README.md" {
			t.Errorf("%s is no vector of the table: remove it (TRACEHOP_WRITE_VECTORS=1 does)", p)
		}
	}
	for name, b := range want {
		got, err := os.ReadFile(filepath.Join(vectorDir, name))
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("%s/%s differs from what the table makes: run TRACEHOP_WRITE_VECTORS=1 go test -run TestVectorsUpToDate ./core/wire/ and review the diff", vectorDir, name)
		}
	}
	doc, err := os.ReadFile("../../docs/driver-protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(doc, want["worked_example.annotated.txt"]) {
		t.Errorf("docs/driver-protocol.md does not show the worked example as %s/worked_example.annotated.txt has it", vectorDir)
	}
	if !bytes.Contains(doc, want["worked_example.ring_header.txt"]) {
		t.Errorf("docs/driver-protocol.md does not show the region header as %s/worked_example.ring_header.txt has it", vectorDir)
	}
	if !bytes.Contains(doc, want["worked_example.hex"]) {
		t.Errorf("docs/driver-protocol.md does not show the worked example's bytes as %s/worked_example.hex has them", vectorDir)
	}
}

// TestVectors checks the Go implementation against the files alone, as
// another implementation would be: each batch decodes to its JSON (or is
// rejected), and each JSON encodes to its batch.
func TestVectors(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join(vectorDir, "*.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no vectors in %s: %v", vectorDir, err)
	}
	for _, p := range paths {
		name := strings.TrimSuffix(filepath.Base(p), ".json")
		t.Run(name, func(t *testing.T) {
			var f vectorFile
			js, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			dec := json.NewDecoder(bytes.NewReader(js))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&f); err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			hx, err := os.ReadFile(strings.TrimSuffix(p, ".json") + ".hex")
			if err != nil {
				t.Fatal(err)
			}
			batch, err := hex.DecodeString(strings.Join(strings.Fields(string(hx)), ""))
			if err != nil {
				t.Fatal(err)
			}
			now := func() time.Time { return time.Unix(0, 0) }
			if f.NowUnixNano != "" {
				n, err := strconv.ParseInt(f.NowUnixNano, 10, 64)
				if err != nil {
					t.Fatal(err)
				}
				now = func() time.Time { return time.Unix(0, n) }
			}
			got, err := wire.DecodeBatch(nil, batch, f.SpanCount, now)
			if f.Malformed != "" {
				if !errors.Is(err, wire.ErrMalformedBatch) {
					t.Fatalf("decoded a batch that is malformed (%s): %v", f.Malformed, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			spans := spansOf(t, f.Spans)
			want := spans
			if f.Sanitized != nil {
				want = spansOf(t, f.Sanitized)
			}
			if len(got) != len(want) {
				t.Fatalf("decoded %d spans, want %d", len(got), len(want))
			}
			for i := range got {
				if !reflect.DeepEqual(got[i], want[i]) {
					t.Errorf("span %d decodes to\n%+v\nwant\n%+v", i, got[i], want[i])
				}
			}
			if f.TagKeys > 0 {
				tableKeys(spans)
			}
			enc := wire.AppendBatchLayout(nil, spans, wire.LayoutOf(f.TraceState, uint32(f.TagKeys)))
			if !f.DecodeOnly && !bytes.Equal(enc, batch) {
				t.Errorf("the spans encode to\n%x\nwant\n%x", enc, batch)
			}
		})
	}
}

// tableKeys makes every tag key of spans that is a well-known key the
// table's own copy, which the encoder writes as its number: a key read
// from JSON has the bytes, not the identity.
func tableKeys(spans []core.Span) {
	for i := range spans {
		for j := range spans[i].Tags {
			spans[i].Tags[j].Key = wire.WellKnown(spans[i].Tags[j].Key)
		}
	}
}

// everyTagKey is a tag for each well-known key, in the table's order,
// each value naming its number.
func everyTagKey() []core.Tag {
	tags := make([]core.Tag, 0, wire.TagKeyCount)
	for n := 1; n <= wire.TagKeyCount; n++ {
		tags = append(tags, core.Tag{Key: wire.TagKeyName(n), Value: strconv.Itoa(n)})
	}
	return tags
}

func spansOf(t *testing.T, vs []vectorSpan) []core.Span {
	t.Helper()
	out := make([]core.Span, len(vs))
	for i, v := range vs {
		s, err := fromVector(v)
		if err != nil {
			t.Fatalf("span %d: %v", i, err)
		}
		out[i] = s
	}
	return out
}

// annotate takes a batch of one span apart field by field: the worked
// example of docs/driver-protocol.md.
func annotate(b []byte) string {
	var sb strings.Builder
	off := 0
	row := func(n int, field, meaning string) {
		for first := true; first || n > 0; first = false {
			k := min(n, 8)
			hx := ""
			for i, c := range b[off : off+k] {
				if i > 0 {
					hx += " "
				}
				hx += fmt.Sprintf("%02x", c)
			}
			if first {
				fmt.Fprintf(&sb, "%04x  %-23s  %-21s %s\n", off, hx, field, meaning)
			} else {
				fmt.Fprintf(&sb, "%04x  %s\n", off, hx)
			}
			off += k
			n -= k
		}
	}
	u64 := func(field string, signed bool) uint64 {
		v := binary.LittleEndian.Uint64(b[off:])
		meaning := fmt.Sprintf("0x%016x", v)
		if signed {
			meaning = strconv.FormatInt(int64(v), 10)
		}
		row(8, field, meaning)
		return v
	}
	uvarint := func(field, what string) int {
		v, n := binary.Uvarint(b[off:])
		row(n, field, fmt.Sprintf("%d%s", v, what))
		return int(v)
	}
	str := func(field string) {
		n := uvarint(field+" length", "")
		if n > 0 {
			row(n, field, strconv.Quote(string(b[off:off+n])))
		}
	}
	u64("trace id, high", false)
	u64("trace id, low", false)
	u64("span id", false)
	u64("parent id", false)
	start := u64("start", true)
	row(8, "duration", fmt.Sprintf("%d ns", int64(binary.LittleEndian.Uint64(b[off:]))))
	kinds := []string{"unspecified", "server", "client", "producer", "consumer", "internal"}
	row(1, "kind", fmt.Sprintf("%d (%s)", b[off], kinds[b[off]]))
	flags := b[off]
	var set []string
	for bit, name := range []string{"error", "sampled", "debug", "shared"} {
		if flags&(1<<bit) != 0 {
			set = append(set, fmt.Sprintf("%s (%d)", name, 1<<bit))
		}
	}
	origins := []string{"unknown", "local", "remote", "reserved"}
	set = append(set, fmt.Sprintf("parent origin %s (%d<<4)", origins[flags>>4&3], flags>>4&3))
	row(1, "flags", fmt.Sprintf("0x%02x: %s", flags, strings.Join(set, " | ")))
	str("name")
	str("local service")
	str("remote service")
	ipLen := int(b[off])
	row(1, "remote ip length", strconv.Itoa(ipLen))
	if ipLen > 0 {
		ip, _ := netip.AddrFromSlice(b[off : off+ipLen])
		row(ipLen, "remote ip", ip.String())
	}
	row(2, "remote port", strconv.Itoa(int(binary.LittleEndian.Uint16(b[off:]))))
	for i, n := 0, uvarint("tag count", ""); i < n; i++ {
		str(fmt.Sprintf("tag %d key", i))
		str(fmt.Sprintf("tag %d value", i))
	}
	for i, n := 0, uvarint("event count", ""); i < n; i++ {
		ts := int64(binary.LittleEndian.Uint64(b[off:]))
		row(8, fmt.Sprintf("event %d time", i), fmt.Sprintf("%d (start + %d ns)", ts, ts-int64(start)))
		str(fmt.Sprintf("event %d value", i))
	}
	fmt.Fprintf(&sb, "%04x  (end: %d bytes)\n", off, off)
	return sb.String()
}

// ringHeaderExample is the header of the worked example's region when the
// host places it at the start of the span ring as its first batch.
func ringHeaderExample() string {
	batch := wire.AppendBatch(nil, []core.Span{workedExample()})
	ring := make([]byte, 64)
	wire.PutRingHeader(ring, 0, len(batch), 1)
	wire.SetRingSeq(ring, 0, 1)
	h := ring[:wire.RingHeaderBytes]
	return fmt.Sprintf("0000  % x  sequence number  %d\n0008  % x              batch length     %d\n000c  % x              span count       %d\n0010  (the batch: %d bytes, as above)\n",
		h[0:8], binary.LittleEndian.Uint64(h), h[8:12], binary.LittleEndian.Uint32(h[8:]), h[12:16], binary.LittleEndian.Uint32(h[12:]), len(batch))
}
