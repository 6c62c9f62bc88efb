package wire

import "unsafe"

// The well-known tag keys: the keys tracehop's proxy gives its spans,
// numbered from 1 in this order. A span with flag 128 writes each tag's
// key as its number here, or as 0 and the key itself; only a driver that
// said at Configure how many of them its decoder knows
// (ConfigureResponse.span_tag_keys) gets such spans, with numbers up to
// that count. The list only grows at its end: a number, once given, keeps
// its key for good, so a driver built against a shorter list still reads
// what it is sent.
//
// Why: a proxy span has a dozen tags, and their keys were half the
// strings every span carried. The host copied each key into the queue and
// the driver read each one back, compared it with the names it maps
// (OpenTelemetry's, in the otlp driver) and checked its UTF-8, for bytes
// that never change: numbered, they cost about 870 fewer instructions per
// span, host and driver (make bench-instr), and a driver keeps per-key
// work in arrays indexed by number (the otlp driver's kept attributes).
var tagKeyNames = [TagKeyCount]string{
	"component",
	"node_id",
	"zone",
	"guid:x-request-id",
	"guid:x-client-trace-id",
	"http.url",
	"http.method",
	"http.protocol",
	"user_agent",
	"peer.address",
	"request_size",
	"response_size",
	"upstream_cluster",
	"upstream_address",
	"http.status_code",
	"grpc.status_code",
	"response_flags",
	"tls.client.identity",
	"tls.client.subject",
	"error",
	"error.message",
	"grpc.path",
	"grpc.authority",
	"grpc.content_type",
	"grpc.timeout",
	"grpc.message",
}

// TagKeyCount is how many well-known tag keys this package knows: what
// the SDK's decoder announces (ConfigureResponse.span_tag_keys). It sizes
// tagKeyNames, so a name too many does not compile and one too few is an
// empty key, which init refuses.
const TagKeyCount = 26

// tagKeyCount is TagKeyCount typed for Layout.
const tagKeyCount = uint16(TagKeyCount)

// The table's own copies of the keys lie in keyText, key n at the start
// of slot n-1 of keySlot bytes, so that TagKeyNumber finds a key's number
// from where its bytes are, without reading them.
const keySlot = 32

var (
	keyText string
	tagKeys [TagKeyCount + 1]string
	keyLen  [TagKeyCount + 1]uint8
)

func init() {
	b := make([]byte, TagKeyCount*keySlot)
	for i, k := range tagKeyNames {
		if k == "" || len(k) > keySlot {
			panic("wire: tag key " + k + " is empty or longer than its slot")
		}
		copy(b[i*keySlot:], k)
	}
	keyText = string(b)
	for i, k := range tagKeyNames {
		tagKeys[i+1] = keyText[i*keySlot : i*keySlot+len(k)]
		keyLen[i+1] = uint8(len(k))
	}
}

// TagKey returns the table's own copy of the well-known key name, which
// TagKeyNumber recognizes; code that makes spans keeps its keys in
// package variables set from it. It panics when name is not in the table:
// it is meant for constants, where a test then fails at once.
func TagKey(name string) string {
	if k := WellKnown(name); TagKeyNumber(k) != 0 {
		return k
	}
	panic("wire.TagKey: " + name + " is not a well-known tag key")
}

// WellKnown returns the table's own copy of name when name is a
// well-known key, and name itself otherwise: for spans made by hand (tests,
// benchmarks) to carry keys as a decoded batch does.
func WellKnown(name string) string {
	for _, k := range tagKeys[1:] {
		if k == name {
			return k
		}
	}
	return name
}

// TagKeyNumber returns the number of key when key is the table's own copy
// of a well-known key (from TagKey, TagKeyName or a decoded batch), and 0
// for any other string, even one with the same bytes. It compares where
// the string lies, not what it holds, so it costs a few instructions
// whatever the key: a driver looks up per-key work in an array with it.
func TagKeyNumber(key string) int {
	// A pointer compared as a number, never turned back into one: the
	// table's text is never freed (a package variable holds it) and Go
	// does not move heap memory.
	off := uintptr(unsafe.Pointer(unsafe.StringData(key))) - uintptr(unsafe.Pointer(unsafe.StringData(keyText)))
	if off >= TagKeyCount*keySlot || off%keySlot != 0 {
		return 0
	}
	n := int(off/keySlot) + 1
	if int(keyLen[n]) != len(key) {
		return 0
	}
	return n
}

// TagKeyName returns the table's copy of well-known key number n, or ""
// when n is not in 1..TagKeyCount.
func TagKeyName(n int) string {
	if n < 1 || n > TagKeyCount {
		return ""
	}
	return tagKeys[n]
}

// Layout is what a driver's batch decoder reads beyond the batch layout of
// protocol version 1, as it said at Configure. The zero Layout is the base
// layout, which every decoder reads.
type Layout struct {
	// TraceState: a span's trace state after its events (flag 64;
	// ConfigureResponse.span_trace_state).
	TraceState bool
	// TagKeys: tag keys as numbers, up to this one (flag 128;
	// ConfigureResponse.span_tag_keys); 0: keys are always written out.
	TagKeys uint16
}

// Full is the layout this package's decoder reads: what the SDK
// announces, and what the host writes for an in-process driver.
var Full = Layout{TraceState: true, TagKeys: tagKeyCount}

// LayoutOf is the layout a driver announced in its ConfigureResponse
// fields span_trace_state and span_tag_keys; numbers beyond this
// package's table are not written.
func LayoutOf(traceState bool, tagKeys uint32) Layout {
	return Layout{TraceState: traceState, TagKeys: uint16(min(tagKeys, uint32(tagKeyCount)))}
}

// Reads says whether a decoder of layout l reads a batch written in
// layout b.
func (l Layout) Reads(b Layout) bool {
	return (l.TraceState || !b.TraceState) && l.TagKeys >= b.TagKeys
}

// Union is the layout that reads what a and b were written in: a batch's
// layout when its spans were written in both.
func (l Layout) Union(b Layout) Layout {
	return Layout{TraceState: l.TraceState || b.TraceState, TagKeys: max(l.TagKeys, b.TagKeys)}
}
