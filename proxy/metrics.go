package proxy

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tracehop/tracehop/core/pipeline"
)

// metrics is one Server's Prometheus registry: no process-wide state, so
// tests and several servers can live side by side.
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
}

// newMetrics makes the registry; tracer and stats return the tracer and
// the pipeline in force (nil without tracing), which a reload replaces.
func newMetrics(tracer func() *Tracer, stats func() pipeline.StatsSource) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
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
	m.reloads.WithLabelValues("success")
	m.reloads.WithLabelValues("failure")
	m.reg.MustRegister(m.requests, m.duration, m.reloads, m.lastReload, m.configInfo, m.tlsFailures,
		&tracerCollector{tracer: tracer}, &pipelineCollector{stats: stats},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
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
)

func (c *tracerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descStarted, descSampled, descRateLimited, descLinks} {
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
}

func (m *metrics) route(listener, route, cluster string) *routeMetrics {
	rm := &routeMetrics{duration: m.duration.WithLabelValues(listener, route, cluster), labels: [3]string{listener, route, cluster}}
	for i, class := range []string{"1xx", "2xx", "3xx", "4xx", "5xx", "other"} {
		rm.byClass[i] = m.requests.WithLabelValues(listener, route, cluster, class)
	}
	return rm
}

// forget removes the series of routes a reload took away (those of old
// that keep is without), so that /metrics does not grow with every
// renamed route.
func (m *metrics) forget(old, keep []*listener) {
	kept := map[[3]string]bool{}
	for _, l := range keep {
		kept[l.noRoute.labels] = true
		for _, rt := range l.routes {
			kept[rt.metrics.labels] = true
		}
	}
	for _, l := range old {
		for _, rm := range append([]*routeMetrics{l.noRoute}, routeMetricsOf(l)...) {
			if kept[rm.labels] {
				continue
			}
			lv := rm.labels
			m.duration.DeleteLabelValues(lv[0], lv[1], lv[2])
			for _, class := range []string{"1xx", "2xx", "3xx", "4xx", "5xx", "other"} {
				m.requests.DeleteLabelValues(lv[0], lv[1], lv[2], class)
			}
		}
	}
}

func routeMetricsOf(l *listener) []*routeMetrics {
	out := make([]*routeMetrics, len(l.routes))
	for i, rt := range l.routes {
		out[i] = rt.metrics
	}
	return out
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

func routeLabel(r *route, i int) string {
	if r.name != "" {
		return r.name
	}
	if r.operation != "" {
		return r.operation
	}
	return "route" + strconv.Itoa(i)
}
