package wire_test

import (
	"errors"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/core/wire"
)

var fixedNow = func() time.Time { return time.Unix(1700000000, 0) }

func sampleSpans() []core.Span {
	return []core.Span{
		{
			TraceID: core.TraceID{High: 0x0af7651916cd43dd, Low: 0x8448eb211c80319c}, SpanID: 0xb7, ParentID: 0,
			Name: "ingress", Kind: core.KindServer, LocalService: "front-proxy",
			StartUnixNano: 1700000000123456789, Duration: 12345678,
			Tags: []core.Tag{{Key: wire.TagKey("http.method"), Value: "GET"}, {Key: "user", Value: "Zoë ☃"}, {Key: "raw", Value: "\xff\xfe not utf-8"},
				{Key: wire.TagKey("grpc.message"), Value: ""}, {Key: "component", Value: "the same bytes as a table key, not its copy"}},
			Events: []core.Event{{UnixNano: 1700000000123456999, Value: "ws"}},
			Remote: core.Endpoint{Service: "client", IP: netip.MustParseAddr("10.1.2.3"), Port: 8000},
			Error:  true, Sampled: true, Debug: true, Shared: true,
		},
		{
			TraceID: core.TraceID{Low: 1}, SpanID: 2, ParentID: 0xb7, ParentOrigin: core.ParentRemote, Name: "", Kind: core.KindClient,
			StartUnixNano: 1700000000000000001, Duration: 0,
			Remote: core.Endpoint{IP: netip.MustParseAddr("fd00::2"), Port: 443},
		},
	}
}

func TestBatchRoundTrip(t *testing.T) {
	in := sampleSpans()
	buf := wire.AppendBatch(nil, in)
	out, err := wire.DecodeBatch(nil, buf, len(in), fixedNow)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip changed the spans:\n in: %+v\nout: %+v", in, out)
	}
}

// A Decoder reuses its memory batch after batch and decodes each exactly
// as DecodeBatch does; once warm it does not allocate.
func TestDecoderReusesMemory(t *testing.T) {
	var d wire.Decoder
	a := sampleSpans()
	b := sampleSpans()[1:]
	b[0].Tags = []core.Tag{{Key: "k", Value: "v"}, {Key: "k2", Value: "v2"}}
	for _, in := range [][]core.Span{a, b, a} {
		buf := wire.AppendBatch(nil, in)
		want, _ := wire.DecodeBatch(nil, buf, len(in), fixedNow)
		got, err := d.Decode(buf, len(in), fixedNow)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("Decode = %+v, %v; want %+v", got, err, want)
		}
	}
	d.Release()
	buf := wire.AppendBatch(nil, b) // no events: those are allocated per span
	if n := testing.AllocsPerRun(100, func() { d.Decode(buf, len(b), fixedNow) }); n != 0 {
		t.Errorf("a warm Decoder allocates %.0f times per batch", n)
	}
	// Short tags: more of them than the batch's bytes suggest, so the
	// first slab runs out within the batch; the next batch must not.
	many := make([]core.Span, 256)
	for i := range many {
		many[i] = b[0]
		many[i].Tags = nil
		for range 12 {
			many[i].Tags = append(many[i].Tags, core.Tag{Key: "k", Value: "v"})
		}
	}
	buf = wire.AppendBatch(nil, many)
	d.Decode(buf, len(many), fixedNow)
	if n := testing.AllocsPerRun(20, func() { d.Decode(buf, len(many), fixedNow) }); n != 0 {
		t.Errorf("a warm Decoder allocates %.0f times per batch of short tags", n)
	}
}

// Where a parent came from travels in two spare bits of the flags byte
// (16 and 32), so that the layout and the protocol version stay as they
// were: a batch without them (an older host's) reads as ParentUnknown, and
// an older driver, which ignores flag bits it does not know, reads the rest
// as before.
func TestParentOriginInSpareFlagBits(t *testing.T) {
	const flagsAt = 6*8 + 1 // after the six fixed 64-bit fields and the kind
	for _, c := range []struct {
		origin core.ParentOrigin
		flags  byte
	}{
		{core.ParentUnknown, 2},
		{core.ParentLocal, 2 | 16},
		{core.ParentRemote, 2 | 32},
	} {
		in := []core.Span{{TraceID: core.TraceID{Low: 1}, SpanID: 2, ParentID: 3, ParentOrigin: c.origin, Kind: core.KindClient, Sampled: true, StartUnixNano: 1e18}}
		buf := wire.AppendBatch(nil, in)
		if buf[flagsAt] != c.flags {
			t.Errorf("%s: flags byte %#x, want %#x", c.origin, buf[flagsAt], c.flags)
		}
		out, err := wire.DecodeBatch(nil, buf, 1, fixedNow)
		if err != nil || out[0].ParentOrigin != c.origin {
			t.Errorf("%s: decoded %v, %v", c.origin, out, err)
		}
	}
	// The reserved value, and an origin on a root span, read as unknown.
	buf := wire.AppendBatch(nil, []core.Span{{TraceID: core.TraceID{Low: 1}, SpanID: 2, ParentID: 3, StartUnixNano: 1e18}})
	buf[flagsAt] |= 16 | 32
	if out, err := wire.DecodeBatch(nil, buf, 1, fixedNow); err != nil || out[0].ParentOrigin != core.ParentUnknown {
		t.Errorf("reserved origin 3: decoded %v, %v; want unknown", out, err)
	}
	buf = wire.AppendBatch(nil, []core.Span{{TraceID: core.TraceID{Low: 1}, SpanID: 2, ParentOrigin: core.ParentRemote, StartUnixNano: 1e18}})
	if out, err := wire.DecodeBatch(nil, buf, 1, fixedNow); err != nil || out[0].ParentOrigin != core.ParentUnknown {
		t.Errorf("remote origin on a root span: decoded %v, %v; want unknown", out, err)
	}
}

func TestDecodeSanitizes(t *testing.T) {
	bad := []core.Span{{SpanID: 1, Duration: -5, StartUnixNano: 0, Kind: 42}}
	out, err := wire.DecodeBatch(nil, wire.AppendBatch(nil, bad), 1, fixedNow)
	if err != nil {
		t.Fatal(err)
	}
	s := out[0]
	if s.Duration != 0 || s.StartUnixNano != fixedNow().UnixNano() || s.Kind != core.KindInternal {
		t.Fatalf("not sanitized: %+v", s)
	}
}

func TestDecodeRejectsMalformed(t *testing.T) {
	good := wire.AppendBatch(nil, sampleSpans())
	cases := map[string]struct {
		buf   []byte
		count int
	}{
		"truncated":         {good[:len(good)-3], 2},
		"trailing bytes":    {append(append([]byte{}, good...), 0), 2},
		"count too large":   {good, 3},
		"count impossible":  {good, 1 << 30},
		"negative count":    {good, -1},
		"bad ip length":     {func() []byte { b := wire.AppendBatch(nil, []core.Span{{SpanID: 1}}); b[48+2+3] = 7; return b }(), 1},
		"huge string claim": {append(make([]byte, 50), 0xff, 0xff, 0xff, 0xff, 0x0f), 1},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := wire.DecodeBatch(nil, c.buf, c.count, fixedNow)
			if !errors.Is(err, wire.ErrMalformedBatch) {
				t.Fatalf("err = %v, want ErrMalformedBatch", err)
			}
		})
	}
}

// withTraceState encodes spans for a driver that reads trace states.
func withTraceState(spans []core.Span) []byte {
	return wire.AppendBatchLayout(nil, spans, wire.Layout{TraceState: true})
}

func FuzzDecodeBatch(f *testing.F) {
	f.Add(wire.AppendBatch(nil, sampleSpans()), 2)
	f.Add(wire.AppendBatch(nil, sampleSpans()[:1]), 1)
	f.Add([]byte{}, 0)
	withState := sampleSpans()
	withState[1].TraceState = "ot=th:8"
	f.Add(withTraceState(withState), 2)
	f.Add(wire.AppendBatchLayout(nil, withState, wire.Full), 2)
	f.Fuzz(func(t *testing.T, buf []byte, count int) {
		spans, err := wire.DecodeBatch(nil, buf, count, fixedNow)
		if err != nil {
			return
		}
		// Whatever decodes must encode back to the same bytes, except that
		// sanitizing may have changed values: re-decode to compare.
		again, err := wire.DecodeBatch(nil, wire.AppendBatchLayout(nil, spans, wire.Full), len(spans), fixedNow)
		if err != nil {
			t.Fatalf("re-encoding a decoded batch made it malformed: %v", err)
		}
		if !reflect.DeepEqual(spans, again) {
			t.Fatalf("decode(encode(x)) != x")
		}
		checkSpanLen(t, spans)
	})
}

// SpanLen is what a queue reserves before encoding a span in place: it
// must be AppendSpan's length exactly, in every layout.
func TestSpanLenIsAppendSpansLength(t *testing.T) {
	spans := sampleSpans()
	spans[1].TraceState = "ot=th:8"
	spans = append(spans, core.Span{Tags: make([]core.Tag, 200), Events: []core.Event{{Value: string(make([]byte, 20000))}}})
	checkSpanLen(t, spans)
}

func checkSpanLen(t *testing.T, spans []core.Span) {
	t.Helper()
	for i := range spans {
		for _, l := range []wire.Layout{{}, {TraceState: true}, {TagKeys: 1}, wire.Full} {
			if got, want := wire.SpanLen(&spans[i], l), len(wire.AppendSpan(nil, &spans[i], l)); got != want {
				t.Fatalf("span %d (layout %+v): SpanLen %d, AppendSpan wrote %d bytes", i, l, got, want)
			}
		}
	}
}

func BenchmarkAppendBatch(b *testing.B) {
	spans := make([]core.Span, 512)
	for i := range spans {
		spans[i] = sampleSpans()[0]
	}
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = wire.AppendBatch(buf[:0], spans)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(spans)), "ns/span")
}

func BenchmarkDecodeBatch(b *testing.B) {
	spans := make([]core.Span, 512)
	for i := range spans {
		spans[i] = sampleSpans()[0]
	}
	buf := wire.AppendBatch(nil, spans)
	dst := make([]core.Span, 0, len(spans))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := wire.DecodeBatch(dst[:0], buf, len(spans), time.Now); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(spans)), "ns/span")
}

// A span's trace state travels only to a driver whose decoder said it
// reads it (Layout.TraceState, flag 64 and a string after the
// events); AppendBatch writes exactly the bytes it wrote before the field
// existed, so that a driver built with an older SDK reads its batches as
// ever.
func TestTraceStateOnlyForDriversThatReadIt(t *testing.T) {
	in := sampleSpans()
	in[0].TraceState = "ot=th:8,vendor=x"
	without := sampleSpans()
	if old, now := wire.AppendBatch(nil, without), wire.AppendBatch(nil, in); string(old) != string(now) {
		t.Fatal("AppendBatch wrote the trace state: an older driver would misread the batch")
	}
	buf := withTraceState(in)
	if string(buf[len(withTraceState(in[:1])):]) != string(wire.AppendBatch(nil, in[1:])) {
		t.Error("a span without a trace state is not written as before")
	}
	out, err := wire.DecodeBatch(nil, buf, len(in), fixedNow)
	if err != nil || !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip: %+v, %v; want %+v", out, err, in)
	}
	const flagsAt = 6*8 + 1
	if buf[flagsAt]&64 == 0 {
		t.Errorf("flags %#x: no trace state flag", buf[flagsAt])
	}
	// Cut short inside the trace state: malformed, not a panic.
	if _, err := wire.DecodeBatch(nil, buf[:len(withTraceState(in[:1]))-3], 1, fixedNow); !errors.Is(err, wire.ErrMalformedBatch) {
		t.Errorf("truncated trace state: %v", err)
	}
}

// BenchmarkDecoder is the driver's side of every batch: a Decoder reading
// 512 proxy-sized spans (20 tags of the proxy's names and values), as the
// SDK does for each Export.
func BenchmarkDecoder(b *testing.B) {
	span := proxySpan()
	spans := make([]core.Span, 512)
	for i := range spans {
		spans[i] = span
	}
	buf := wire.AppendBatchLayout(nil, spans, wire.Full)
	var d wire.Decoder
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.Decode(buf, len(spans), time.Now); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(spans)), "ns/span")
}

// BenchmarkAppendProxySpan is the host's side of every span: AppendSpan
// writing a proxy-sized span (BenchmarkDecoder's) into queue memory with
// room for it, as the pipeline does for each finished request.
func BenchmarkAppendProxySpan(b *testing.B) {
	span := proxySpan()
	buf := make([]byte, 0, 64<<10)
	b.ReportAllocs()
	for b.Loop() {
		buf = buf[:0]
		for range 64 {
			buf = wire.AppendSpan(buf, &span, wire.Full)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*64), "ns/span")
}

// proxySpan is a span as the proxy makes them: 20 tags of its names and
// values, the keys numbered, no events.
func proxySpan() core.Span {
	span := sampleSpans()[0]
	span.Tags, span.Events = nil, nil // as the proxy's: no events
	for _, kv := range [][2]string{
		{"component", "proxy"}, {"node_id", "sidecar-1"}, {"guid:x-request-id", "6ba7b810-9dad-11d1-80b4-00c04fd430c8"},
		{"http.url", "http://shop.internal/api/v1/cart/items?id=42"}, {"http.method", "GET"}, {"http.protocol", "HTTP/1.1"},
		{"user_agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36"}, {"peer.address", "10.1.2.3"},
		{"request_size", "0"}, {"response_size", "1234"}, {"upstream_cluster", "shop"}, {"upstream_address", "10.1.2.9:8080"},
		{"http.status_code", "200"}, {"response_flags", "-"}, {"upstream_cluster.name", "shop"}, {"zone", "eu-west-1a"},
		{"downstream_cluster", "-"}, {"request_id", "abc"}, {"x", "y"}, {"ok", "true"},
	} {
		// numbered, as the host writes the proxy's keys
		span.Tags = append(span.Tags, core.Tag{Key: wire.WellKnown(kv[0]), Value: kv[1]})
	}
	return span
}
