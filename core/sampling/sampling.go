// Package sampling decides whether a request is traced, in Envoy's order:
// a client's x-client-trace-id (with the client percentage), a trusted
// force-trace header, the sampled flag of an incoming trace context, random
// sampling, and finally the overall percentage that caps everything.
//
// Random and overall checks hash the request id, like Envoy's stable
// sampling: every hop that sees the same x-request-id makes the same
// decision, so partial sampling does not tear traces apart even where an
// application drops the trace headers.
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
)

var reasonNames = [...]string{"not_sampled", "random", "client", "forced", "upstream", "upstream_not_sampled", "overall_cap", "rate_limited"}

// String returns the reason's metric label.
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "unknown"
}

// Sampler holds the three percentages in 0.01% steps (0 to 10000), and the
// rate limit on new traces.
type Sampler struct {
	random, client, overall uint32
	limit                   *rateLimit // nil: no limit
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
	return &s, nil
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
	if !(perSecond > 0) || math.IsInf(perSecond, 0) {
		return fmt.Errorf("sampling.max_traces_per_second: must be a number above 0, got %v", perSecond)
	}
	interval := time.Duration(float64(time.Second) / perSecond)
	s.limit = &rateLimit{interval: int64(interval), burst: int64(max(perSecond, 1) * float64(interval)), start: time.Now()}
	return nil
}

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
}

// Decide returns whether to trace, and why.
func (s *Sampler) Decide(in Input) (bool, Reason) {
	bucket := uint32(fnv64(in.RequestID) % 10000)
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
	case bucket < s.random:
		sampled, reason = true, Random
	}
	// The overall cap uses another slice of the hash so that it does not
	// simply repeat the random check.
	if sampled && uint32((fnv64(in.RequestID)/10000)%10000) >= s.overall {
		return false, OverallCap
	}
	if sampled && s.limit != nil && (reason == Random || reason == Client) && !s.limit.allow() {
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
