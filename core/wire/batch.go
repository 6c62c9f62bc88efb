package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
	"unsafe"

	"github.com/tracehop/tracehop/core"
)

// The span batch layout of ExportRequest.spans, protocol version 1. Every
// span is, in order (integers little-endian, "str" is a uvarint length
// followed by that many raw bytes):
//
//	trace id high u64 | trace id low u64 | span id u64 | parent id u64
//	start (unix ns) i64 | duration (ns) i64 | kind u8 | flags u8
//	name str | local service str
//	remote service str | remote ip length u8 (0, 4 or 16) + ip | remote port u16
//	tag count uvarint, then per tag: key str | value str
//	  (with flag 128: key number uvarint [key str when 0] | value str)
//	event count uvarint, then per event: time (unix ns) i64 | value str
//	[trace state str, when flag 64 is set]
//
// Flags: 1 error, 2 sampled, 4 debug, 8 shared; bits 16 and 32 hold the
// parent's origin, core.ParentOrigin's value (0 unknown, 1 local, 2 remote;
// 3 is reserved and read as unknown); 64 says the span's trace state
// follows its events; 128 says the span's tag keys are written as numbers
// (keys.go). Kinds are core.Kind's values.
//
// Growing the layout without a new protocol version: a flag's zero means
// "nothing said", and the parent's origin arrived as flag bits an older
// decoder ignores (a driver reading an older host's batch sees
// ParentUnknown and falls back to the span's kind). All eight bits are now
// taken, so the layout grows only as the trace state (flag 64) and the
// numbered keys (flag 128) did: written only to a driver whose decoder
// said at Configure that it reads them (ConfigureResponse.span_trace_state
// and span_tag_keys, which the SDK sets). A Layout says what a driver
// reads, and AppendBatchLayout writes for it. Anything else needs a new
// ProtocolVersion.

// Span flag bits in the batch layout.
const (
	flagError = 1 << iota
	flagSampled
	flagDebug
	flagShared
	// parentOriginShift places core.ParentOrigin in bits 4 and 5.
	parentOriginShift = iota
	parentOriginMask  = 3 << parentOriginShift
	// flagTraceState says the span's trace state follows its events.
	flagTraceState = 64
	// flagTagKeys says the span's tag keys are numbers (TagKeyNumber),
	// 0 being followed by the key.
	flagTagKeys = 128
)

// A key number is written as one byte while the table stays under 128.
const _ = uint8(127 - TagKeyCount)

// ErrMalformedBatch is wrapped by every DecodeBatch error.
var ErrMalformedBatch = errors.New("malformed span batch")

// AppendBatch appends spans to dst in the base batch layout, which every
// decoder reads: without trace states, every tag key written out.
func AppendBatch(dst []byte, spans []core.Span) []byte {
	return AppendBatchLayout(dst, spans, Layout{})
}

// AppendBatchLayout appends spans to dst in the batch layout, for a
// decoder that reads l.
func AppendBatchLayout(dst []byte, spans []core.Span, l Layout) []byte {
	for i := range spans {
		dst = AppendSpan(dst, &spans[i], l)
	}
	return dst
}

// AppendSpan appends one span to dst in the batch layout, for a decoder
// that reads l: a batch is its spans' layouts back to back. With
// l.TraceState, a span that has a trace state carries it (flag 64); with
// l.TagKeys, its well-known tag keys up to that number are written as
// numbers (flag 128). The pipeline encodes every span once, as the span
// is queued (core/pipeline).
func AppendSpan(dst []byte, s *core.Span, l Layout) []byte {
	dst = binary.LittleEndian.AppendUint64(dst, s.TraceID.High)
	dst = binary.LittleEndian.AppendUint64(dst, s.TraceID.Low)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(s.SpanID))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(s.ParentID))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(s.StartUnixNano))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(s.Duration))
	var flags byte
	if s.Error {
		flags |= flagError
	}
	if s.Sampled {
		flags |= flagSampled
	}
	if s.Debug {
		flags |= flagDebug
	}
	if s.Shared {
		flags |= flagShared
	}
	flags |= byte(s.ParentOrigin) << parentOriginShift & parentOriginMask
	withState := l.TraceState && s.TraceState != ""
	if withState {
		flags |= flagTraceState
	}
	numbered := l.TagKeys != 0 && len(s.Tags) > 0
	if numbered {
		flags |= flagTagKeys
	}
	dst = append(dst, byte(s.Kind), flags)
	dst = appendStr(dst, s.Name)
	dst = appendStr(dst, s.LocalService)
	dst = appendStr(dst, s.Remote.Service)
	switch ip := s.Remote.IP.Unmap(); {
	case ip.Is4():
		b := ip.As4()
		dst = append(append(dst, 4), b[:]...)
	case ip.Is6():
		b := ip.As16()
		dst = append(append(dst, 16), b[:]...)
	default:
		dst = append(dst, 0)
	}
	dst = binary.LittleEndian.AppendUint16(dst, s.Remote.Port)
	dst = binary.AppendUvarint(dst, uint64(len(s.Tags)))
	for i := range s.Tags {
		t := &s.Tags[i]
		if numbered {
			if n := TagKeyNumber(t.Key); n != 0 && n <= int(l.TagKeys) {
				if len(t.Value) < 0x80 {
					dst = append(append(dst, byte(n), byte(len(t.Value))), t.Value...)
					continue
				}
				dst = appendStr(append(dst, byte(n)), t.Value)
				continue
			}
			dst = append(dst, 0)
		}
		dst = appendStr(appendStr(dst, t.Key), t.Value)
	}
	dst = binary.AppendUvarint(dst, uint64(len(s.Events)))
	for _, e := range s.Events {
		dst = binary.LittleEndian.AppendUint64(dst, uint64(e.UnixNano))
		dst = appendStr(dst, e.Value)
	}
	if withState {
		dst = appendStr(dst, s.TraceState)
	}
	return dst
}

// SpanLen is the length of AppendSpan's output for s: what a queue
// reserves before it encodes a span in place where it may not fit (near
// the end of its memory, or a span larger than the room it keeps).
func SpanLen(s *core.Span, l Layout) int {
	n := 6*8 + 2 + strLen(s.Name) + strLen(s.LocalService) + strLen(s.Remote.Service) + 1 + 2
	switch ip := s.Remote.IP.Unmap(); {
	case ip.Is4():
		n += 4
	case ip.Is6():
		n += 16
	}
	n += uvarintLen(uint64(len(s.Tags)))
	numbered := l.TagKeys != 0
	for i := range s.Tags {
		n += strLen(s.Tags[i].Value)
		if numbered {
			n++ // the key's number, or the 0 before it
			if k := TagKeyNumber(s.Tags[i].Key); k != 0 && k <= int(l.TagKeys) {
				continue
			}
		}
		n += strLen(s.Tags[i].Key)
	}
	n += uvarintLen(uint64(len(s.Events)))
	for i := range s.Events {
		n += 8 + strLen(s.Events[i].Value)
	}
	if l.TraceState && s.TraceState != "" {
		n += strLen(s.TraceState)
	}
	return n
}

func strLen(s string) int { return uvarintLen(uint64(len(s))) + len(s) }

// uvarintLen is the length of v as a uvarint: 7 bits a byte. The loop
// stays: SpanLen takes it for each of a span's 40-odd strings, nearly all
// shorter than 128 bytes, and for those it is one compare, where a
// branchless bits.Len64 form (BSR, its zero check, a division by 7) ran 90
// more instructions per span under make bench-instr.
func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

func appendStr(dst []byte, s string) []byte {
	if len(s) < 0x80 {
		// Nearly every string of a proxy span: a one-byte length, without
		// AppendUvarint's loop.
		return append(append(dst, byte(len(s))), s...)
	}
	return append(binary.AppendUvarint(dst, uint64(len(s))), s...)
}

// batchReader reads the layout with bounds checks; the first problem sticks
// in err and every later read returns zero values.
type batchReader struct {
	buf []byte
	off int
	err error
}

func (r *batchReader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s at byte %d of %d", ErrMalformedBatch, what, r.off, len(r.buf))
	}
}

func (r *batchReader) u64(what string) uint64 {
	if r.err != nil || len(r.buf)-r.off < 8 {
		r.fail(what)
		return 0
	}
	v := binary.LittleEndian.Uint64(r.buf[r.off:])
	r.off += 8
	return v
}

func (r *batchReader) u16(what string) uint16 {
	if r.err != nil || len(r.buf)-r.off < 2 {
		r.fail(what)
		return 0
	}
	v := binary.LittleEndian.Uint16(r.buf[r.off:])
	r.off += 2
	return v
}

func (r *batchReader) byte1(what string) byte {
	if r.err != nil || r.off >= len(r.buf) {
		r.fail(what)
		return 0
	}
	r.off++
	return r.buf[r.off-1]
}

// count reads a uvarint count of items that each take at least minSize
// bytes, so that a corrupt count cannot make the decoder allocate more than
// the batch could hold.
func (r *batchReader) count(what string, minSize int) int {
	if v, ok := r.short(minSize); ok {
		return v
	}
	return r.countVarint(what, minSize)
}

// short reads a count of under 128 (one byte), which nearly every count
// and length is, checked with a multiplication (v > rest/minSize, for
// whole numbers, is v*minSize > rest); false leaves the rest to
// countVarint. Small enough to be inlined into str: binary.Uvarint's call
// and the division were half of decoding a proxy span.
func (r *batchReader) short(minSize int) (int, bool) {
	if r.err == nil && r.off < len(r.buf) {
		if v := int(r.buf[r.off]); v < 0x80 && v*minSize <= len(r.buf)-r.off-1 {
			r.off++
			return v, true
		}
	}
	return 0, false
}

func (r *batchReader) countVarint(what string, minSize int) int {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.buf[r.off:])
	if n <= 0 || v > uint64((len(r.buf)-r.off-n)/minSize) {
		r.fail(what)
		return 0
	}
	r.off += n
	return int(v)
}

// str returns a string that aliases the buffer: the caller must keep the
// buffer alive and unchanged for as long as the string is used.
func (r *batchReader) str(what string) string {
	if s, ok := r.shortStr(); ok {
		return s
	}
	return r.strSlow(what)
}

// shortStr is str for a string under 128 bytes (a one-byte length), nearly
// every one, small enough to be inlined where decodeBatch reads tag values;
// false leaves the rest, and every error, to strSlow. (After an error it
// may still read one; the error stays, and the span is dropped.)
func (r *batchReader) shortStr() (string, bool) {
	if off := r.off; off < len(r.buf) {
		if n := int(r.buf[off]); n < 0x80 && n < len(r.buf)-off {
			r.off = off + 1 + n
			return unsafe.String(unsafe.SliceData(r.buf[off+1:]), n), true
		}
	}
	return "", false
}

func (r *batchReader) strSlow(what string) string {
	n, ok := r.short(1)
	if !ok {
		n = r.countVarint(what, 1)
	}
	if r.err != nil || n == 0 {
		return ""
	}
	s := unsafe.String(&r.buf[r.off], n)
	r.off += n
	return s
}

// spanFixed is the length of a span's fixed fields: ids, times, kind and
// flags.
const spanFixed = 6*8 + 2

// writtenKey reads a tag key of a span with flag 128 that decodeBatch did
// not read inline as a one-byte number: 0 and the key, or a number written
// in more bytes than it needs (a decoder accepts those, section 4.2). A
// number is not a length, so no count check applies; one beyond the
// table makes the batch malformed.
func (r *batchReader) writtenKey() string {
	if r.err != nil {
		return ""
	}
	n, size := binary.Uvarint(r.buf[r.off:])
	switch {
	case size <= 0:
		r.fail("tag key number")
		return ""
	case n > TagKeyCount:
		r.fail("tag key number beyond the well-known keys")
		return ""
	}
	r.off += size
	if n == 0 {
		return r.str("tag key")
	}
	return tagKeys[n]
}

// DecodeBatch decodes count spans from buf, appends them to dst and
// sanitizes each one (see core.Span.Sanitize). The strings of the returned
// spans alias buf, which must not be modified afterwards. A malformed
// batch yields an error wrapping ErrMalformedBatch, never a panic.
func DecodeBatch(dst []core.Span, buf []byte, count int, now func() time.Time) ([]core.Span, error) {
	spans, _, err := decodeBatch(dst, nil, buf, count, now)
	return spans, err
}

// A Decoder decodes batches into memory it reuses: the spans and tag
// slices of one Decode are valid until the next (their strings alias buf,
// as with DecodeBatch). A driver process decodes a batch per Export, so
// this spares it the garbage of the last one. Not safe for concurrent use.
type Decoder struct {
	spans []core.Span
	tags  []core.Tag
	// lastTags is how many tags the last batch had: the next one gets a
	// slab that size up front. Sized from the batch's bytes alone, a slab
	// ran out near the end of a batch of short tags, and the small second
	// slab it then kept made every batch allocate two.
	lastTags int
}

// maxKeptTags bounds the tag slab a Decoder keeps between batches (2 MiB),
// so that one giant batch does not pin its memory for good.
const maxKeptTags = 64 << 10

// Decode is DecodeBatch into the decoder's memory.
func (d *Decoder) Decode(buf []byte, count int, now func() time.Time) ([]core.Span, error) {
	if want := min(d.lastTags, maxKeptTags); cap(d.tags) < want {
		d.tags = make([]core.Tag, 0, want)
	}
	spans, tags, err := decodeBatch(d.spans[:0], d.tags[:0], buf, count, now)
	d.spans = spans
	if cap(tags) > cap(d.tags) && cap(tags) <= maxKeptTags {
		d.tags = tags
	}
	d.lastTags = 0
	for i := range spans {
		d.lastTags += len(spans[i].Tags)
	}
	return spans, err
}

// Release drops the decoder's references into the last batch's buffer, so
// that an idle decoder does not keep it alive.
func (d *Decoder) Release() {
	clear(d.spans[:cap(d.spans)]) // a failed decode leaves a span past len
	d.spans = d.spans[:0]
	clear(d.tags[:cap(d.tags)])
}

// decodeBatch appends tags to the tags slab it is given while it has room,
// and returns the last slab it used, for reuse.
func decodeBatch(dst []core.Span, tags []core.Tag, buf []byte, count int, now func() time.Time) ([]core.Span, []core.Tag, error) {
	const minSpan = spanFixed + 3 + 1 + 2 + 2 // fixed fields and empty strings, ip and counts
	if count < 0 || count > len(buf)/minSpan {
		return dst, tags, fmt.Errorf("%w: %d spans cannot fit in %d bytes", ErrMalformedBatch, count, len(buf))
	}
	r := &batchReader{buf: buf}
	for range count {
		// Decoded in place: a span is some 200 bytes to copy.
		dst = append(dst, core.Span{})
		s := &dst[len(dst)-1]
		// The fixed fields at once, with one bounds check. (A span starts
		// with no error: decoding stops at the first.)
		if len(buf)-r.off < spanFixed {
			r.fail("the fixed fields of a span")
			return dst[:len(dst)-1], tags, r.err
		}
		f := buf[r.off : r.off+spanFixed]
		s.TraceID.High = binary.LittleEndian.Uint64(f[0:])
		s.TraceID.Low = binary.LittleEndian.Uint64(f[8:])
		s.SpanID = core.SpanID(binary.LittleEndian.Uint64(f[16:]))
		s.ParentID = core.SpanID(binary.LittleEndian.Uint64(f[24:]))
		s.StartUnixNano = int64(binary.LittleEndian.Uint64(f[32:]))
		s.Duration = time.Duration(binary.LittleEndian.Uint64(f[40:]))
		s.Kind = core.Kind(f[48])
		flags := f[49]
		r.off += spanFixed
		s.Error, s.Sampled = flags&flagError != 0, flags&flagSampled != 0
		s.Debug, s.Shared = flags&flagDebug != 0, flags&flagShared != 0
		s.ParentOrigin = core.ParentOrigin(flags & parentOriginMask >> parentOriginShift) // 3 (reserved): Sanitize makes it unknown
		s.Name = r.str("name")
		s.LocalService = r.str("local service")
		s.Remote.Service = r.str("remote service")
		switch n := r.byte1("remote ip"); n {
		case 0:
		case 4, 16:
			if len(buf)-r.off < int(n) {
				r.fail("remote ip")
				break
			}
			ip, _ := netip.AddrFromSlice(buf[r.off : r.off+int(n)])
			s.Remote.IP = ip.Unmap()
			r.off += int(n)
		default:
			r.fail("remote ip length")
		}
		s.Remote.Port = r.u16("remote port")
		if n := r.count("tag count", 2); n > 0 {
			if cap(tags)-len(tags) < n {
				// One slab for the rest of the batch, sized by what is left.
				tags = make([]core.Tag, 0, max(n, (len(buf)-r.off)/32))
			}
			start := len(tags)
			numbered := flags&flagTagKeys != 0
			for range n {
				var k string
				switch {
				case !numbered:
					k = r.str("tag key")
				case r.off < len(buf) && buf[r.off]-1 < TagKeyCount: // 0 wraps round
					// Nearly every key: a number, read here, inlined.
					k = tagKeys[buf[r.off]]
					r.off++
				default:
					k = r.writtenKey()
				}
				v, ok := r.shortStr()
				if !ok {
					v = r.strSlow("tag value")
				}
				tags = append(tags, core.Tag{Key: k, Value: v})
			}
			s.Tags = tags[start:len(tags):len(tags)]
		}
		if n := r.count("event count", 9); n > 0 {
			s.Events = make([]core.Event, n)
			for i := range s.Events {
				s.Events[i] = core.Event{UnixNano: int64(r.u64("event time")), Value: r.str("event value")}
			}
		}
		if flags&flagTraceState != 0 {
			s.TraceState = r.str("trace state")
		}
		if r.err != nil {
			return dst[:len(dst)-1], tags, r.err
		}
		s.Sanitize(now)
	}
	if r.off != len(buf) {
		return dst, tags, fmt.Errorf("%w: %d bytes left after %d spans", ErrMalformedBatch, len(buf)-r.off, count)
	}
	return dst, tags, nil
}
