package proxy

import (
	"testing"

	"github.com/tracehop/tracehop/core/sampling"
	"github.com/tracehop/tracehop/proxy/config"
)

// TestRemoteLowerBoundPerOperation: a remote strategy's lower bound gives
// every route (an operation) and the requests no route took a floor of
// their own, and a refresh of the same strategy keeps each floor's state.
func TestRemoteLowerBoundPerOperation(t *testing.T) {
	cfg, err := config.Parse("floor.yaml", []byte(`listeners:
  - {name: in, address: "127.0.0.1:0", direction: ingress, routes: [{match: {prefix: /a}, cluster: up, operation: a}, {match: {prefix: /}, cluster: up, operation: b}]}
clusters:
  - {name: up, endpoints: ["127.0.0.1:1"]}
tracing:
  driver: {name: file}
`))
	if err != nil {
		t.Fatal(err)
	}
	routes, _ := ruleRoutesOf(cfg)
	remote := &sampling.Strategy{Probability: 0, LowerBound: 1.0 / 3600}
	counters := newRuleCounters()
	rules, err := buildRules(routes, cfg.Tracing.Sampling, nil, remote, nil, counters)
	if err != nil {
		t.Fatal(err)
	}
	decide := func(r *samplingRules, slot int) sampling.Reason {
		_, reason := r.slots[slot].sampler.Decide(sampling.Input{RequestID: "x"})
		return reason
	}
	for slot := range rules.slots {
		if got := decide(rules, slot); got != sampling.LowerBound {
			t.Errorf("slot %d, first request: %s, want lower_bound", slot, got)
		}
		if got := decide(rules, slot); got != sampling.NotSampled {
			t.Errorf("slot %d, second request: %s, want not_sampled (one an hour)", slot, got)
		}
	}
	again, err := buildRules(routes, cfg.Tracing.Sampling, nil, remote, rules, counters)
	if err != nil {
		t.Fatal(err)
	}
	if got := decide(again, 1); got != sampling.NotSampled {
		t.Errorf("after a refresh of the same strategy: %s, want the floor still spent", got)
	}
	changed, err := buildRules(routes, cfg.Tracing.Sampling, nil, &sampling.Strategy{LowerBound: 1.0 / 1800}, again, counters)
	if err != nil {
		t.Fatal(err)
	}
	if got := decide(changed, 1); got != sampling.LowerBound {
		t.Errorf("a new lower bound: %s, want a floor with room", got)
	}
	none, err := buildRules(routes, cfg.Tracing.Sampling, nil, &sampling.Strategy{}, changed, counters)
	if err != nil {
		t.Fatal(err)
	}
	if got := decide(none, 1); got != sampling.NotSampled || none.slots[1].sampler.Floor() != nil {
		t.Errorf("no lower bound: %s, floor %v", got, none.slots[1].sampler.Floor())
	}
}
