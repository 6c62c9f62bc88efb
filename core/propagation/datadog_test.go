package propagation_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/DataDog/dd-trace-go/v2/ddtrace/tracer"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/core/propagation"
)

// dd-trace-go's own propagator must read what tracehop writes in the datadog
// and tracecontext styles, and the other way round, for 64- and 128-bit ids.
func TestAgainstDDTraceGo(t *testing.T) {
	for _, style := range []struct{ dd, ours string }{{"datadog", core.FormatDatadog}, {"tracecontext", core.FormatTraceContext}} {
		dd := tracer.NewPropagator(&tracer.PropagatorConfig{MaxTagsHeaderLen: 512, InjectStyle: style.dd, ExtractStyle: style.dd})
		for _, tid := range []core.TraceID{id64, id128} {
			name := fmt.Sprintf("%s/%s", style.dd, tid)
			h := http.Header{}
			mustNew(t, style.ours).Inject(h, propagation.Context{TraceID: tid, SpanID: span, Sampled: propagation.SamplingYes})
			sc, err := dd.Extract(tracer.HTTPHeadersCarrier(h))
			if err != nil {
				t.Fatalf("%s: dd-trace-go cannot read %v: %v", name, h, err)
			}
			if sc.TraceIDLower() != tid.Low || sc.TraceIDUpper() != tid.High || sc.SpanID() != uint64(span) {
				t.Errorf("%s: dd-trace-go read trace %s span %d", name, sc.TraceID(), sc.SpanID())
			}
			if p, ok := sc.SamplingPriority(); !ok || p <= 0 {
				t.Errorf("%s: dd-trace-go read priority %d, %v; want sampled", name, p, ok)
			}
			// And back: dd-trace-go writes, tracehop reads.
			out := http.Header{}
			if err := dd.Inject(sc, tracer.HTTPHeadersCarrier(out)); err != nil {
				t.Fatal(err)
			}
			c := mustNew(t, style.ours).Extract(out)
			if c.TraceID != tid || c.SpanID != span || c.Sampled != propagation.SamplingYes {
				t.Errorf("%s: tracehop read %+v from dd-trace-go's %v", name, c, out)
			}
		}
	}
}
