package propagation_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/openzipkin/zipkin-go/model"
	"github.com/openzipkin/zipkin-go/propagation/b3"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/core/propagation"
)

var (
	id128 = core.TraceID{High: 0x0af7651916cd43dd, Low: 0x8448eb211c80319c}
	id64  = core.TraceID{Low: 0x0047b6b1a6c1e4e9}
	span  = core.SpanID(0x00f067aa0ba902b7)
)

func mustNew(t testing.TB, names ...string) *propagation.Propagator {
	t.Helper()
	p, err := propagation.New(names)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Every format must carry ids and the sampled flag through inject and
// extract; 128-bit ids survive every format that can hold them.
func TestRoundTrip(t *testing.T) {
	for _, f := range propagation.Names() {
		for _, tid := range []core.TraceID{id64, id128} {
			for _, s := range []propagation.Sampling{propagation.SamplingYes, propagation.SamplingNo} {
				p := mustNew(t, f)
				h := http.Header{}
				in := propagation.Context{TraceID: tid, SpanID: span, Sampled: s}
				p.Inject(h, in)
				out := p.Extract(h)
				want := in
				if f == core.FormatOTTracer {
					want.TraceID.High = 0 // LightStep keeps 64 bits
				}
				if out.TraceID != want.TraceID || out.SpanID != want.SpanID || out.Sampled != want.Sampled {
					t.Errorf("%s %s sampled=%d: got %+v from %v", f, tid, s, out, h)
				}
			}
		}
	}
}

func TestKnownHeaders(t *testing.T) {
	c := propagation.Context{TraceID: id128, SpanID: span, Sampled: propagation.SamplingYes}
	cases := map[string]map[string]string{
		core.FormatB3:           {"X-B3-Traceid": "0af7651916cd43dd8448eb211c80319c", "X-B3-Spanid": "00f067aa0ba902b7", "X-B3-Sampled": "1"},
		core.FormatB3Single:     {"B3": "0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-1"},
		core.FormatTraceContext: {"Traceparent": "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"},
		core.FormatDatadog: {"X-Datadog-Trace-Id": "9532127138774266268", "X-Datadog-Parent-Id": "67667974448284343",
			"X-Datadog-Sampling-Priority": "1", "X-Datadog-Tags": "_dd.p.tid=0af7651916cd43dd"},
		core.FormatOTTracer: {"Ot-Tracer-Traceid": "8448eb211c80319c", "Ot-Tracer-Spanid": "00f067aa0ba902b7", "Ot-Tracer-Sampled": "true"},
	}
	for f, want := range cases {
		h := http.Header{}
		mustNew(t, f).Inject(h, c)
		for k, v := range want {
			if got := h.Get(k); got != v {
				t.Errorf("%s: %s = %q, want %q", f, k, got, v)
			}
		}
		if len(h) != len(want) {
			t.Errorf("%s wrote %v, want exactly %v", f, h, want)
		}
	}
}

func TestExtractOrderAndDecisionOnly(t *testing.T) {
	p := mustNew(t, core.FormatB3, core.FormatTraceContext)
	h := http.Header{}
	h.Set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01")
	h.Set("x-b3-traceid", "0000000000000001")
	h.Set("x-b3-spanid", "0000000000000002")
	if c := p.Extract(h); c.TraceID.Low != 1 || c.SpanID != 2 {
		t.Fatalf("the first configured format must win: %+v", c)
	}
	// A decision without ids: b3: 0 suppresses, with no context to join.
	h = http.Header{}
	h.Set("b3", "0")
	c := mustNew(t, core.FormatB3Single).Extract(h)
	if c.Valid() || c.Sampled != propagation.SamplingNo {
		t.Fatalf("b3: 0 = %+v, want a bare not-sampled decision", c)
	}
}

func TestInjectRemovesStaleFormats(t *testing.T) {
	h := http.Header{}
	h.Set("b3", "1111111111111111-2222222222222222-1")
	h.Set("traceparent", "00-11111111111111111111111111111111-2222222222222222-01")
	h.Set("x-b3-parentspanid", "3333333333333333")
	mustNew(t, core.FormatB3).Inject(h, propagation.Context{TraceID: id64, SpanID: span, Sampled: propagation.SamplingYes})
	for _, k := range []string{"B3", "Traceparent", "X-B3-Parentspanid"} {
		if _, ok := h[k]; ok {
			t.Errorf("stale header %s survived injection: %v", k, h)
		}
	}
}

// An HTTP layer writing its own headers learns the same from InjectInto:
// the stale formats' headers are touched (the request's own are not sent)
// and never written; the configured format's are written once.
func TestInjectIntoStaleFormats(t *testing.T) {
	var m propagation.Mutations
	mustNew(t, core.FormatTraceContext).InjectInto(&m, propagation.Context{TraceID: id64, SpanID: span, Sampled: propagation.SamplingYes})
	for _, k := range []string{"b3", "X-B3-TraceId", "x-datadog-trace-id", "Ot-Tracer-Spanid", "traceparent"} {
		if !m.Touches(k) {
			t.Errorf("%s is not touched", k)
		}
	}
	if m.Touches("Content-Type") {
		t.Error("Content-Type is touched")
	}
	var written []string
	for i := range m.Len() {
		if k, _, ok := m.Written(i); ok {
			written = append(written, k)
		}
	}
	if len(written) != 1 || !strings.EqualFold(written[0], "traceparent") {
		t.Errorf("written: %v, want traceparent alone", written)
	}
	m.Reset()
	if m.Touches("b3") || m.Len() != 0 {
		t.Error("Reset kept the stale headers")
	}
}

func TestMalformedIsIgnored(t *testing.T) {
	bad := []map[string]string{
		{"X-B3-Traceid": "zz", "X-B3-Spanid": "00f067aa0ba902b7"},
		{"X-B3-Traceid": strings.Repeat("a", 33), "X-B3-Spanid": "00f067aa0ba902b7"},
		{"X-B3-Traceid": "0000000000000000", "X-B3-Spanid": "0000000000000000"},
		{"X-B3-Traceid": strings.Repeat("1", 600), "X-B3-Spanid": "1"},
		{"B3": "abc-def-1"},
		{"B3": "0af7651916cd43dd-00f067aa0ba902b7-x"},
		{"B3": "0af7651916cd43d-00f067aa0ba902b7-1"},
		{"Traceparent": "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01-extra"},
		{"Traceparent": "ff-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"},
		{"Traceparent": "00-00000000000000000000000000000000-00f067aa0ba902b7-01"},
		{"Traceparent": "00-0AF7651916CD43DD8448EB211C80319C-00f067aa0ba902b7-01"},
		{"X-Datadog-Trace-Id": "-5", "X-Datadog-Parent-Id": "1"},
		{"X-Datadog-Trace-Id": "99999999999999999999999", "X-Datadog-Parent-Id": "1"},
		{"Ot-Tracer-Traceid": "xyz", "Ot-Tracer-Spanid": "1"},
	}
	all := mustNew(t, propagation.Names()...)
	for _, hs := range bad {
		h := http.Header{}
		for k, v := range hs {
			h[k] = []string{v}
		}
		if c := all.Extract(h); c.Valid() {
			t.Errorf("%v extracted as valid: %+v", hs, c)
		}
	}
}

func TestDatadogKeepsOriginAndTags(t *testing.T) {
	h := http.Header{}
	h.Set("x-datadog-trace-id", "9532127138774266268")
	h.Set("x-datadog-parent-id", "67667974448284343")
	h.Set("x-datadog-sampling-priority", "2")
	h.Set("x-datadog-origin", "synthetics")
	h.Set("x-datadog-tags", "_dd.p.dm=-4,_dd.p.tid=0af7651916cd43dd")
	p := mustNew(t, core.FormatDatadog)
	c := p.Extract(h)
	if c.TraceID != id128 || c.SpanID != span || c.Sampled != propagation.SamplingYes || c.DatadogOrigin != "synthetics" || c.DatadogTags != "_dd.p.dm=-4" {
		t.Fatalf("extracted %+v", c)
	}
	out := http.Header{}
	p.Inject(out, c)
	if got := out.Get("x-datadog-tags"); got != "_dd.p.tid=0af7651916cd43dd,_dd.p.dm=-4" {
		t.Fatalf("x-datadog-tags = %q", got)
	}
}

// zipkin-go's own B3 propagator must read what tracehop writes, and the
// other way round, for 64- and 128-bit ids, single and multi header.
func TestB3AgainstZipkinGo(t *testing.T) {
	for _, tid := range []core.TraceID{id64, id128} {
		for _, single := range []bool{false, true} {
			format := core.FormatB3
			if single {
				format = core.FormatB3Single
			}
			// tracehop -> zipkin-go
			req, _ := http.NewRequest("GET", "http://x/", nil)
			mustNew(t, format).Inject(req.Header, propagation.Context{TraceID: tid, SpanID: span, Sampled: propagation.SamplingYes})
			sc, err := b3.ExtractHTTP(req)()
			if err != nil {
				t.Fatalf("%s %s: zipkin-go cannot read tracehop's headers %v: %v", format, tid, req.Header, err)
			}
			if sc.TraceID.High != tid.High || sc.TraceID.Low != tid.Low || uint64(sc.ID) != uint64(span) || sc.Sampled == nil || !*sc.Sampled {
				t.Errorf("%s %s: zipkin-go read %+v", format, tid, sc)
			}
			// zipkin-go -> tracehop
			yes := true
			parent := model.ID(7)
			req, _ = http.NewRequest("GET", "http://x/", nil)
			opt := b3.WithSingleAndMultiHeader()
			if single {
				opt = b3.WithSingleHeaderOnly()
			}
			if err := b3.InjectHTTP(req, opt)(model.SpanContext{TraceID: model.TraceID{High: tid.High, Low: tid.Low}, ID: model.ID(span), ParentID: &parent, Sampled: &yes}); err != nil {
				t.Fatal(err)
			}
			c := mustNew(t, format).Extract(req.Header)
			if c.TraceID != tid || c.SpanID != span || c.Sampled != propagation.SamplingYes {
				t.Errorf("%s %s: tracehop read %+v from zipkin-go's %v", format, tid, c, req.Header)
			}
		}
	}
}

func FuzzExtract(f *testing.F) {
	f.Add("0af7651916cd43dd8448eb211c80319c", "00f067aa0ba902b7", "1", "0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-1-0000000000000001",
		"00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01", "9532127138774266268", "_dd.p.tid=0af7651916cd43dd")
	f.Add("", "", "", "d", "", "", "")
	all := mustNew(f, propagation.Names()...)
	f.Fuzz(func(t *testing.T, traceID, spanID, sampled, single, traceparent, ddID, ddTags string) {
		h := http.Header{
			"X-B3-Traceid": {traceID}, "X-B3-Spanid": {spanID}, "X-B3-Sampled": {sampled}, "B3": {single},
			"Traceparent": {traceparent}, "X-Datadog-Trace-Id": {ddID}, "X-Datadog-Parent-Id": {ddID},
			"X-Datadog-Tags": {ddTags}, "Ot-Tracer-Traceid": {traceID}, "Ot-Tracer-Spanid": {spanID},
		}
		c := all.Extract(h)
		if !c.Valid() {
			return
		}
		// Whatever was accepted must survive a round trip in every format.
		for _, name := range propagation.Names() {
			p := mustNew(t, name)
			out := http.Header{}
			p.Inject(out, c)
			back := p.Extract(out)
			want := c.TraceID
			if name == core.FormatOTTracer {
				want.High = 0
			}
			if back.TraceID != want || back.SpanID != c.SpanID {
				t.Fatalf("%s lost the context: %+v -> %v -> %+v", name, c, out, back)
			}
		}
	})
}

func BenchmarkExtractInject(b *testing.B) {
	p := mustNew(b, core.FormatB3, core.FormatTraceContext)
	in := http.Header{}
	in.Set("x-b3-traceid", "0af7651916cd43dd8448eb211c80319c")
	in.Set("x-b3-spanid", "00f067aa0ba902b7")
	in.Set("x-b3-sampled", "1")
	out := http.Header{}
	b.ReportAllocs()
	for b.Loop() {
		c := p.Extract(in)
		c.SpanID++
		p.Inject(out, c)
	}
}

// Both B3 formats read both headers (single first); each writes its own.
func TestB3ReadsSingleAndMulti(t *testing.T) {
	single := http.Header{"B3": {"0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-1"}}
	multi := http.Header{"X-B3-Traceid": {"0af7651916cd43dd8448eb211c80319c"}, "X-B3-Spanid": {"00f067aa0ba902b7"}}
	for _, f := range []string{core.FormatB3, core.FormatB3Single} {
		for _, h := range []http.Header{single, multi} {
			if c := mustNew(t, f).Extract(h); c.TraceID != id128 || c.SpanID != span {
				t.Errorf("%s did not read %v", f, h)
			}
		}
		if c := mustNew(t, f).Extract(http.Header{"B3": {"0"}}); c.Sampled != propagation.SamplingNo {
			t.Errorf("%s lost the bare decision b3: 0", f)
		}
	}
}

// A 64-bit-only format (ot-tracer) makes the propagator ask for 64-bit
// traces; every other format carries 128 bits.
func TestTraceID128(t *testing.T) {
	for _, c := range []struct {
		formats []string
		want    bool
	}{
		{[]string{core.FormatB3, core.FormatB3Single, core.FormatTraceContext, core.FormatDatadog}, true},
		{[]string{core.FormatOTTracer}, false},
		{[]string{core.FormatB3, core.FormatOTTracer}, false},
	} {
		if got := mustNew(t, c.formats...).TraceID128(); got != c.want {
			t.Errorf("%v: TraceID128() = %v, want %v", c.formats, got, c.want)
		}
	}
}

// When the first format found cannot carry everything, the other
// configured formats naming the same span fill in the rest: the upper half
// of the trace id, W3C's random flag and tracestate.
func TestExtractCompletesFromOtherFormats(t *testing.T) {
	tp := "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-03"
	cases := []struct {
		name      string
		formats   []string
		h         http.Header
		want      core.TraceID
		random    bool
		tracestat string
	}{
		{"ot-tracer completed by traceparent", []string{core.FormatOTTracer, core.FormatTraceContext},
			http.Header{"Ot-Tracer-Traceid": {"8448eb211c80319c"}, "Ot-Tracer-Spanid": {"00f067aa0ba902b7"}, "Traceparent": {tp}, "Tracestate": {"a=1"}},
			id128, true, "a=1"},
		{"ot-tracer completed by b3", []string{core.FormatOTTracer, core.FormatB3},
			http.Header{"Ot-Tracer-Traceid": {"8448eb211c80319c"}, "Ot-Tracer-Spanid": {"00f067aa0ba902b7"}, "X-B3-Traceid": {id128.String()}, "X-B3-Spanid": {"00f067aa0ba902b7"}},
			id128, false, ""},
		{"datadog without its tid tag", []string{core.FormatDatadog, core.FormatTraceContext},
			http.Header{"X-Datadog-Trace-Id": {"9532127138774266268"}, "X-Datadog-Parent-Id": {"67667974448284343"}, "Traceparent": {tp}},
			id128, true, ""},
		{"b3 completed by traceparent", []string{core.FormatB3, core.FormatTraceContext},
			http.Header{"X-B3-Traceid": {id128.String()}, "X-B3-Spanid": {"00f067aa0ba902b7"}, "Traceparent": {tp}, "Tracestate": {"a=1"}},
			id128, true, "a=1"},
		{"another span: nothing taken", []string{core.FormatOTTracer, core.FormatTraceContext},
			http.Header{"Ot-Tracer-Traceid": {"8448eb211c80319c"}, "Ot-Tracer-Spanid": {"1111111111111111"}, "Traceparent": {tp}, "Tracestate": {"a=1"}},
			core.TraceID{Low: id128.Low}, false, ""},
		{"another trace: nothing taken", []string{core.FormatB3, core.FormatTraceContext},
			http.Header{"X-B3-Traceid": {"1111111111111111" + "8448eb211c80319c"}, "X-B3-Spanid": {"00f067aa0ba902b7"}, "Traceparent": {tp}, "Tracestate": {"a=1"}},
			core.TraceID{High: 0x1111111111111111, Low: id128.Low}, false, ""},
	}
	for _, c := range cases {
		got := mustNew(t, c.formats...).Extract(c.h)
		if got.TraceID != c.want || got.SpanID == 0 || got.Random != c.random || got.TraceState != c.tracestat {
			t.Errorf("%s: got trace %s random %v tracestate %q; want %s %v %q", c.name, got.TraceID, got.Random, got.TraceState, c.want, c.random, c.tracestat)
		}
	}
}

// B3 says a span is a client span (which a server may join) only in
// X-Tracehop-Client-Span, naming that very span; both B3 formats read it
// and write it, and it goes away with the context.
func TestB3ClientSpan(t *testing.T) {
	for _, f := range []string{core.FormatB3, core.FormatB3Single} {
		p := mustNew(t, f)
		h := http.Header{"X-Tracehop-Client-Span": {"stale"}}
		p.Inject(h, propagation.Context{TraceID: id128, SpanID: span, Sampled: propagation.SamplingYes, ClientSpan: true})
		if got := h.Get("X-Tracehop-Client-Span"); got != span.String() {
			t.Errorf("%s: X-Tracehop-Client-Span = %q, want %s", f, got, span)
		}
		if c := p.Extract(h); !c.ClientSpan || c.SpanID != span {
			t.Errorf("%s: read %+v, want a client span", f, c)
		}
		h.Set("X-Tracehop-Client-Span", "1111111111111111")
		if c := p.Extract(h); c.ClientSpan {
			t.Errorf("%s: a marker naming another span was taken", f)
		}
		p.Inject(h, propagation.Context{TraceID: id128, SpanID: span})
		if _, ok := h["X-Tracehop-Client-Span"]; ok {
			t.Errorf("%s: a server span's context kept the client-span marker", f)
		}
	}
}

// Written gives what an HTTP layer writes: each key's last change, when it
// sets a value; removals and superseded values are not written.
func TestMutationsWritten(t *testing.T) {
	var m propagation.Mutations
	m.Del("x-b3-traceid")
	m.SetString("traceparent", "first")
	m.SetString("tracestate", "ot=th:8")
	m.SetString("traceparent", "second")
	m.Del("tracestate")
	var got []string
	for i := range m.Len() {
		if k, v, ok := m.Written(i); ok {
			got = append(got, k+"="+string(v))
		}
	}
	if strings.Join(got, " ") != "traceparent=second" {
		t.Fatalf("written %q, want only traceparent=second", got)
	}
}
