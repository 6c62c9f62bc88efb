package propagation_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/core/propagation"
)

// The W3C Trace Context cases (levels 1 and 2), written from the spec
// (https://www.w3.org/TR/trace-context-2/) and the cases its test suite
// exercises; the suite itself runs outside the project.

const (
	tpTrace = "12345678901234567890123456789012"
	tpSpan  = "1234567890123456"
)

// header builds an http.Header from name/value pairs in order, keeping
// repeated names as repeated fields, as net/http parses them.
func header(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func TestTraceparentConformance(t *testing.T) {
	p := mustNew(t, core.FormatTraceContext)
	valid := "00-" + tpTrace + "-" + tpSpan + "-01"
	cases := []struct {
		name        string
		h           http.Header
		ok          bool
		sampled     bool
		random      bool
		wantTraceID string
	}{
		{"version 00 sampled", header("traceparent", valid), true, true, false, tpTrace},
		{"version 00 not sampled", header("traceparent", "00-"+tpTrace+"-"+tpSpan+"-00"), true, false, false, tpTrace},
		{"level 2 random flag", header("traceparent", "00-"+tpTrace+"-"+tpSpan+"-02"), true, false, true, tpTrace},
		{"sampled and random", header("traceparent", "00-"+tpTrace+"-"+tpSpan+"-03"), true, true, true, tpTrace},
		{"unknown flags are ignored", header("traceparent", "00-"+tpTrace+"-"+tpSpan+"-ff"), true, true, true, tpTrace},
		{"OWS around the value", header("traceparent", "\t "+valid+" \t"), true, true, false, tpTrace},
		{"future version", header("traceparent", "cc-"+tpTrace+"-"+tpSpan+"-01"), true, true, false, tpTrace},
		{"future version with more fields", header("traceparent", "cc-"+tpTrace+"-"+tpSpan+"-01-what-the-future-will-be-like"), true, true, false, tpTrace},

		{"duplicated", header("traceparent", "00-"+tpTrace[:31]+"1-"+tpSpan+"-01", "traceparent", valid), false, false, false, ""},
		{"duplicated, same value", header("traceparent", valid, "traceparent", valid), false, false, false, ""},
		{"combined into one field", header("traceparent", valid+","+valid), false, false, false, ""},
		{"duplicated future versions", header("traceparent", "cc-"+tpTrace+"-"+tpSpan+"-01-x", "traceparent", valid), false, false, false, ""},
		{"future version, bad separator", header("traceparent", "cc-"+tpTrace+"-"+tpSpan+"-01.what-the-future-will-be-like"), false, false, false, ""},
		{"version 00 with trailing characters", header("traceparent", valid+"."), false, false, false, ""},
		{"version 00 with more fields", header("traceparent", valid+"-what-the-future-will-be-like"), false, false, false, ""},
		{"version ff", header("traceparent", "ff-"+tpTrace+"-"+tpSpan+"-01"), false, false, false, ""},
		{"version illegal characters", header("traceparent", ".0-"+tpTrace+"-"+tpSpan+"-01"), false, false, false, ""},
		{"version illegal characters 2", header("traceparent", "0.-"+tpTrace+"-"+tpSpan+"-01"), false, false, false, ""},
		{"version uppercase", header("traceparent", "0A-"+tpTrace+"-"+tpSpan+"-01"), false, false, false, ""},
		{"version too long", header("traceparent", "000-"+tpTrace+"-"+tpSpan+"-01"), false, false, false, ""},
		{"version too long 2", header("traceparent", "0000-"+tpTrace+"-"+tpSpan+"-01"), false, false, false, ""},
		{"version too short", header("traceparent", "0-"+tpTrace+"-"+tpSpan+"-01"), false, false, false, ""},
		{"trace id all zero", header("traceparent", "00-"+strings.Repeat("0", 32)+"-"+tpSpan+"-01"), false, false, false, ""},
		{"trace id illegal characters", header("traceparent", "00-."+tpTrace[1:]+"-"+tpSpan+"-01"), false, false, false, ""},
		{"trace id illegal characters 2", header("traceparent", "00-"+tpTrace[:31]+".-"+tpSpan+"-01"), false, false, false, ""},
		{"trace id uppercase", header("traceparent", "00-0AF7651916CD43DD8448EB211C80319C-"+tpSpan+"-01"), false, false, false, ""},
		{"trace id too long", header("traceparent", "00-"+tpTrace+"3-"+tpSpan+"-01"), false, false, false, ""},
		{"trace id too short", header("traceparent", "00-"+tpTrace[:31]+"-"+tpSpan+"-01"), false, false, false, ""},
		{"parent id all zero", header("traceparent", "00-"+tpTrace+"-0000000000000000-01"), false, false, false, ""},
		{"parent id illegal characters", header("traceparent", "00-"+tpTrace+"-."+tpSpan[1:]+"-01"), false, false, false, ""},
		{"parent id illegal characters 2", header("traceparent", "00-"+tpTrace+"-"+tpSpan[:15]+".-01"), false, false, false, ""},
		{"parent id uppercase", header("traceparent", "00-"+tpTrace+"-00F067AA0BA902B7-01"), false, false, false, ""},
		{"parent id too long", header("traceparent", "00-"+tpTrace+"-"+tpSpan+"7-01"), false, false, false, ""},
		{"parent id too short", header("traceparent", "00-"+tpTrace+"-"+tpSpan[:15]+"-01"), false, false, false, ""},
		{"flags illegal characters", header("traceparent", "00-"+tpTrace+"-"+tpSpan+"-.0"), false, false, false, ""},
		{"flags illegal characters 2", header("traceparent", "00-"+tpTrace+"-"+tpSpan+"-0."), false, false, false, ""},
		{"flags too long", header("traceparent", "00-"+tpTrace+"-"+tpSpan+"-001"), false, false, false, ""},
		{"flags too short", header("traceparent", "00-"+tpTrace+"-"+tpSpan+"-1"), false, false, false, ""},
		{"empty", header("traceparent", ""), false, false, false, ""},
		{"wrong header name", header("trace-parent", valid), false, false, false, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := p.Extract(c.h)
			if got.Valid() != c.ok {
				t.Fatalf("%v: valid = %v, want %v (%+v)", c.h, got.Valid(), c.ok, got)
			}
			if !c.ok {
				return
			}
			if got.TraceID.String() != c.wantTraceID || got.SpanID.String() != tpSpan {
				t.Errorf("trace %s span %s, want %s %s", got.TraceID, got.SpanID, c.wantTraceID, tpSpan)
			}
			if (got.Sampled == propagation.SamplingYes) != c.sampled || got.Sampled == propagation.SamplingUnset {
				t.Errorf("sampled = %d, want %v", got.Sampled, c.sampled)
			}
			if got.Random != c.random {
				t.Errorf("random = %v, want %v", got.Random, c.random)
			}
			// What goes on is version 00 with only the flags it defines.
			out := http.Header{}
			p.Inject(out, got)
			want := "00-" + c.wantTraceID + "-" + tpSpan + "-"
			switch {
			case c.sampled && c.random:
				want += "03"
			case c.random:
				want += "02"
			case c.sampled:
				want += "01"
			default:
				want += "00"
			}
			if v := out.Values("Traceparent"); len(v) != 1 || v[0] != want {
				t.Errorf("sent traceparent %q, want %q", v, want)
			}
		})
	}
}

// An invalid traceparent takes its tracestate with it: the spec forbids
// parsing tracestate without a traceparent.
func TestTracestateNeedsAValidTraceparent(t *testing.T) {
	p := mustNew(t, core.FormatTraceContext)
	for _, h := range []http.Header{
		header("tracestate", "foo=1"),
		header("traceparent", "00-"+strings.Repeat("0", 32)+"-"+tpSpan+"-01", "tracestate", "foo=1"),
		header("traceparent", "00-"+tpTrace+"-"+tpSpan+"-01", "traceparent", "00-"+tpTrace+"-"+tpSpan+"-01", "tracestate", "foo=1"),
	} {
		c := p.Extract(h)
		out := http.Header{"Tracestate": {"stale=1"}}
		p.Inject(out, c)
		if c.TraceState != "" || out.Get("Tracestate") != "" {
			t.Errorf("%v: tracestate %q kept, sent %q", h, c.TraceState, out.Get("Tracestate"))
		}
	}
}

func TestTracestateConformance(t *testing.T) {
	p := mustNew(t, core.FormatTraceContext)
	keyChars := "abcdefghijklmnopqrstuvwxyz0123456789_-*/"
	var value []byte
	for c := byte(0x20); c <= 0x7e; c++ {
		if c != ',' && c != '=' {
			value = append(value, c)
		}
	}
	allValue := string(value)
	var members32, members33 []string
	for i := 1; i <= 33; i++ {
		m := fmt.Sprintf("bar%02d=%02d", i, i)
		if i <= 32 {
			members32 = append(members32, m)
		}
		members33 = append(members33, m)
	}
	member := func(k string, n int) string { return k + "=" + strings.Repeat("v", n-len(k)-1) }
	a, b, c, d, e := member("a", 152), member("b", 152), "s=1", member("c", 152), member("e", 152)
	var sixty []string
	for i := range 10 {
		sixty = append(sixty, member(fmt.Sprintf("k%d", i), 60))
	}
	cases := []struct {
		name   string
		fields []string // the tracestate fields, in order
		want   string   // what is sent on; "" drops the header
	}{
		{"one member", []string{"foo=1"}, "foo=1"},
		{"two members", []string{"foo=1,bar=2"}, "foo=1,bar=2"},
		{"fields combined in order", []string{"foo=1,bar=2", "rojo=1,congo=2", "baz=3"}, "foo=1,bar=2,rojo=1,congo=2,baz=3"},
		{"empty header", []string{""}, ""},
		{"empty field after", []string{"foo=1", ""}, "foo=1"},
		{"empty field before", []string{"", "foo=1"}, "foo=1"},
		{"empty members", []string{",foo=1,, ,bar=2,"}, "foo=1,bar=2"},
		{"OWS around members", []string{"foo=1 \t , \t bar=2, \t baz=3"}, "foo=1,bar=2,baz=3"},
		{"OWS around members 2", []string{"foo=1\t \t,\t \tbar=2,\t \tbaz=3"}, "foo=1,bar=2,baz=3"},
		{"leading space", []string{" foo=1"}, "foo=1"},
		{"leading tab", []string{"\tfoo=1"}, "foo=1"},
		{"trailing space", []string{"foo=1 "}, "foo=1"},
		{"trailing tab", []string{"foo=1\t"}, "foo=1"},
		{"both", []string{"\t foo=1 \t"}, "foo=1"},
		{"a value's leading spaces are its own", []string{"foo=  1"}, "foo=  1"},
		{"every key character", []string{keyChars + "=1"}, keyChars + "=1"},
		{"every key character with @", []string{keyChars + "@a-z0-9_-*/=1"}, keyChars + "@a-z0-9_-*/=1"},
		{"every value character", []string{"foo=" + allValue}, "foo=" + allValue},
		{"key starting with a digit", []string{"1foo=1"}, "1foo=1"},
		{"duplicated key", []string{"foo=1,foo=1"}, "foo=1"},
		{"duplicated key, other value", []string{"foo=1,foo=2"}, "foo=1"},
		{"duplicated key across fields", []string{"foo=1", "foo=2"}, "foo=1"},
		{"key with a space", []string{"foo =1"}, ""},
		{"uppercase key", []string{"FOO=1"}, ""},
		{"key with a dot", []string{"foo.bar=1"}, ""},
		{"key ending in @", []string{"foo@=1,bar=2"}, "foo@=1,bar=2"},
		{"key starting with @", []string{"@foo=1,bar=2"}, ""},
		{"key with @@", []string{"foo@@bar=1,bar=2"}, "foo@@bar=1,bar=2"},
		{"key with two @", []string{"foo@bar@baz=1,bar=2"}, "foo@bar@baz=1,bar=2"},
		{"32 members", []string{strings.Join(members32[:10], ","), strings.Join(members32[10:], ",")}, strings.Join(members32, ",")},
		{"33 members", []string{strings.Join(members33[:10], ","), strings.Join(members33[10:], ",")}, ""},
		{"key of 256", []string{"foo=1", strings.Repeat("z", 256) + "=1"}, "foo=1," + strings.Repeat("z", 256) + "=1"},
		{"key of 257", []string{"foo=1", strings.Repeat("z", 257) + "=1"}, ""},
		{"tenant of 241, system of 14", []string{"foo=1", strings.Repeat("t", 241) + "@" + strings.Repeat("v", 14) + "=1"}, "foo=1," + strings.Repeat("t", 241) + "@" + strings.Repeat("v", 14) + "=1"},
		{"tenant of 242", []string{"foo=1", strings.Repeat("t", 242) + "@v=1"}, "foo=1," + strings.Repeat("t", 242) + "@v=1"},
		{"system of 15", []string{"foo=1", "t@" + strings.Repeat("v", 15) + "=1"}, "foo=1,t@" + strings.Repeat("v", 15) + "=1"},
		{"value with =", []string{"foo=bar=baz"}, ""},
		{"empty value", []string{"foo=,bar=3"}, ""},
		{"no =", []string{"foo"}, ""},
		{"value with a tab", []string{"foo=a\tb"}, ""},
		{"value not ASCII", []string{"foo=zoë"}, ""},
		{"value of 256", []string{"foo=" + strings.Repeat("v", 256)}, "foo=" + strings.Repeat("v", 256)},
		{"value of 257", []string{"foo=" + strings.Repeat("v", 257)}, ""},
		{"invalid after 32 valid", []string{strings.Join(members32, ","), "BAD=1"}, ""},
		{"over 512: the largest go first, from the right", []string{strings.Join([]string{a, b, c, d, e}, ",")}, strings.Join([]string{a, b, c, d}, ",")},
		{"over 512: then from the end", []string{strings.Join(sixty, ",")}, strings.Join(sixty[:8], ",")},
		{"one member over 512", []string{strings.Repeat("k", 256) + "=" + strings.Repeat("v", 256)}, ""},
		{"absurdly long", []string{strings.Repeat(" ,", 20000) + "foo=1"}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := header("traceparent", "00-"+tpTrace+"-"+tpSpan+"-01")
			for _, f := range tc.fields {
				h.Add("tracestate", f)
			}
			ctx := p.Extract(h)
			if !ctx.Valid() {
				t.Fatal("a bad tracestate must not spoil a good traceparent")
			}
			if ctx.TraceState != tc.want {
				t.Errorf("tracestate %q, want %q", ctx.TraceState, tc.want)
			}
			if len(ctx.TraceState) > 512 {
				t.Errorf("tracestate of %d characters, want at most 512", len(ctx.TraceState))
			}
			out := http.Header{}
			p.Inject(out, ctx)
			if got := out.Values("Tracestate"); tc.want == "" && len(got) != 0 || tc.want != "" && (len(got) != 1 || got[0] != tc.want) {
				t.Errorf("sent tracestate %q, want %q", got, tc.want)
			}
		})
	}
}

// A well-formed traceparent and tracestate are read without a copy.
func TestExtractTraceContextAllocatesNothing(t *testing.T) {
	p := mustNew(t, core.FormatTraceContext)
	h := header("traceparent", "00-"+tpTrace+"-"+tpSpan+"-01", "tracestate", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
	if n := testing.AllocsPerRun(100, func() { p.Extract(h) }); n != 0 {
		t.Fatalf("Extract allocates %.0f times, want 0", n)
	}
}
