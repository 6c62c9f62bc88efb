package proxy

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"reflect"
	"sync"

	"github.com/tracehop/tracehop/core/pipeline"
	"github.com/tracehop/tracehop/proxy/config"
	"github.com/tracehop/tracehop/proxy/internal/tlsconf"
	"github.com/tracehop/tracehop/proxy/internal/upstream"
)

// snapshot is one configuration in force: the listeners, clusters, tracer
// and pipeline built from a validated config. It is never modified: a
// reload builds the next one (sharing what did not change: clusters, the
// link table, the exporters of drivers that carry over), points every
// listener at it at once, and retires this one when its requests are done.
type snapshot struct {
	cfg       *config.Config
	hash      string
	frontends []*frontend // in config order
	clusters  map[string]*upstream.Cluster
	tracer    *Tracer            // nil without tracing
	pipeline  *pipeline.Pipeline // nil without tracing, or in tests that bring a sink
}

// build makes the snapshot of cfg. Clusters whose config did not change
// are prev's, with their pooled connections.
//
// A certificate or key that does not load (changed since the config was
// checked) is an error; the snapshot is still whole, with that part
// plaintext, for NewServer to report at Start.
// builder is what building a snapshot needs of its Server.
type builder struct {
	log          *slog.Logger
	accessLog    bool
	slowPathOnly bool
	metrics      *metrics
}

func (b builder) build(cfg *config.Config, tracer *Tracer, p *pipeline.Pipeline, prev *snapshot) (*snapshot, error) {
	snap := &snapshot{cfg: cfg, hash: configHash(cfg), clusters: map[string]*upstream.Cluster{}, tracer: tracer, pipeline: p}
	var errs []error
	for _, c := range cfg.Clusters {
		if old := prev.cluster(c.Name); old != nil && reflect.DeepEqual(old.Config(), c) {
			snap.clusters[c.Name] = old
			continue
		}
		cl, err := upstream.NewCluster(c, b.log)
		if err != nil {
			errs = append(errs, err)
			cl, _ = upstream.NewCluster(config.Cluster{Name: c.Name, Endpoints: c.Endpoints, Protocol: config.HTTP1}, b.log)
		}
		snap.clusters[c.Name] = cl
	}
	for li, lc := range cfg.Listeners {
		l := &frontend{
			name: lc.Name, ingress: lc.Direction == config.Ingress, trusted: lc.Trusted(), baggageTrusted: lc.TrustsBaggage(),
			tracer: tracer, log: b.log, accessLog: b.accessLog,
			noRoute:     b.metrics.route(lc.Name, "none", "none"),
			idleTimeout: lc.IdleTimeout, headerTimeout: lc.ReadHeaderTimeout, bodyTimeout: lc.BodyReadTimeout,
			underscores: lc.HeadersWithUnderscores, slowPathOnly: b.slowPathOnly, traceresponse: lc.Traceresponse,
			tlsFailures: b.metrics.tlsFailures,
			maxConns:    int64(lc.MaxConnections), maxRequests: int64(lc.MaxRequestsPerConnection), maxAge: lc.MaxConnectionAge,
		}
		if lc.TLS != nil {
			tc, err := tlsconf.ServerConfig(lc.TLS, b.log)
			if err != nil {
				errs = append(errs, fmt.Errorf("listener %q: %w", lc.Name, err))
			}
			l.tls, l.handshakeTimeout, l.xfcc = tc, lc.TLS.HandshakeTimeout, lc.TLS.ForwardClientCert
		}
		for i, rc := range lc.Routes {
			rt := &route{
				name: rc.Name, prefix: rc.Match.Prefix, path: rc.Match.Path, method: rc.Match.Method, cluster: snap.clusters[rc.Cluster],
				timeout: *rc.Timeout,
				maxBody: lc.MaxRequestBodyBytes, bufferBody: bufferLimit(lc.BufferRequestBody),
			}
			if rc.MaxRequestBodyBytes != nil {
				rt.maxBody = *rc.MaxRequestBodyBytes
			}
			if rc.BufferRequestBody != nil {
				rt.bufferBody = bufferLimit(rc.BufferRequestBody)
			}
			for _, h := range rc.Match.Headers {
				rt.headers = append(rt.headers, config.HeaderMatch{Name: http.CanonicalHeaderKey(h.Name), Value: h.Value})
			}
			if tracer != nil {
				rt.tracing = tracer.forRoute(rc.Tracing)
				rt.rule = tracer.ruleSlot(li, i)
			}
			rt.name = routeLabel(rc, i)
			rt.spanName = newNameTemplate(cmp.Or(rc.Operation, lc.Operation), cmp.Or(rc.Name, rc.Match.Prefix, rc.Match.Path, "/"))
			rt.metrics = b.metrics.route(lc.Name, rt.name, rt.cluster.Name())
			l.routes = append(l.routes, rt)
		}
		l.proxy = &httputil.ReverseProxy{
			Rewrite:        l.rewrite,
			ModifyResponse: modifyResponse,
			Transport:      l,
			ErrorHandler:   l.errorHandler,
			ErrorLog:       slog.NewLogLogger(b.log.Handler(), slog.LevelDebug),
			BufferPool:     bufferPool{},
		}
		protocols := new(http.Protocols)
		protocols.SetHTTP1(true)
		protocols.SetUnencryptedHTTP2(true)
		if l.tls != nil {
			// HTTP/2 over TLS: the fast path hands a connection whose
			// ALPN chose h2 over as the *tls.Conn it is, and net/http
			// serves it through TLSNextProto.
			protocols.SetHTTP2(true)
		}
		l.srv = &http.Server{
			Handler:           l,
			ReadHeaderTimeout: lc.ReadHeaderTimeout,
			IdleTimeout:       lc.IdleTimeout,
			MaxHeaderBytes:    lc.MaxHeaderBytes,
			Protocols:         protocols,
			ErrorLog:          slog.NewLogLogger(b.log.Handler(), slog.LevelDebug),
			// A connection's life (its age, requests, place in the
			// connection counts) travels with it to the handler.
			ConnContext: l.connContext,
			ConnState:   l.connState,
		}
		snap.frontends = append(snap.frontends, l)
	}
	return snap, errors.Join(errs...)
}

func bufferLimit(b *config.BufferRequestBody) int64 {
	if b == nil {
		return 0
	}
	return b.MaxBytes
}

func (sn *snapshot) cluster(name string) *upstream.Cluster {
	if sn == nil {
		return nil
	}
	return sn.clusters[name]
}

// HashConfig is the hash a tracehop running cfg reports (/config,
// tracehop_config_info): the supervisor of tracehop run -workers checks
// that every worker took the config it checked.
func HashConfig(cfg *config.Config) string { return configHash(cfg) }

// configHash identifies a config by what it says, not how it is written:
// the SHA-256 of its decoded form, as /config and /metrics show it.
func configHash(cfg *config.Config) string {
	raw, _ := json.Marshal(cfg)
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:6])
}

// bufferPool recycles the 32 KiB copy buffers of ReverseProxy.
type bufferPool struct{}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte { return *copyBuffers.Get().(*[]byte) }

func (bufferPool) Put(b []byte) { copyBuffers.Put(&b) }

// forget removes the series of routes a reload took away (those of old
// that keep is without), so that /metrics does not grow with every
// renamed route.
func (m *metrics) forget(old, keep []*frontend) {
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

func routeMetricsOf(l *frontend) []*routeMetrics {
	out := make([]*routeMetrics, len(l.routes))
	for i, rt := range l.routes {
		out[i] = rt.metrics
	}
	return out
}

func routeLabel(r config.Route, i int) string { return r.Label(i) }
