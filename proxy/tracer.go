package proxy

import (
	"cmp"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/core/pipeline"
	"github.com/tracehop/tracehop/core/propagation"
	"github.com/tracehop/tracehop/core/sampling"
	"github.com/tracehop/tracehop/proxy/config"
)

// Headers tracehop reads besides the propagation formats.
const (
	headerRequestID     = "X-Request-Id"
	headerClientTraceID = "X-Client-Trace-Id"
	headerForceTrace    = "X-Tracehop-Force-Trace"
)

// Tracer makes the spans of the requests tracehop proxies. It is built once
// from the tracing config and shared by every listener.
type Tracer struct {
	prop *propagation.Propagator
	// rules is the sampling in force, read once per request; SetSampling,
	// ResetSampling and SetRemote replace it (under rulesMu), a reload
	// builds another Tracer with the file's.
	rules      atomic.Pointer[samplingRules]
	rulesMu    sync.Mutex
	ruleRoutes []ruleRoute
	firstSlot  []int32 // per listener, the slot of its first route
	file       config.Sampling
	override   *config.Sampling   // PUT /sampling's block; under rulesMu
	remote     *sampling.Strategy // the remote source's last strategy; under rulesMu
	// consistent: tracecontext is among the formats, so that probabilistic
	// decisions use W3C randomness and write tracestate's ot=th.
	consistent    bool
	sink          Sink
	service       string
	nodeID, zone  string
	maxPath       int
	spawnUpstream bool
	trace128      bool
	sharedSpans   bool
	customTags    []customTag
	respTags      bool       // a custom tag reads a response header
	sidedTags     bool       // a custom tag goes on one side only
	baggageTags   []string   // baggage members copied onto spans
	links         *linkTable // nil when link_by_request_id is off
	counts        *tracerCounts
	secrets       [][]string // each driver's secret config keys
	// inflight counts the sampled requests whose spans are not finished:
	// a reload retires this tracer's pipeline only when it is 0, so that
	// every span reaches the drivers in force when its request began.
	inflight atomic.Int64
}

// tracerCounts are the tracer's counters, kept across reloads: a new
// tracer takes over its predecessor's.
type tracerCounts struct {
	started, sampled atomic.Uint64
	rateLimited      atomic.Uint64 // new traces not started: max_traces_per_second
	rules            *ruleCounters // decisions by rule
}

// Sink receives finished spans; the pipeline is one. Enqueue must copy
// what it keeps (core.Span.Clone): the span's tags and strings are reused
// once it returns.
type Sink interface {
	Enqueue(core.Span)
}

var _ Sink = (*pipeline.Pipeline)(nil)

type customTag struct {
	kind         core.Kind // the only kind of span it goes on; KindUnspecified: every span
	tag, value   string    // value: a literal, or the environment's value read at start
	header       string    // a request header's name, canonical
	respHeader   string    // a response header's name, canonical
	defaultValue string
}

// headerGetter reads a response's headers: net/http's, or those the fast
// path copied out for the span (respCapture).
type headerGetter interface{ Get(key string) string }

// TracerOptions is what the tracer needs besides the config.
type TracerOptions struct {
	Sink Sink
	// Capabilities of every configured driver: they choose the default
	// propagation formats and whether trace ids are 128-bit.
	Capabilities []core.Capabilities
	// Previous is the tracer a reload replaces: the new one keeps its
	// counters and, when both link requests by id, its table of ingress
	// requests in flight (they may have egress requests still to come).
	Previous *Tracer
}

// NewTracer builds the tracer for cfg.Tracing.
func NewTracer(cfg *config.Config, opts TracerOptions) (*Tracer, error) {
	tc := cfg.Tracing
	formats := tc.Propagation
	if len(formats) == 0 {
		for _, c := range opts.Capabilities {
			for _, f := range c.Propagation {
				if !slices.Contains(formats, f) {
					formats = append(formats, f)
				}
			}
		}
	}
	if len(formats) == 0 {
		formats = []string{core.FormatB3, core.FormatTraceContext}
	}
	prop, err := propagation.New(formats)
	if err != nil {
		return nil, err
	}
	// A format that carries 64 bits (ot-tracer) would split 128-bit traces
	// at the next hop, and so would a back end that keeps 64.
	trace128 := prop.TraceID128()
	sharedSpans := len(opts.Capabilities) > 0
	for _, c := range opts.Capabilities {
		trace128 = trace128 && c.TraceID128
		// Span ids are shared by all drivers: join only if all want it.
		sharedSpans = sharedSpans && c.SharedSpans
	}
	t := &Tracer{
		prop: prop, sink: opts.Sink, file: tc.Sampling,
		consistent: slices.Contains(prop.Formats(), core.FormatTraceContext),
		service:    cmp.Or(cfg.Node.Service, cfg.Node.ID, "tracehop"),
		nodeID:     cfg.Node.ID, zone: cfg.Node.Zone,
		maxPath: tc.MaxPathTagLength, spawnUpstream: tc.SpawnUpstreamSpan, trace128: trace128, sharedSpans: sharedSpans,
	}
	for _, ct := range tc.CustomTags {
		t.customTags = append(t.customTags, newCustomTag(ct))
		t.respTags = t.respTags || ct.ResponseHeader != nil
		t.sidedTags = t.sidedTags || ct.Span != ""
	}
	t.baggageTags = tc.BaggageTags
	for _, c := range opts.Capabilities {
		t.secrets = append(t.secrets, c.SecretKeys)
	}
	t.counts = &tracerCounts{rules: newRuleCounters()}
	if prev := opts.Previous; prev != nil {
		t.counts = prev.counts
		t.links = prev.links
	}
	t.ruleRoutes, t.firstSlot = ruleRoutesOf(cfg)
	rules, err := buildRules(t.ruleRoutes, t.file, nil, nil, nil, t.counts.rules)
	if err != nil {
		return nil, err
	}
	t.rules.Store(rules)
	if !tc.Linking() || !linkable(cfg) {
		t.links = nil
	} else if t.links == nil {
		t.links = newLinkTable(65536)
	}
	return t, nil
}

// linkable says whether cfg has both an ingress and an egress listener:
// only then can an egress request name an ingress request of the same
// process, and the link table earns the lock and the map write every
// ingress request pays for it (a front proxy never reads it).
func linkable(cfg *config.Config) bool {
	var in, out bool
	for _, l := range cfg.Listeners {
		in = in || l.Direction == config.Ingress
		out = out || l.Direction == config.Egress
	}
	return in && out
}

// secretKeys returns each driver's secret config keys (nil for no tracer).
func (t *Tracer) secretKeys() [][]string {
	if t == nil {
		return nil
	}
	return t.secrets
}

// Formats returns the propagation formats in use.
func (t *Tracer) Formats() []string { return t.prop.Formats() }

func newSpanID() core.SpanID {
	for {
		if id := rand.Uint64(); id != 0 {
			return core.SpanID(id)
		}
	}
}

func (t *Tracer) newTraceID() core.TraceID {
	id := core.TraceID{Low: uint64(newSpanID())}
	if t.trace128 {
		id.High = rand.Uint64()
	}
	return id
}

func newCustomTag(ct config.CustomTag) customTag {
	c := customTag{tag: ct.Tag, value: ct.Literal}
	switch {
	case ct.Environment != nil:
		c.value = ct.Environment.Default
		if v, ok := os.LookupEnv(ct.Environment.Name); ok {
			c.value = v
		}
	case ct.RequestHeader != nil:
		c.header = http.CanonicalHeaderKey(ct.RequestHeader.Name)
		c.defaultValue = ct.RequestHeader.Default
	case ct.ResponseHeader != nil:
		c.respHeader = http.CanonicalHeaderKey(ct.ResponseHeader.Name)
		c.defaultValue = ct.ResponseHeader.Default
	}
	switch ct.Span {
	case config.TagSpanServer:
		c.kind = core.KindServer
	case config.TagSpanClient:
		c.kind = core.KindClient
	}
	return c
}

// wantsResponse reports whether the span of a request on a route with
// tracing rt (nil: none of its own) reads response headers, which the fast
// path must then copy out before its buffer is reused.
func (t *Tracer) wantsResponse(rt *routeTracing) bool {
	return t.respTags || rt != nil && rt.respTags
}

// routeTracing is a route's own tracing (config.RouteTracing), resolved
// once. Its sampling is a rule of the tracer's (samplingRules).
type routeTracing struct {
	off        bool
	customTags []customTag // after the tracer's
	respTags   bool        // one of customTags reads a response header
	sidedTags  bool        // one of customTags goes on one side only
}

// forRoute resolves a route's tracing block; nil when it has none.
func (t *Tracer) forRoute(rc *config.RouteTracing) *routeTracing {
	if rc == nil {
		return nil
	}
	rt := &routeTracing{off: rc.Off()}
	for _, ct := range rc.CustomTags {
		rt.customTags = append(rt.customTags, newCustomTag(ct))
		rt.respTags = rt.respTags || ct.ResponseHeader != nil
		rt.sidedTags = rt.sidedTags || ct.Span != ""
	}
	return rt
}

// ruleSlot returns the sampling rule slot of the route-th route of the
// listener-th listener of the config the tracer was built from (a
// snapshot's routes and tracer come from one config); 0, the default
// rule, for a route it does not know.
func (t *Tracer) ruleSlot(listener, route int) int32 {
	if listener >= len(t.firstSlot) {
		return 0
	}
	end := int32(len(t.ruleRoutes) + 1)
	if listener+1 < len(t.firstSlot) {
		end = t.firstSlot[listener+1]
	}
	if slot := t.firstSlot[listener] + int32(route); slot < end {
		return slot
	}
	return 0
}

// SamplingState is the sampling in force, as GET /sampling and /config
// show it.
type SamplingState struct {
	// Source of the tracing.sampling block in force: SourceFile,
	// SourceAdmin (PUT /sampling) or SourceRemote.
	Source string `json:"source"`
	// Sampling is that block, every percentage given.
	Sampling SamplingBlock `json:"sampling"`
	// File is what the config file's tracing.sampling says.
	File SamplingBlock `json:"file"`
	// Remote is the remote strategy in force; nil when none applies.
	Remote *RemoteStrategy `json:"remote,omitempty"`
	// Consistent says probabilistic decisions use W3C randomness and write
	// tracestate's ot=th (tracecontext is among the formats); otherwise
	// they hash the request id.
	Consistent bool            `json:"consistent"`
	Routes     []RouteSampling `json:"routes"`
}

// RemoteStrategy is a remote strategy as GET /sampling shows it.
type RemoteStrategy struct {
	Probability        float64            `json:"probability"`
	RateLimited        bool               `json:"rate_limited,omitempty"`
	MaxTracesPerSecond float64            `json:"max_traces_per_second,omitempty"`
	Operations         map[string]float64 `json:"operations,omitempty"`
	// LowerBound is the fewest new traces a second each operation (a
	// route, or the requests no route took) starts.
	LowerBound float64 `json:"lower_bound_traces_per_second,omitempty"`
}

// SamplingState returns the sampling in force.
func (t *Tracer) SamplingState() SamplingState {
	rules := t.rules.Load()
	st := SamplingState{Source: rules.source, Sampling: blockOf(rules.slots[0].sampler), Consistent: t.consistent, Routes: rules.rows(t.ruleRoutes)}
	if file, err := buildRules(nil, t.file, nil, nil, nil, newRuleCounters()); err == nil {
		st.File = blockOf(file.slots[0].sampler)
	}
	if r := rules.remote; r != nil {
		st.Remote = &RemoteStrategy{Probability: r.Probability, RateLimited: r.RateLimited, MaxTracesPerSecond: r.MaxTracesPerSecond, Operations: r.Operations, LowerBound: r.LowerBound}
	}
	return st
}

// rebuild puts the rules of the file, the override and the remote
// strategy in force; under rulesMu.
func (t *Tracer) rebuild() error {
	rules, err := buildRules(t.ruleRoutes, t.file, t.override, t.remote, t.rules.Load(), t.counts.rules)
	if err != nil {
		return err
	}
	t.rules.Store(rules)
	return nil
}

// SetSampling puts s (checked as config.ParseSampling checks it) in force
// in place of the file's tracing.sampling block, and of the remote
// strategy, at once: requests that begin from now on use it. Routes with
// percentages of their own keep them over it. It lasts until
// ResetSampling or the next reload, which builds another Tracer from the
// file.
func (t *Tracer) SetSampling(s config.Sampling) error {
	t.rulesMu.Lock()
	defer t.rulesMu.Unlock()
	s.Remote = nil
	prev := t.override
	t.override = &s
	if err := t.rebuild(); err != nil {
		t.override = prev
		return err
	}
	return nil
}

// ResetSampling drops what SetSampling put in force: the file's block (or
// the remote strategy) applies again. It reports whether there was
// anything to drop.
func (t *Tracer) ResetSampling() bool {
	t.rulesMu.Lock()
	defer t.rulesMu.Unlock()
	if t.override == nil {
		return false
	}
	t.override = nil
	t.rebuild() // what was in force before SetSampling built without error
	return true
}

// SamplingOverridden reports whether SetSampling's block is in force.
func (t *Tracer) SamplingOverridden() bool {
	t.rulesMu.Lock()
	defer t.rulesMu.Unlock()
	return t.override != nil
}

// SetRemote puts a remote source's strategy in force (nil: none, the
// file's rules again), unless SetSampling's block overrides it; it is
// kept and applies once that block is reset.
func (t *Tracer) SetRemote(st *sampling.Strategy) error {
	t.rulesMu.Lock()
	defer t.rulesMu.Unlock()
	prev := t.remote
	t.remote = st
	if err := t.rebuild(); err != nil {
		t.remote = prev
		return err
	}
	return nil
}
