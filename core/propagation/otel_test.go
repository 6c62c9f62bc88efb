package propagation_test

import (
	"strings"
	"testing"

	"github.com/tracehop/tracehop/core/propagation"
)

// th and rv as OpenTelemetry's tracestate handling writes them: th is 1 to
// 14 hex digits, extended with zeros; rv is exactly 14.
func TestParseOTelSampling(t *testing.T) {
	for _, c := range []struct {
		ts   string
		want propagation.OTelSampling
	}{
		{"ot=th:8", propagation.OTelSampling{Threshold: 1 << 55, HasThreshold: true}},
		{"ot=th:0", propagation.OTelSampling{Threshold: 0, HasThreshold: true}},
		{"ot=th:c;rv:9b8233f7e3a151", propagation.OTelSampling{Threshold: 0xc0000000000000, HasThreshold: true, Randomness: 0x9b8233f7e3a151, HasRandomness: true}},
		{"vendor=x,ot=rv:9b8233f7e3a151;p:8;th:fd70a4,z=1", propagation.OTelSampling{Threshold: 0xfd70a400000000, HasThreshold: true, Randomness: 0x9b8233f7e3a151, HasRandomness: true}},
		{"ot=th:e6666666666666", propagation.OTelSampling{Threshold: 0xe6666666666666, HasThreshold: true}},
		{"ot=th:xyz;rv:9b8233f7e3a15", propagation.OTelSampling{}}, // not hex; 13 digits
		{"ot=th:e66666666666666", propagation.OTelSampling{}},      // 15 digits
		{"xot=th:8,vendor=ot=th:8", propagation.OTelSampling{}},    // not the ot member
		{"", propagation.OTelSampling{}},
	} {
		if got := propagation.ParseOTelSampling(c.ts); got != c.want {
			t.Errorf("%q: %+v, want %+v", c.ts, got, c.want)
		}
	}
}

func TestAppendTraceStateThreshold(t *testing.T) {
	long := strings.Repeat("k=", 1) + strings.Repeat("v", 250) + ",l=" + strings.Repeat("w", 250) // 506 characters
	for _, c := range []struct {
		ts   string
		th   uint64
		set  bool
		want string
	}{
		{"", 1 << 55, true, "ot=th:8"},
		{"", 0, true, "ot=th:0"},
		{"", 0xe6666666666666, true, "ot=th:e6666666666666"},
		{"a=1,b=2", 0xc0000000000000, true, "ot=th:c,a=1,b=2"},
		// The Collector's README example: 50% applied to th:0 with rv.
		{"ot=th:0;rv:9b8233f7e3a151", 1 << 55, true, "ot=th:8;rv:9b8233f7e3a151"},
		{"a=1,ot=rv:9b8233f7e3a151;th:c;x:y,b=2", 1 << 55, true, "ot=th:8;rv:9b8233f7e3a151;x:y,a=1,b=2"},
		{"a=1,ot=th:c,b=2", 0, false, "a=1,b=2"},
		{"ot=th:c;rv:9b8233f7e3a151", 0, false, "ot=rv:9b8233f7e3a151"},
		{"a=1", 0, false, "a=1"},
		{long, 1 << 55, true, "ot=th:8,k=" + strings.Repeat("v", 250)},
	} {
		got := string(propagation.AppendTraceStateThreshold([]byte("prefix|"), c.ts, c.th, c.set))
		if got != "prefix|"+c.want {
			t.Errorf("%q with th %x (%v): %q, want %q", c.ts, c.th, c.set, got, "prefix|"+c.want)
		}
		if len(got)-len("prefix|") > 512 {
			t.Errorf("%q: %d characters", c.ts, len(got))
		}
	}
	buf := make([]byte, 0, 600)
	if n := testing.AllocsPerRun(100, func() {
		buf = propagation.AppendTraceStateThreshold(buf[:0], "a=1,ot=rv:9b8233f7e3a151;th:c,b=2", 1<<55, true)
		_ = propagation.ParseOTelSampling("a=1,ot=rv:9b8233f7e3a151;th:c,b=2")
	}); n != 0 {
		t.Errorf("%v allocations", n)
	}
}
