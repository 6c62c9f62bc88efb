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
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	// tlsFailures counts failed TLS handshakes on listeners, by reason
	// (tlsconf.Reason*).
	tlsFailures *prometheus.CounterVec
}

func newMetrics(tracer *Tracer, stats pipeline.StatsSource) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tracehop_requests_total", Help: "Requests served, by listener, route, cluster and status class.",
		}, []string{"listener", "route", "cluster", "code_class"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tracehop_request_duration_seconds", Help: "Time from the request's arrival to the end of its response.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"listener", "route", "cluster"}),
		tlsFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tracehop_tls_handshake_failures_total", Help: "TLS handshakes that failed on a listener, by reason.",
		}, []string{"listener", "reason"}),
	}
	m.reg.MustRegister(m.requests, m.duration, m.tlsFailures, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if tracer != nil {
		m.reg.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "tracehop_spans_started_total", Help: "Requests for which a span was started (sampled or not)."},
				func() float64 { return float64(tracer.started.Load()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "tracehop_spans_sampled_total", Help: "Requests sampled: their spans are exported."},
				func() float64 { return float64(tracer.sampled.Load()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "tracehop_traces_rate_limited_total", Help: "New traces not started because of tracing.sampling.max_traces_per_second."},
				func() float64 { return float64(tracer.rateLimited.Load()) }),
		)
		if tracer.links != nil {
			m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tracehop_request_links", Help: "Ingress requests in flight that egress requests can link to by x-request-id."},
				func() float64 { return float64(tracer.links.len()) }))
		}
	}
	if stats != nil {
		m.reg.MustRegister(&pipelineCollector{stats: stats})
	}
	return m
}

func (m *metrics) route(listener, route, cluster string) *routeMetrics {
	rm := &routeMetrics{duration: m.duration.WithLabelValues(listener, route, cluster)}
	for i, class := range []string{"1xx", "2xx", "3xx", "4xx", "5xx", "other"} {
		rm.byClass[i] = m.requests.WithLabelValues(listener, route, cluster, class)
	}
	return rm
}

// pipelineCollector exposes the span pipeline's counters per driver.
type pipelineCollector struct {
	stats pipeline.StatsSource
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
	for _, s := range c.stats.Stats() {
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
