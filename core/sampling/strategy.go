package sampling

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
)

// Strategy is what a remote source says about one service's sampling:
// Jaeger's sampling strategy response (the remote sampling API of Jaeger
// v2's remote_sampling extension and of the Jaeger v1 collector and agent).
type Strategy struct {
	// Probability is the service's default probability, 0 to 1: the
	// operation strategies' default when there are any, else the
	// probabilistic strategy's rate. Unused when RateLimited.
	Probability float64
	// RateLimited is Jaeger's rate-limiting strategy: every request may
	// start a trace, but at most MaxTracesPerSecond a second.
	RateLimited        bool
	MaxTracesPerSecond float64
	// Operations are the per-operation probabilities
	// (operationSampling.perOperationStrategies), by operation name.
	Operations map[string]float64
	// LowerBound is the fewest new traces a second each operation starts
	// whatever its probability (operationSampling.
	// defaultLowerBoundTracesPerSecond; Jaeger's adaptive sampling sets it
	// so that a rare operation is still seen); 0: none.
	LowerBound float64
}

// jaegerStrategy is the JSON of Jaeger's SamplingStrategyResponse, in both
// encodings Jaeger serves: the Thrift-derived one (strategyType a number:
// Jaeger v2's remote_sampling extension) and the Protobuf-derived one
// (strategyType a name: Jaeger v1's /api/sampling); the field names are
// the same.
type jaegerStrategy struct {
	StrategyType          json.RawMessage `json:"strategyType"`
	ProbabilisticSampling *struct {
		SamplingRate float64 `json:"samplingRate"`
	} `json:"probabilisticSampling"`
	RateLimitingSampling *struct {
		MaxTracesPerSecond float64 `json:"maxTracesPerSecond"`
	} `json:"rateLimitingSampling"`
	OperationSampling *struct {
		DefaultSamplingProbability       float64 `json:"defaultSamplingProbability"`
		DefaultLowerBoundTracesPerSecond float64 `json:"defaultLowerBoundTracesPerSecond"`
		PerOperationStrategies           []struct {
			Operation             string `json:"operation"`
			ProbabilisticSampling *struct {
				SamplingRate float64 `json:"samplingRate"`
			} `json:"probabilisticSampling"`
		} `json:"perOperationStrategies"`
	} `json:"operationSampling"`
}

// ParseJaegerStrategy decodes a Jaeger sampling strategy response. It
// refuses one whose probabilities are not between 0 and 1, whose rate is
// negative, or that holds no strategy at all: a broken answer must not
// replace a good one.
func ParseJaegerStrategy(raw []byte) (*Strategy, error) {
	var js jaegerStrategy
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&js); err != nil {
		return nil, fmt.Errorf("not a Jaeger sampling strategy: %w", err)
	}
	checkP := func(what string, p float64) error {
		if !(p >= 0 && p <= 1) {
			return fmt.Errorf("%s: a probability must be between 0 and 1, got %v", what, p)
		}
		return nil
	}
	st := &Strategy{}
	switch t := string(bytes.TrimSpace(js.StrategyType)); {
	case t == "1" || t == `"RATE_LIMITING"` || (t == "" || t == "null") && js.RateLimitingSampling != nil && js.ProbabilisticSampling == nil:
		if js.RateLimitingSampling == nil {
			return nil, fmt.Errorf("a rate-limiting strategy without rateLimitingSampling")
		}
		m := js.RateLimitingSampling.MaxTracesPerSecond
		if !(m >= 0) || math.IsInf(m, 0) {
			return nil, fmt.Errorf("rateLimitingSampling.maxTracesPerSecond: must be 0 or more, got %v", m)
		}
		st.RateLimited, st.MaxTracesPerSecond = true, m
	case t == "0" || t == `"PROBABILISTIC"` || t == "" || t == "null":
		switch {
		case js.OperationSampling != nil:
			st.Probability = js.OperationSampling.DefaultSamplingProbability
		case js.ProbabilisticSampling != nil:
			st.Probability = js.ProbabilisticSampling.SamplingRate
		default:
			return nil, fmt.Errorf("no strategy: neither probabilisticSampling, rateLimitingSampling nor operationSampling")
		}
		if err := checkP("probability", st.Probability); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("strategyType %s is neither PROBABILISTIC (0) nor RATE_LIMITING (1)", t)
	}
	if os := js.OperationSampling; os != nil && !st.RateLimited {
		lb := os.DefaultLowerBoundTracesPerSecond
		if !(lb >= 0) || math.IsInf(lb, 0) {
			return nil, fmt.Errorf("operationSampling.defaultLowerBoundTracesPerSecond: must be 0 or more, got %v", lb)
		}
		st.LowerBound = lb
	}
	if os := js.OperationSampling; os != nil && len(os.PerOperationStrategies) > 0 {
		st.Operations = make(map[string]float64, len(os.PerOperationStrategies))
		for _, o := range os.PerOperationStrategies {
			if o.ProbabilisticSampling == nil {
				continue // Jaeger's per-operation strategies are probabilistic only
			}
			if err := checkP("operation "+o.Operation, o.ProbabilisticSampling.SamplingRate); err != nil {
				return nil, err
			}
			st.Operations[o.Operation] = o.ProbabilisticSampling.SamplingRate
		}
	}
	return st, nil
}

// Percent converts a probability (0 to 1) to the percentage a Sampler
// takes, in 0.01 steps: rounded to the nearest step, and up to 0.01 when
// it is above 0, so that a rare strategy never turns into "never".
func Percent(p float64) float64 {
	pct := math.Round(p*10000) / 100
	if p > 0 && pct == 0 {
		pct = 0.01
	}
	return pct
}
