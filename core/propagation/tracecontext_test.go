package propagation_test

import (
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
