package sampling_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/tracehop/tracehop/core/sampling"
)

// roundHex rounds a 56-bit threshold to digits hex digits (half up) and
// drops trailing zeros, as the specification's table prints thresholds.
func roundHex(t uint64, digits int) string {
	shift := uint(4 * (14 - digits))
	r := (t + 1<<shift/2) >> shift
	s := fmt.Sprintf("%0*x", digits, r)
	if s = strings.TrimRight(s, "0"); s == "" {
		s = "0"
	}
	return s
}

// The thresholds of the percentages a Sampler takes are exact; rounded to
// 3, 4 and 5 significant digits they are the reference values of
// OpenTelemetry's "TraceState: Probability Sampling" table (every 1-in-N
// row that is a whole number of 0.01% steps).
func TestThresholdsMatchTheSpecification(t *testing.T) {
	for _, c := range []struct {
		basisPoints uint32
		want        [3]string // precision 3, 4, 5 as the table prints them
	}{
		{10000, [3]string{"0", "0", "0"}},
		{5000, [3]string{"8", "8", "8"}},
		{2500, [3]string{"c", "c", "c"}},
		{2000, [3]string{"ccd", "cccd", "ccccd"}},
		{1250, [3]string{"e", "e", "e"}},
		{1000, [3]string{"e66", "e666", "e6666"}},
		{625, [3]string{"f", "f", "f"}},
		{100, [3]string{"fd71", "fd70a", "fd70a4"}},
		{10, [3]string{"ffbe7", "ffbe77", "ffbe76d"}},
		{1, [3]string{"fff972", "fff9724", "fff97247"}},
	} {
		th := sampling.ThresholdOf(c.basisPoints)
		for i, want := range c.want {
			// The table raises the precision by the leading f's: compare
			// at the number of digits it printed.
			if got := roundHex(th, len(want)); got != want && !(want == "0" && th == 0) {
				t.Errorf("%v%%: threshold %014x rounds to %s at precision %d, the specification says %s", float64(c.basisPoints)/100, th, got, i+3, want)
			}
		}
	}
	if th := sampling.ThresholdOf(1000); th != 0xe6666666666666 {
		t.Errorf("10%%: threshold %x, want e6666666666666 ((1-0.1)*2^56, rounded)", th)
	}
	if sampling.ThresholdOf(0) != sampling.MaxThreshold || sampling.ThresholdOf(10000) != 0 {
		t.Error("0% must reject everything, 100% nothing")
	}
}

func newSampler(t *testing.T, random, overall float64) *sampling.Sampler {
	t.Helper()
	s, err := sampling.New(&random, nil, &overall)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// With W3C randomness a decision is R >= T: consistent (what 10% keeps,
// 50% keeps too), proportional, whatever the request id, and the overall
// cap takes the same randomness.
func TestConsistentDecisions(t *testing.T) {
	s10, s50, capped := newSampler(t, 10, 100), newSampler(t, 50, 100), newSampler(t, 100, 10)
	if s10.Threshold() != 0xe6666666666666 || s50.Threshold() != 1<<55 || capped.Threshold() != s10.Threshold() {
		t.Fatalf("thresholds %x %x %x", s10.Threshold(), s50.Threshold(), capped.Threshold())
	}
	rng := rand.New(rand.NewPCG(1, 2))
	kept10, kept50 := 0, 0
	for i := range 100000 {
		r := rng.Uint64() & sampling.RandomnessMask
		in := sampling.Input{RequestID: fmt.Sprint("req-", i), Consistent: true, Randomness: r}
		a, reason := s10.Decide(in)
		b, _ := s50.Decide(in)
		c, _ := capped.Decide(in)
		if a && !b {
			t.Fatalf("randomness %x: kept at 10%%, dropped at 50%%", r)
		}
		if a != c {
			t.Fatalf("randomness %x: random 10%% says %v, overall 10%% says %v", r, a, c)
		}
		if a != (r >= s10.Threshold()) || a && reason != sampling.Random {
			t.Fatalf("randomness %x: %v (%v), threshold %x", r, a, reason, s10.Threshold())
		}
		in.RequestID = "another id"
		if again, _ := s10.Decide(in); again != a {
			t.Fatal("the request id changed a consistent decision")
		}
		if a {
			kept10++
		}
		if b {
			kept50++
		}
	}
	if kept10 < 9500 || kept10 > 10500 || kept50 < 49000 || kept50 > 51000 {
		t.Fatalf("kept %d at 10%% and %d at 50%% of 100000", kept10, kept50)
	}
	// The boundary: R equal to the threshold is kept, one less is not.
	th := s10.Threshold()
	for r, want := range map[uint64]bool{th: true, th - 1: false, sampling.RandomnessMask: true, 0: false} {
		if got, _ := s10.Decide(sampling.Input{Consistent: true, Randomness: r}); got != want {
			t.Errorf("randomness %x at threshold %x: %v, want %v", r, th, got, want)
		}
	}
	// A parent's yes is capped by overall with the same randomness.
	if ok, reason := capped.Decide(sampling.Input{Upstream: 1, Consistent: true, Randomness: th - 1}); ok || reason != sampling.OverallCap {
		t.Errorf("overall 10%% let a continued trace below its threshold through: %v %v", ok, reason)
	}
}

// A rate limit makes decisions non-probabilistic, and samplers rebuilt
// with the same limiter share its bucket.
func TestLimiterIsShared(t *testing.T) {
	s := newSampler(t, 100, 100)
	if !s.Probabilistic() {
		t.Fatal("a sampler without a limit is probabilistic")
	}
	l, err := sampling.NewLimiter(2)
	if err != nil {
		t.Fatal(err)
	}
	a, b := s.WithLimiter(l), newSampler(t, 50, 100).WithLimiter(l)
	if a.Probabilistic() || a.Limiter().PerSecond() != 2 || s.Limiter() != nil {
		t.Fatal("WithLimiter changed the original, or did not take")
	}
	started := 0
	for i := range 10 {
		for _, x := range []*sampling.Sampler{a, b} {
			if ok, _ := x.Decide(sampling.Input{Consistent: true, Randomness: sampling.RandomnessMask, RequestID: fmt.Sprint(i)}); ok {
				started++
			}
		}
	}
	// The bucket holds the burst (2) at once; two buckets would have let 4
	// through.
	if started != 2 {
		t.Fatalf("two samplers sharing a limit of 2 a second started %d traces at once", started)
	}
}

// Jaeger serves a strategy in two JSON encodings; both decode, and broken
// answers are refused rather than applied.
func TestParseJaegerStrategy(t *testing.T) {
	cases := []struct {
		name, body string
		want       string // the strategy, or the error
	}{
		{"v2 probabilistic with operations", `{"strategyType":0,"probabilisticSampling":{"samplingRate":0.2},
			"operationSampling":{"defaultSamplingProbability":0.2,"defaultLowerBoundTracesPerSecond":0,
			"perOperationStrategies":[{"operation":"checkout","probabilisticSampling":{"samplingRate":1}}]}}`,
			"p=0.2 rate=false/0 ops=map[checkout:1]"},
		{"a lower bound (Jaeger's adaptive sampling)", `{"strategyType":"PROBABILISTIC","operationSampling":{"defaultSamplingProbability":0.001,
			"defaultLowerBoundTracesPerSecond":0.0166,"perOperationStrategies":[]}}`, "p=0.001 rate=false/0 ops=map[] lb=0.0166"},
		{"bad lower bound", `{"strategyType":0,"operationSampling":{"defaultSamplingProbability":0.1,"defaultLowerBoundTracesPerSecond":-1}}`,
			"operationSampling.defaultLowerBoundTracesPerSecond: must be 0 or more, got -1"},
		{"v1 names", `{"strategyType":"PROBABILISTIC","probabilisticSampling":{"samplingRate":0.001}}`, "p=0.001 rate=false/0 ops=map[]"},
		{"rate limiting", `{"strategyType":1,"rateLimitingSampling":{"maxTracesPerSecond":5}}`, "p=0 rate=true/5 ops=map[]"},
		{"rate limiting by name", `{"strategyType":"RATE_LIMITING","rateLimitingSampling":{"maxTracesPerSecond":0}}`, "p=0 rate=true/0 ops=map[]"},
		{"no type", `{"probabilisticSampling":{"samplingRate":1}}`, "p=1 rate=false/0 ops=map[]"},
		{"bad probability", `{"strategyType":0,"probabilisticSampling":{"samplingRate":1.5}}`, "probability: a probability must be between 0 and 1, got 1.5"},
		{"bad operation", `{"strategyType":0,"operationSampling":{"defaultSamplingProbability":0.1,"perOperationStrategies":[{"operation":"x","probabilisticSampling":{"samplingRate":-1}}]}}`,
			"operation x: a probability must be between 0 and 1, got -1"},
		{"bad rate", `{"strategyType":1,"rateLimitingSampling":{"maxTracesPerSecond":-3}}`, "rateLimitingSampling.maxTracesPerSecond: must be 0 or more, got -3"},
		{"empty", `{}`, "no strategy: neither probabilisticSampling, rateLimitingSampling nor operationSampling"},
		{"unknown type", `{"strategyType":7}`, "strategyType 7 is neither PROBABILISTIC (0) nor RATE_LIMITING (1)"},
		{"not json", `<html>`, "not a Jaeger sampling strategy: invalid character '<' looking for beginning of value"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, err := sampling.ParseJaegerStrategy([]byte(c.body))
			got := ""
			if err != nil {
				got = err.Error()
			} else {
				got = fmt.Sprintf("p=%v rate=%v/%v ops=%v", st.Probability, st.RateLimited, st.MaxTracesPerSecond, st.Operations)
				if st.LowerBound != 0 {
					got += fmt.Sprintf(" lb=%v", st.LowerBound)
				}
			}
			if got != c.want {
				t.Fatalf("got %s, want %s", got, c.want)
			}
		})
	}
	for p, want := range map[float64]float64{1: 100, 0.5: 50, 0.001: 0.1, 0.00001: 0.01, 0: 0, 0.123456: 12.35} {
		if got := sampling.Percent(p); got != want {
			t.Errorf("Percent(%v) = %v, want %v", p, got, want)
		}
	}
}
