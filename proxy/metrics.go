package proxy

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/core/pipeline"
)

// metrics are one Server's Prometheus series, in the registry it was given
// (Options.Metrics): no process-wide state, so tests and several servers
// can live side by side.
type metrics struct {
	reg        *prometheus.Registry
	requests   *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	reloads    *prometheus.CounterVec
	lastReload prometheus.Gauge
	configInfo *prometheus.GaugeVec
	// tlsFailures counts failed TLS handshakes on listeners, by reason
	// (tlsconf.Reason*).
	tlsFailures *prometheus.CounterVec
	// refused counts client connections closed unserved at a limit, by
	// listener and reason (listener_limit, process_limit); evicted, idle
	// ones closed to make room for new ones.
	refused *prometheus.CounterVec
	evicted *prometheus.CounterVec
	conns   connGauges // its read is set by the Server
}

// Why a client connection was refused.
const (
	refusedListenerLimit = "listener_limit"
	refusedProcessLimit  = "process_limit"
)

// connGauges exposes the client connections held, per listener and for
// the process, read when scraped.
type connGauges struct {
	read func() (perListener map[string]int64, process, processMax int64)
}

var (
	descConns    = prometheus.NewDesc("tracehop_downstream_connections", "Client connections open, by listener.", []string{"listener"}, nil)
	descConnsMax = prometheus.NewDesc("tracehop_downstream_connections_max", "The process's client connection limit (overload.max_connections, or derived from RLIMIT_NOFILE); 0: none.", nil, nil)
)

func (g *connGauges) Describe(ch chan<- *prometheus.Desc) { ch <- descConns; ch <- descConnsMax }

func (g *connGauges) Collect(ch chan<- prometheus.Metric) {
	if g.read == nil {
		return
	}
	per, _, limit := g.read()
	for name, n := range per {
		ch <- prometheus.MustNewConstMetric(descConns, prometheus.GaugeValue, float64(n), name)
	}
	ch <- prometheus.MustNewConstMetric(descConnsMax, prometheus.GaugeValue, float64(limit))
}

// newMetrics makes the registry; tracer and stats return the tracer and
// the pipeline in force (nil without tracing), which a reload replaces.
func newMetrics(reg *prometheus.Registry, tracer func() *Tracer, stats func() pipeline.StatsSource) *metrics {
	m := &metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tracehop_requests_total", Help: "Requests served, by listener, route, cluster and status class.",
		}, []string{"listener", "route", "cluster", "code_class"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tracehop_request_duration_seconds", Help: "Time from the request's arrival to the end of its response.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"listener", "route", "cluster"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tracehop_config_reloads_total", Help: "Config reloads, by result (success or failure: the running config stayed).",
		}, []string{"result"}),
		lastReload: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tracehop_config_last_reload_success_timestamp_seconds", Help: "When the config in force was loaded (Unix time).",
		}),
		configInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tracehop_config_info", Help: "The config in force: 1 for its hash (as /config shows it).",
		}, []string{"hash"}),
	}
	m.tlsFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tracehop_tls_handshake_failures_total", Help: "TLS handshakes that failed on a listener, by reason.",
	}, []string{"listener", "reason"})
	m.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tracehop_downstream_connections_refused_total",
		Help: "Client connections closed unserved because a connection limit was reached, by listener and reason (listener_limit, process_limit).",
	}, []string{"listener", "reason"})
	m.evicted = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tracehop_downstream_connections_evicted_total",
		Help: "Idle client connections closed to make room for new ones at a connection limit, by listener.",
	}, []string{"listener"})
	m.reloads.WithLabelValues("success")
	m.reloads.WithLabelValues("failure")
	m.reg.MustRegister(m.requests, m.duration, m.reloads, m.lastReload, m.configInfo, m.tlsFailures, m.refused, m.evicted,
		&tracerCollector{tracer: tracer}, &pipelineCollector{stats: stats}, &m.conns)
	return m
}

// tracerCollector exposes the tracer's counters, which a reload carries
// over, and the request-id link table.
type tracerCollector struct{ tracer func() *Tracer }

var (
	descStarted     = prometheus.NewDesc("tracehop_spans_started_total", "Requests for which a span was started (sampled or not).", nil, nil)
	descSampled     = prometheus.NewDesc("tracehop_spans_sampled_total", "Requests sampled: their spans are exported.", nil, nil)
	descRateLimited = prometheus.NewDesc("tracehop_traces_rate_limited_total", "New traces not started because of tracing.sampling.max_traces_per_second.", nil, nil)
	descLinks       = prometheus.NewDesc("tracehop_request_links", "Ingress requests in flight that egress requests can link to by x-request-id.", nil, nil)
	descDecisions   = prometheus.NewDesc("tracehop_sampling_decisions_total",
		"Sampling decisions, by rule (a route's label where it has a rule of its own, else default) and decision (sampled, not_sampled, rate_limited).",
		[]string{"rule", "decision"}, nil)
)

func (c *tracerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descStarted, descSampled, descRateLimited, descLinks, descDecisions} {
		ch <- d
	}
}

func (c *tracerCollector) Collect(ch chan<- prometheus.Metric) {
	t := c.tracer()
	if t == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(descStarted, prometheus.CounterValue, float64(t.counts.started.Load()))
	ch <- prometheus.MustNewConstMetric(descSampled, prometheus.CounterValue, float64(t.counts.sampled.Load()))
	ch <- prometheus.MustNewConstMetric(descRateLimited, prometheus.CounterValue, float64(t.counts.rateLimited.Load()))
	if t.links != nil {
		ch <- prometheus.MustNewConstMetric(descLinks, prometheus.GaugeValue, float64(t.links.len()))
	}
	t.counts.rules.each(func(rule string, c *decisionCounts) {
		ch <- prometheus.MustNewConstMetric(descDecisions, prometheus.CounterValue, float64(c.sampled.Load()), rule, "sampled")
		ch <- prometheus.MustNewConstMetric(descDecisions, prometheus.CounterValue, float64(c.notSampled.Load()), rule, "not_sampled")
		ch <- prometheus.MustNewConstMetric(descDecisions, prometheus.CounterValue, float64(c.rateLimited.Load()), rule, "rate_limited")
	})
}

func (m *metrics) route(listener, route, cluster string) *routeMetrics {
	rm := &routeMetrics{duration: m.duration.WithLabelValues(listener, route, cluster), labels: [3]string{listener, route, cluster}}
	for i, class := range []string{"1xx", "2xx", "3xx", "4xx", "5xx", "other"} {
		rm.byClass[i] = m.requests.WithLabelValues(listener, route, cluster, class)
	}
	return rm
}

// pipelineCollector exposes the span pipeline's counters per driver.
type pipelineCollector struct {
	stats func() pipeline.StatsSource
}

var (
	descEnqueued = prometheus.NewDesc("tracehop_spans_enqueued_total", "Spans accepted into a driver's queue.", []string{"driver"}, nil)
	descExported = prometheus.NewDesc("tracehop_spans_exported_total", "Spans a driver acknowledged.", []string{"driver"}, nil)
	descDropped  = prometheus.NewDesc("tracehop_spans_dropped_total", "Spans lost, by reason.", []string{"driver", "reason"}, nil)
	descErrors   = prometheus.NewDesc("tracehop_export_errors_total", "Failed Export calls (retried or not).", []string{"driver"}, nil)
	descQueue    = prometheus.NewDesc("tracehop_queue_spans", "Spans waiting in a driver's queue.", []string{"driver"}, nil)
	descQueueCap = prometheus.NewDesc("tracehop_queue_capacity_spans", "Size of a driver's queue.", []string{"driver"}, nil)
	descUp       = prometheus.NewDesc("tracehop_driver_up", "1 when the driver's process is serving.", []string{"driver"}, nil)
	descRestarts = prometheus.NewDesc("tracehop_driver_restarts_total", "Driver process restarts.", []string{"driver"}, nil)
	descLatency  = prometheus.NewDesc("tracehop_export_duration_seconds", "Duration of Export calls.", []string{"driver"}, nil)
)

func (c *pipelineCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descEnqueued, descExported, descDropped, descErrors, descQueue, descQueueCap, descUp, descRestarts, descLatency} {
		ch <- d
	}
}

func (c *pipelineCollector) Collect(ch chan<- prometheus.Metric) {
	src := c.stats()
	if src == nil {
		return
	}
	for _, s := range src.Stats() {
		name := s.Name
		ch <- prometheus.MustNewConstMetric(descEnqueued, prometheus.CounterValue, float64(s.Enqueued), name)
		ch <- prometheus.MustNewConstMetric(descExported, prometheus.CounterValue, float64(s.Exported), name)
		for _, r := range pipeline.DropReasons() {
			ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(s.Dropped[r]), name, r.String())
		}
		ch <- prometheus.MustNewConstMetric(descErrors, prometheus.CounterValue, float64(s.ExportErrors), name)
		ch <- prometheus.MustNewConstMetric(descQueue, prometheus.GaugeValue, float64(s.QueueLen), name)
		ch <- prometheus.MustNewConstMetric(descQueueCap, prometheus.GaugeValue, float64(s.QueueCap), name)
		up := 0.0
		if s.Up {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up, name)
		ch <- prometheus.MustNewConstMetric(descRestarts, prometheus.CounterValue, float64(s.Restarts), name)
		buckets := map[float64]uint64{}
		var cum, count uint64
		for i, n := range s.Latency.Counts {
			cum += n
			if i < len(pipeline.LatencyBuckets) {
				buckets[pipeline.LatencyBuckets[i].Seconds()] = cum
			}
		}
		count = cum
		ch <- prometheus.MustNewConstHistogram(descLatency, count, s.Latency.Sum.Seconds(), buckets, name)
	}
}

// routeMetrics are one route's request counters, resolved once so that a
// request does no label lookup.
type routeMetrics struct {
	byClass  [6]prometheus.Counter // 1xx..5xx, other
	duration prometheus.Observer
	labels   [3]string // listener, route, cluster
	// nextExemplar is when (Unix ns) a sampled request may next leave its
	// trace id on the duration histogram as an OpenMetrics exemplar.
	nextExemplar atomic.Int64
}

// exemplarEvery spaces a route's exemplars: Prometheus keeps one per
// bucket anyway, a dashboard needs a few to link a latency to traces, and
// the labels an exemplar takes are allocated: one a second costs the hot
// path nothing measurable.
const exemplarEvery = time.Second

// observe records a request that started at start and ended at end.
func (m *routeMetrics) observe(status int, start, end time.Time, sampled bool, traceID *core.TraceID) {
	d := end.Sub(start)
	class := status/100 - 1
	if class < 0 || class > 4 {
		class = 5
	}
	m.byClass[class].Inc()
	if sampled {
		now := start.UnixNano() + int64(d) // the clock was read once, for d
		if next := m.nextExemplar.Load(); now >= next && m.nextExemplar.CompareAndSwap(next, now+int64(exemplarEvery)) {
			if eo, ok := m.duration.(prometheus.ExemplarObserver); ok {
				eo.ObserveWithExemplar(d.Seconds(), prometheus.Labels{"trace_id": traceID.String()})
				return
			}
		}
	}
	m.duration.Observe(d.Seconds())
}
