// Package sampling decides whether a request is traced, in Envoy's order:
// a client's x-client-trace-id (with the client percentage), a trusted
// force-trace header, the sampled flag of an incoming trace context, random
// sampling, and finally the overall percentage that caps everything.
//
// Random and overall checks hash the request id, like Envoy's stable
// sampling: every hop that sees the same x-request-id makes the same
// decision, so partial sampling does not tear traces apart even where an
// application drops the trace headers.
//
// Where the trace carries W3C randomness instead (Input.Consistent: a trace
// id whose random flag is set, or an explicit rv in tracestate's ot
// member), they compare that randomness with a rejection threshold, as
// OpenTelemetry's consistent probability sampling does ("TraceState:
// Probability Sampling"): a trace kept at p% is kept by every sampler at p%
// or more, whichever implementation, and the threshold it was kept at
// (Sampler.Threshold, written as tracestate ot=th:...) tells a back end or
// a Collector downstream how many traces each one stands for.
//
// A Strategy is what a remote source (Jaeger's remote sampling API) says;
// the proxy turns it into samplers. Decisions on a request's outcome
// (status, latency) are not made here: that is tail sampling, in a
// Collector tier that sees whole traces.
package sampling

import (
	"fmt"
	"math"
	"sync/atomic"
	"time"
)

// Reason says why a request is or is not traced.
type Reason uint8

// The reasons, for metrics and debugging.
const (
	NotSampled Reason = iota
	Random
	Client
	Forced
	Upstream           // the incoming context said sampled
	UpstreamNotSampled // the incoming context said not sampled
	OverallCap         // sampled, then capped by the overall percentage
	RateLimited        // a new trace, over max_traces_per_second
	LowerBound         // not picked at random, but the floor had room (Jaeger's lower bound)
)

var reasonNames = [...]string{"not_sampled", "random", "client", "forced", "upstream", "upstream_not_sampled", "overall_cap", "rate_limited", "lower_bound"}

// String returns the reason's metric label.
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "unknown"
}

// Sampler holds the three percentages in 0.01% steps (0 to 10000), their
// rejection thresholds for consistent decisions, and the rate limit on new
// traces. It is immutable once built (the limit's bucket aside): a change
// of rules builds another.
type Sampler struct {
	random, client, overall uint32
	randomT, overallT       uint64   // thresholds of random and overall: ThresholdOf
	limit                   *Limiter // nil: no limit
	floor                   *Limiter // nil: no lower bound
}

// New returns a sampler for percentages between 0 and 100; nil means 100.
func New(random, client, overall *float64) (*Sampler, error) {
	conv := func(name string, p *float64) (uint32, error) {
		if p == nil {
			return 10000, nil
		}
		if *p < 0 || *p > 100 || math.IsNaN(*p) {
			return 0, fmt.Errorf("sampling.%s: must be between 0 and 100, got %v", name, *p)
		}
		return uint32(math.Round(*p * 100)), nil
	}
	var s Sampler
	var err error
	if s.random, err = conv("random", random); err != nil {
		return nil, err
	}
	if s.client, err = conv("client", client); err != nil {
		return nil, err
	}
	if s.overall, err = conv("overall", overall); err != nil {
		return nil, err
	}
	s.randomT, s.overallT = ThresholdOf(s.random), ThresholdOf(s.overall)
	return &s, nil
}

// Percentages returns the sampler's random, client and overall
// percentages.
func (s *Sampler) Percentages() (random, client, overall float64) {
	return float64(s.random) / 100, float64(s.client) / 100, float64(s.overall) / 100
}

// With returns a sampler whose percentages are the given ones where not
// nil and s's elsewhere, sharing s's rate limit (a route's own sampling:
// its traces count against the same limit).
func (s *Sampler) With(random, client, overall *float64) (*Sampler, error) {
	keep := func(p *float64, v uint32) *float64 {
		if p != nil {
			return p
		}
		f := float64(v) / 100
		return &f
	}
	o, err := New(keep(random, s.random), keep(client, s.client), keep(overall, s.overall))
	if err != nil {
		return nil, err
	}
	o.limit = s.limit
	return o, nil
}

// LimitNewTraces caps the traces this sampler starts (by random or client
// percentage) at perSecond, with a burst of as many (at least one), as
// Jaeger's rate-limiting sampler does: "this percent, but never more than
// N a second", so that a traffic spike cannot multiply the tracing bill or
// a collector's load. Traces continued from a sampled parent and forced
// ones are not limited: a trace is decided once, where it starts, and the
// hops after it follow. Call it before the sampler is used.
func (s *Sampler) LimitNewTraces(perSecond float64) error {
	l, err := NewLimiter(perSecond)
	if err != nil {
		return err
	}
	s.limit = l
	return nil
}

// WithLimiter returns a copy of s whose new traces count against l (nil:
// no limit). Samplers built again for new rules keep the limiter of the
// old ones when the rate did not change, so that its bucket carries over.
func (s *Sampler) WithLimiter(l *Limiter) *Sampler {
	c := *s
	c.limit = l
	return &c
}

// WithFloor returns a copy of s that starts a trace the random check
// passed over while floor has room, and counts every trace it starts at
// random against floor: at least floor's rate of new traces, as Jaeger's
// lower bound per operation (operationSampling.
// defaultLowerBoundTracesPerSecond) keeps a rarely called operation in
// view at a low probability. nil: no floor.
func (s *Sampler) WithFloor(floor *Limiter) *Sampler {
	c := *s
	c.floor = floor
	return &c
}

// Floor returns the sampler's lower bound, nil when it has none.
func (s *Sampler) Floor() *Limiter { return s.floor }

// Limiter is the rate limit LimitNewTraces sets, shared by the samplers
// given it (WithLimiter, With): their new traces count together.
type Limiter struct {
	perSecond float64
	rateLimit
}

// NewLimiter returns a limiter of perSecond new traces, with a burst of
// as many (at least one).
func NewLimiter(perSecond float64) (*Limiter, error) {
	if !(perSecond > 0) || math.IsInf(perSecond, 0) {
		return nil, fmt.Errorf("sampling.max_traces_per_second: must be a number above 0, got %v", perSecond)
	}
	interval := time.Duration(float64(time.Second) / perSecond)
	// The first trace passes at tat 0; burst is how much further tat may
	// run ahead: room for the other burst-1 (it was a whole burst, which
	// let one more through at once).
	return &Limiter{perSecond: perSecond, rateLimit: rateLimit{interval: int64(interval), burst: int64((max(perSecond, 1) - 1) * float64(interval)), start: time.Now()}}, nil
}

// PerSecond returns the limit's rate.
func (l *Limiter) PerSecond() float64 { return l.perSecond }

// Limiter returns the sampler's limiter, nil when it has none.
func (s *Sampler) Limiter() *Limiter { return s.limit }

// rateLimit is a token bucket kept as one number (the generic cell rate
// algorithm): tat, the theoretical arrival time of the next trace, in
// nanoseconds since start. A trace may start when now >= tat-burst; it then
// moves tat on by interval. One compare-and-swap per new trace, no lock.
type rateLimit struct {
	interval, burst int64
	start           time.Time
	tat             atomic.Int64
}

func (l *rateLimit) allow() bool {
	now := int64(time.Since(l.start))
	for {
		tat := l.tat.Load()
		if now < tat-l.burst {
			return false
		}
		if l.tat.CompareAndSwap(tat, max(tat, now)+l.interval) {
			return true
		}
	}
}

// Input is what one request offers the decision.
type Input struct {
	// RequestID is the request's x-request-id; its hash drives the random
	// and overall checks.
	RequestID string
	// ClientTraceID is true when the request carries x-client-trace-id
	// (and the listener trusts it).
	ClientTraceID bool
	// Forced is true when a trusted x-tracehop-force-trace came with it.
	Forced bool
	// Upstream is the incoming context's decision: 0 unset, 1 yes, 2 no
	// (propagation.Sampling's values).
	Upstream uint8
	// Consistent says Randomness holds the trace's W3C randomness (56
	// bits): the low 56 bits of a trace id whose random flag is set, or
	// tracestate's explicit rv. The random and overall checks then keep a
	// trace when Randomness >= their threshold, instead of hashing the
	// request id.
	Consistent bool
	Randomness uint64
}

// Decide returns whether to trace, and why.
func (s *Sampler) Decide(in Input) (bool, Reason) {
	var h uint64 // the request id's hash, when a check needs it
	if in.ClientTraceID || !in.Consistent {
		h = fnv64(in.RequestID)
	}
	bucket := uint32(h % 10000)
	sampled, reason := false, NotSampled
	switch {
	case in.ClientTraceID && bucket < s.client:
		sampled, reason = true, Client
	case in.Forced:
		sampled, reason = true, Forced
	case in.Upstream == 1:
		sampled, reason = true, Upstream
	case in.Upstream == 2:
		return false, UpstreamNotSampled
	case in.Consistent:
		sampled, reason = in.Randomness >= s.randomT, Random
	case bucket < s.random:
		sampled, reason = true, Random
	default:
		reason = Random // passed over at random
	}
	if reason == Random && s.floor != nil {
		// Jaeger's guaranteed-throughput sampler: a trace started at
		// random uses the floor's room too, so the floor adds traces only
		// where the probability gives fewer than its rate.
		if room := s.floor.allow(); !sampled && room {
			sampled, reason = true, LowerBound
		}
	}
	if !sampled {
		return false, NotSampled
	}
	// The overall cap uses another slice of the hash so that it does not
	// simply repeat the random check; with W3C randomness, the same
	// randomness: a trace kept at overall% is kept at any higher one.
	if in.Consistent && in.Randomness < s.overallT || !in.Consistent && uint32((h/10000)%10000) >= s.overall {
		return false, OverallCap
	}
	if sampled && s.limit != nil && (reason == Random || reason == Client || reason == LowerBound) && !s.limit.allow() {
		return false, RateLimited
	}
	return sampled, reason
}

// fnv64 is FNV-1a: cheap, allocation-free and stable across processes.
func fnv64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}
