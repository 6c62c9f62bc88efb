package proxy

import (
	"cmp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/tracehop/tracehop/core/sampling"
	"github.com/tracehop/tracehop/proxy/config"
)

// The sources of the sampling rules in force.
const (
	SourceFile   = "file"   // the config file's tracing.sampling and the routes' own
	SourceAdmin  = "admin"  // PUT /sampling, until the next reload or DELETE /sampling
	SourceRemote = "remote" // the strategy tracing.sampling.remote last gave
	SourceOff    = "off"    // a route with tracing: {enabled: false}: no decision at all
)

// DefaultRule labels the decisions of requests whose route has no rule of
// its own (and of requests no route took), in
// tracehop_sampling_decisions_total{rule}.
const DefaultRule = "default"

// ruleRoute is what the sampling rules know of a route: where it is, its
// own sampling percentages in the file, and the names a remote operation
// strategy may give it.
type ruleRoute struct {
	listener, label string
	names           []string // its fixed span name, its label
	own             config.Sampling
	hasOwn, off     bool
}

// ruleRoutesOf lists the routes of cfg in config order: the slot of the
// j-th route of the i-th listener is firsts[i]+j (slot 0 is for requests
// no route took).
func ruleRoutesOf(cfg *config.Config) (routes []ruleRoute, firsts []int32) {
	for _, l := range cfg.Listeners {
		firsts = append(firsts, int32(1+len(routes)))
		for j, r := range l.Routes {
			rr := ruleRoute{listener: l.Name, label: r.Label(j)}
			op := strings.ReplaceAll(cmp.Or(r.Operation, l.Operation), config.PlaceholderRoute, cmp.Or(r.Name, r.Match.Prefix, r.Match.Path, "/"))
			switch {
			case op != "" && !perRequestName(op):
				rr.names = append(rr.names, op)
			case op == "" && l.Direction == config.Ingress:
				rr.names = append(rr.names, "ingress") // Envoy's name; an egress one has the host in it
			}
			if !slices.Contains(rr.names, rr.label) && !perRequestName(rr.label) {
				rr.names = append(rr.names, rr.label)
			}
			if rt := r.Tracing; rt != nil {
				rr.off = rt.Off()
				s := rt.Sampling
				rr.own = config.Sampling{Random: s.Random, Client: s.Client, Overall: s.Overall}
				rr.hasOwn = s.Random != nil || s.Client != nil || s.Overall != nil
			}
			routes = append(routes, rr)
		}
	}
	return routes, firsts
}

// samplingRules is the sampling in force: a sampler per route slot, made
// from the file's rules, a PUT /sampling or the remote strategy. It is
// never changed: a change builds the next one and swaps it in
// (Tracer.rules), so that a request reads it with one atomic load.
type samplingRules struct {
	slots  []samplingRule // 0: requests no route took
	source string         // of the tracing.sampling block in force
	block  config.Sampling
	// remote is the strategy in force; nil when none applies (none
	// configured, none received yet, or PUT /sampling overrides it).
	remote *sampling.Strategy
}

// samplingRule is one slot's sampler, and the counters of its decisions.
type samplingRule struct {
	sampler *sampling.Sampler
	counts  *decisionCounts
	label   string // DefaultRule, or the route's label
	source  string
	off     bool
}

// decisionCounts are the decisions of one rule: the series of
// tracehop_sampling_decisions_total{rule}. A rule that is rebuilt keeps
// counting where it was.
type decisionCounts struct {
	sampled, notSampled, rateLimited atomic.Uint64
}

// count records a decision.
func (c *decisionCounts) count(sampled bool, reason sampling.Reason) {
	switch {
	case sampled:
		c.sampled.Add(1)
	case reason == sampling.RateLimited:
		c.rateLimited.Add(1)
	default:
		c.notSampled.Add(1)
	}
}

// ruleCounters holds every rule's counters by label, kept across reloads
// and rebuilds; a new rule label gets its counters when rules are built,
// never on a request.
type ruleCounters struct {
	mu      sync.Mutex
	byLabel map[string]*decisionCounts
	order   []string
}

func newRuleCounters() *ruleCounters {
	return &ruleCounters{byLabel: map[string]*decisionCounts{}}
}

func (rc *ruleCounters) get(label string) *decisionCounts {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	c, ok := rc.byLabel[label]
	if !ok {
		c = new(decisionCounts)
		rc.byLabel[label] = c
		rc.order = append(rc.order, label)
	}
	return c
}

// each calls f for every rule's counters, in the order they appeared.
func (rc *ruleCounters) each(f func(label string, c *decisionCounts)) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, l := range rc.order {
		f(l, rc.byLabel[l])
	}
}

// buildRules makes the rules of routes: the file's tracing.sampling block,
// replaced by override (PUT /sampling) when not nil, else with remote's
// strategy (when not nil) in place of its random percentage and rate. A
// route's rule is, in that order: the remote strategy of an operation it
// is named by (unless overridden), its own percentages over the block's,
// or the block's. The rate limiter of prev carries over when the rate is
// the same.
func buildRules(routes []ruleRoute, file config.Sampling, override *config.Sampling, remote *sampling.Strategy, prev *samplingRules, counters *ruleCounters) (*samplingRules, error) {
	rules := &samplingRules{source: SourceFile, block: file}
	rules.block.Remote = nil
	switch {
	case override != nil:
		rules.source, rules.block = SourceAdmin, *override
	case remote != nil:
		rules.source, rules.remote = SourceRemote, remote
		if remote.RateLimited {
			rules.block.Random = pct(100)
			rules.block.MaxTracesPerSecond = nil
			if remote.MaxTracesPerSecond > 0 {
				rules.block.MaxTracesPerSecond = &remote.MaxTracesPerSecond
			} else {
				rules.block.Random = pct(0) // Jaeger's limiter at 0: nothing
			}
		} else {
			rules.block.Random = pct(sampling.Percent(remote.Probability))
		}
	}
	base, err := sampling.New(rules.block.Random, rules.block.Client, rules.block.Overall)
	if err != nil {
		return nil, err
	}
	if m := rules.block.MaxTracesPerSecond; m != nil {
		var l *sampling.Limiter
		if prev != nil {
			if pl := prev.slots[0].sampler.Limiter(); pl != nil && pl.PerSecond() == *m {
				l = pl
			}
		}
		if l == nil {
			if l, err = sampling.NewLimiter(*m); err != nil {
				return nil, err
			}
		}
		base = base.WithLimiter(l)
	}
	def := samplingRule{sampler: base, counts: counters.get(DefaultRule), label: DefaultRule, source: rules.source}
	rules.slots = make([]samplingRule, 1+len(routes))
	rules.slots[0] = def
	for i, r := range routes {
		rule := def
		var p *float64
		if rules.remote != nil {
			for _, name := range r.names {
				if prob, ok := rules.remote.Operations[name]; ok {
					p = pct(sampling.Percent(prob))
					break
				}
			}
		}
		switch {
		case r.off:
			rule = samplingRule{label: r.label, source: SourceOff, off: true}
		case p != nil:
			rule.sampler, err = base.With(p, r.own.Client, r.own.Overall)
			rule.label, rule.source, rule.counts = r.label, SourceRemote, counters.get(r.label)
		case r.hasOwn:
			rule.sampler, err = base.With(r.own.Random, r.own.Client, r.own.Overall)
			rule.label, rule.source, rule.counts = r.label, SourceFile, counters.get(r.label)
		}
		if err != nil {
			return nil, err
		}
		rules.slots[1+i] = rule
	}
	if err := rules.floors(prev); err != nil {
		return nil, err
	}
	return rules, nil
}

// floors gives each slot that samples at random a lower bound of its own
// when the remote strategy sets one: Jaeger's lower bound is per
// operation, and a slot is an operation here (a route, or the requests no
// route took). A slot's floor carries over from prev while the rate stays,
// so that the strategy's refresh does not hand out its room again.
func (rules *samplingRules) floors(prev *samplingRules) error {
	r := rules.remote
	if r == nil || r.RateLimited || !(r.LowerBound > 0) {
		return nil
	}
	for i := range rules.slots {
		s := &rules.slots[i]
		if s.off {
			continue
		}
		var floor *sampling.Limiter
		if prev != nil && len(prev.slots) == len(rules.slots) && prev.slots[i].sampler != nil {
			if pf := prev.slots[i].sampler.Floor(); pf != nil && pf.PerSecond() == r.LowerBound {
				floor = pf
			}
		}
		if floor == nil {
			var err error
			if floor, err = sampling.NewLimiter(r.LowerBound); err != nil {
				return err
			}
		}
		s.sampler = s.sampler.WithFloor(floor)
	}
	return nil
}

func pct(v float64) *float64 { return &v }

// perRequestName says whether an operation has a placeholder filled per
// request ({method}, {path}, {host}): then no one name is the route's.
func perRequestName(op string) bool {
	for _, p := range []string{config.PlaceholderMethod, config.PlaceholderPath, config.PlaceholderHost} {
		if strings.Contains(op, p) {
			return true
		}
	}
	return false
}

// SamplingBlock is a tracing.sampling block as the admin API shows it:
// every percentage, and the rate limit if there is one.
type SamplingBlock struct {
	Random             float64  `json:"random"`
	Client             float64  `json:"client"`
	Overall            float64  `json:"overall"`
	MaxTracesPerSecond *float64 `json:"max_traces_per_second,omitempty"`
}

func blockOf(s *sampling.Sampler) SamplingBlock {
	var b SamplingBlock
	b.Random, b.Client, b.Overall = s.Percentages()
	if l := s.Limiter(); l != nil {
		b.MaxTracesPerSecond = pct(l.PerSecond())
	}
	return b
}

// RouteSampling is the sampling of one route.
type RouteSampling struct {
	Listener string `json:"listener"`
	Route    string `json:"route"`
	// Rule labels its decisions in tracehop_sampling_decisions_total:
	// DefaultRule, or the route's label when it has a rule of its own.
	Rule string `json:"rule"`
	// Source is where its rule comes from: SourceFile, SourceAdmin,
	// SourceRemote, or SourceOff (its tracing is off).
	Source string `json:"source"`
	// Sampling is its rule; nil when its tracing is off.
	Sampling *SamplingBlock `json:"sampling,omitempty"`
	// Operations are the names a remote operation strategy applies to it
	// by: its span name when it is fixed, and its label.
	Operations []string `json:"operations"`
}

// rows describes the rules, route by route.
func (rules *samplingRules) rows(routes []ruleRoute) []RouteSampling {
	out := make([]RouteSampling, len(routes))
	for i, r := range routes {
		rule := rules.slots[1+i]
		out[i] = RouteSampling{Listener: r.listener, Route: r.label, Rule: rule.label, Source: rule.source, Operations: r.names}
		if !rule.off {
			b := blockOf(rule.sampler)
			out[i].Sampling = &b
		}
	}
	return out
}

// SamplingTable is the sampling of every route of cfg as its file says
// (tracehop validate prints it): without a PUT /sampling or a remote
// strategy, which apply only once tracehop runs.
func SamplingTable(cfg *config.Config) ([]RouteSampling, error) {
	if cfg.Tracing == nil {
		return nil, nil
	}
	routes, _ := ruleRoutesOf(cfg)
	rules, err := buildRules(routes, cfg.Tracing.Sampling, nil, nil, nil, newRuleCounters())
	if err != nil {
		return nil, err
	}
	return rules.rows(routes), nil
}
