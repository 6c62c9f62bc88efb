package sampling

import "math/bits"

// MaxThreshold is 2^56, the number of distinct values of 56 bits of
// randomness: the rejection threshold of a sampler that keeps nothing. A
// threshold T keeps a trace whose randomness R is >= T; T = 0 keeps every
// trace (OpenTelemetry's "TraceState: Probability Sampling").
const MaxThreshold = 1 << 56

// RandomnessMask takes the 56 bits of randomness out of a trace id's low
// 64 bits (W3C Trace Context level 2: the right-most 7 bytes).
const RandomnessMask = MaxThreshold - 1

// ThresholdOf returns the rejection threshold of a percentage given in
// 0.01% steps (0 to 10000): (1 - p) * 2^56, with p*2^56 rounded to the
// nearest integer. It is exact: 10000 -> 0 (th:0), 5000 -> 2^55 (th:8),
// 1000 -> 0xe6666666666666 (th:e6666666666666, which the spec's table
// rounds to e666 at 4 digits), 0 -> MaxThreshold (never).
func ThresholdOf(basisPoints uint32) uint64 {
	hi, lo := bits.Mul64(uint64(basisPoints), MaxThreshold)
	keep, rem := bits.Div64(hi, lo, 10000)
	if 2*rem >= 10000 {
		keep++
	}
	return MaxThreshold - keep
}

// Threshold returns the rejection threshold of the sampler's random
// decisions, the overall cap included: what a trace it started by random
// sampling with W3C randomness was kept at (tracestate ot=th:...).
func (s *Sampler) Threshold() uint64 { return max(s.randomT, s.overallT) }

// OverallThreshold returns the threshold of the overall cap alone: a trace
// continued from a parent kept at threshold T is kept here at
// max(T, OverallThreshold()).
func (s *Sampler) OverallThreshold() uint64 { return s.overallT }

// Probabilistic reports whether the sampler's random decisions are a pure
// probability: false when a rate limit may refuse a trace the percentage
// kept, so that the threshold no longer says how many traces each one
// stands for (a back end must not count by it).
func (s *Sampler) Probabilistic() bool { return s.limit == nil }
