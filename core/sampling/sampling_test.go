package sampling_test

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/tracehop/tracehop/core/sampling"
)

func pct(v float64) *float64 { return &v }

func TestOrder(t *testing.T) {
	all, _ := sampling.New(nil, nil, nil)
	none, _ := sampling.New(pct(0), pct(0), pct(100))
	capped, _ := sampling.New(nil, nil, pct(0))
	cases := []struct {
		name   string
		s      *sampling.Sampler
		in     sampling.Input
		want   bool
		reason sampling.Reason
	}{
		{"random 100", all, sampling.Input{RequestID: "a"}, true, sampling.Random},
		{"random 0", none, sampling.Input{RequestID: "a"}, false, sampling.NotSampled},
		{"client trace id beats random 0... unless client is 0", none, sampling.Input{RequestID: "a", ClientTraceID: true}, false, sampling.NotSampled},
		{"client trace id", all, sampling.Input{RequestID: "a", ClientTraceID: true, Upstream: 2}, true, sampling.Client},
		{"forced beats upstream no", none, sampling.Input{RequestID: "a", Forced: true, Upstream: 2}, true, sampling.Forced},
		{"upstream yes beats random 0", none, sampling.Input{RequestID: "a", Upstream: 1}, true, sampling.Upstream},
		{"upstream no beats random 100", all, sampling.Input{RequestID: "a", Upstream: 2}, false, sampling.UpstreamNotSampled},
		{"overall 0 caps forced", capped, sampling.Input{RequestID: "a", Forced: true}, false, sampling.OverallCap},
	}
	for _, c := range cases {
		got, reason := c.s.Decide(c.in)
		if got != c.want || reason != c.reason {
			t.Errorf("%s: got %v (%s), want %v (%s)", c.name, got, reason, c.want, c.reason)
		}
	}
}

// With 25% random sampling about a quarter of request ids are sampled, and
// the same id always gets the same answer.
func TestRandomIsStableAndProportional(t *testing.T) {
	s, _ := sampling.New(pct(25), nil, nil)
	n := 0
	for i := range 20000 {
		id := fmt.Sprintf("req-%d", i)
		a, _ := s.Decide(sampling.Input{RequestID: id})
		b, _ := s.Decide(sampling.Input{RequestID: id})
		if a != b {
			t.Fatalf("request %s got two answers", id)
		}
		if a {
			n++
		}
	}
	if n < 4500 || n > 5500 {
		t.Fatalf("25%% sampling kept %d of 20000", n)
	}
}

func TestBadPercent(t *testing.T) {
	if _, err := sampling.New(pct(101), nil, nil); err == nil {
		t.Fatal("101% accepted")
	}
}

func BenchmarkDecide(b *testing.B) {
	s, _ := sampling.New(pct(50), nil, nil)
	in := sampling.Input{RequestID: "6a3e0c5e-4b43-4b3b-9d2c-3f0e6c1d2b7a"}
	b.ReportAllocs()
	for b.Loop() {
		s.Decide(in)
	}
}

// max_traces_per_second caps new traces (a burst of N, then N a second),
// never the ones a sampled parent or a force asked for.
func TestRateLimitedNewTraces(t *testing.T) {
	s, _ := sampling.New(nil, nil, nil)
	if err := s.LimitNewTraces(10); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	started, limited := 0, 0
	for i := range 1000 {
		sampled, reason := s.Decide(sampling.Input{RequestID: fmt.Sprint("req-", i)})
		switch {
		case sampled && reason == sampling.Random:
			started++
		case !sampled && reason == sampling.RateLimited:
			limited++
		default:
			t.Fatalf("decision %v %v", sampled, reason)
		}
	}
	// The burst, plus what the elapsed time earned: never more.
	if most := 10 + int(time.Since(start).Seconds()*10) + 1; started < 10 || started > most || started+limited != 1000 {
		t.Fatalf("%d traces started, %d limited; want 10 to %d started", started, limited, most)
	}
	for _, in := range []sampling.Input{{RequestID: "x", Upstream: 1}, {RequestID: "y", Forced: true}} {
		if sampled, reason := s.Decide(in); !sampled {
			t.Errorf("%+v was limited (%v): only new traces are", in, reason)
		}
	}
	for _, bad := range []float64{0, -1, math.Inf(1), math.NaN()} {
		if err := s.LimitNewTraces(bad); err == nil {
			t.Errorf("accepted a limit of %v", bad)
		}
	}
}

// TestFloor: Jaeger's lower bound. A request the random check passes over
// is traced while the floor has room; a trace started at random uses the
// room too; decisions made upstream, forced or client-chosen never touch
// it.
func TestFloor(t *testing.T) {
	floor, err := sampling.NewLimiter(1.0 / 3600) // room for one, then one an hour
	if err != nil {
		t.Fatal(err)
	}
	zero, _ := sampling.New(pct(0), pct(0), nil)
	never := zero.WithFloor(floor)
	if got, r := never.Decide(sampling.Input{RequestID: "a", Upstream: 2}); got || r != sampling.UpstreamNotSampled {
		t.Errorf("upstream no: %v %s, want the floor untouched", got, r)
	}
	if got, r := never.Decide(sampling.Input{RequestID: "a", Upstream: 1}); !got || r != sampling.Upstream {
		t.Errorf("upstream yes: %v %s", got, r)
	}
	if got, r := never.Decide(sampling.Input{RequestID: "a"}); !got || r != sampling.LowerBound {
		t.Errorf("first new trace at 0%%: %v %s, want sampled by the lower bound", got, r)
	}
	if got, r := never.Decide(sampling.Input{RequestID: "b", Consistent: true, Randomness: 1<<56 - 1}); got || r != sampling.NotSampled {
		t.Errorf("second: %v %s, want the floor spent", got, r)
	}

	// A trace started at random takes the floor's room: the floor adds
	// traces only where the probability gives too few.
	floor2, _ := sampling.NewLimiter(1.0 / 3600)
	all, _ := sampling.New(nil, nil, nil)
	if got, r := all.WithFloor(floor2).Decide(sampling.Input{RequestID: "a"}); !got || r != sampling.Random {
		t.Errorf("100%%: %v %s", got, r)
	}
	if got, _ := zero.WithFloor(floor2).Decide(sampling.Input{RequestID: "a"}); got {
		t.Error("the floor's room outlived a trace started at random")
	}

	// The overall cap still holds over it.
	floor3, _ := sampling.NewLimiter(1.0 / 3600)
	capped, _ := sampling.New(pct(0), pct(0), pct(0))
	if got, r := capped.WithFloor(floor3).Decide(sampling.Input{RequestID: "a"}); got || r != sampling.OverallCap {
		t.Errorf("overall 0: %v %s, want capped", got, r)
	}
	if zero.Floor() != nil || never.Floor() != floor {
		t.Error("Floor does not say what WithFloor set")
	}
}
