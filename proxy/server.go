package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tracehop/tracehop/core/pipeline"
	"github.com/tracehop/tracehop/proxy/config"
	"github.com/tracehop/tracehop/proxy/internal/tlsconf"
)

// Server is a running tracehop: its listeners, the admin server, and the
// span pipeline they feed.
type Server struct {
	cfg       *config.Config
	log       *slog.Logger
	listeners []*listener
	clusters  map[string]*cluster
	tracer    *Tracer
	pipeline  *pipeline.Pipeline
	metrics   *metrics
	admin     *http.Server
	draining  atomic.Bool

	bound []net.Listener
	wg    sync.WaitGroup
	// initErr is what NewServer could not set up (a certificate that no
	// longer loads since the config was checked): Start returns it.
	initErr error
}

// Options are a Server's parts that do not come from the config file.
type Options struct {
	Logger *slog.Logger
	// Tracer and Pipeline are nil when the config has no tracing block.
	Tracer   *Tracer
	Pipeline *pipeline.Pipeline
	// AccessLog writes one log line per request.
	AccessLog bool
}

// NewServer builds the data plane for cfg. Nothing listens until Start.
func NewServer(cfg *config.Config, opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: opts.Logger, clusters: map[string]*cluster{}, tracer: opts.Tracer, pipeline: opts.Pipeline}
	var stats pipeline.StatsSource
	if opts.Pipeline != nil {
		stats = opts.Pipeline
	}
	s.metrics = newMetrics(opts.Tracer, stats)
	for _, c := range cfg.Clusters {
		cl, err := newCluster(c, opts.Logger)
		if err != nil {
			s.initErr = errors.Join(s.initErr, err)
			cl, _ = newCluster(config.Cluster{Name: c.Name, Endpoints: c.Endpoints, Protocol: config.HTTP1}, opts.Logger)
		}
		s.clusters[c.Name] = cl
	}
	for _, lc := range cfg.Listeners {
		l := &listener{
			name: lc.Name, ingress: lc.Direction == config.Ingress, trusted: lc.Trusted(),
			tracer: opts.Tracer, log: opts.Logger, accessLog: opts.AccessLog,
			noRoute:     s.metrics.route(lc.Name, "none", "none"),
			idleTimeout: lc.IdleTimeout, headerTimeout: lc.ReadHeaderTimeout, bodyTimeout: lc.BodyReadTimeout,
			underscores: lc.HeadersWithUnderscores, conns: map[*fastConn]struct{}{},
			tlsFailures: s.metrics.tlsFailures,
		}
		if lc.TLS != nil {
			tc, err := tlsconf.ServerConfig(lc.TLS, opts.Logger)
			if err != nil {
				s.initErr = errors.Join(s.initErr, fmt.Errorf("listener %q: %w", lc.Name, err))
			}
			l.tls, l.handshakeTimeout, l.xfcc = tc, lc.TLS.HandshakeTimeout, lc.TLS.ForwardClientCert
		}
		for i, rc := range lc.Routes {
			rt := &route{
				name: rc.Name, prefix: rc.Match.Prefix, path: rc.Match.Path, cluster: s.clusters[rc.Cluster],
				operation: rc.Operation, timeout: *rc.Timeout,
			}
			for _, h := range rc.Match.Headers {
				rt.headers = append(rt.headers, config.HeaderMatch{Name: http.CanonicalHeaderKey(h.Name), Value: h.Value})
			}
			if opts.Tracer != nil {
				rt.tracing = opts.Tracer.forRoute(rc.Tracing)
			}
			rt.name = routeLabel(rt, i)
			rt.metrics = s.metrics.route(lc.Name, rt.name, rt.cluster.name)
			l.routes = append(l.routes, rt)
		}
		l.proxy = &httputil.ReverseProxy{
			Rewrite:        l.rewrite,
			ModifyResponse: canonicalLength,
			Transport:      l,
			ErrorHandler:   l.errorHandler,
			ErrorLog:       slog.NewLogLogger(opts.Logger.Handler(), slog.LevelDebug),
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
			ErrorLog:          slog.NewLogLogger(opts.Logger.Handler(), slog.LevelDebug),
		}
		s.listeners = append(s.listeners, l)
	}
	if cfg.Admin.Address != "off" {
		s.admin = &http.Server{Handler: s.adminHandler(), ReadHeaderTimeout: 5 * time.Second}
	}
	return s
}

// Addr describes one bound address.
type Addr struct {
	Name, Direction, Address string
}

// Start binds every listener and the admin server and serves in the
// background. If any address cannot be bound, nothing is left listening and
// the error names the listener.
func (s *Server) Start() ([]Addr, error) {
	if s.initErr != nil {
		return nil, s.initErr
	}
	var addrs []Addr
	bind := func(name, dir, addr string) (net.Listener, error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("listener %q: cannot listen on %s: %w", name, addr, err)
		}
		s.bound = append(s.bound, ln)
		addrs = append(addrs, Addr{Name: name, Direction: dir, Address: ln.Addr().String()})
		return ln, nil
	}
	type serve struct {
		srv *http.Server
		ln  net.Listener
	}
	var todo []serve
	for i, l := range s.listeners {
		lc := s.cfg.Listeners[i]
		ln, err := bind(l.name, lc.Direction, lc.Address)
		if err != nil {
			s.closeBound()
			return nil, err
		}
		l.ln, l.handoff = ln, newHandoff(ln.Addr())
		todo = append(todo, serve{l.srv, l.handoff})
	}
	if s.admin != nil {
		ln, err := bind("admin", "admin", s.cfg.Admin.Address)
		if err != nil {
			s.closeBound()
			return nil, err
		}
		todo = append(todo, serve{s.admin, ln})
	}
	for _, l := range s.listeners {
		s.wg.Go(func() {
			if err := l.serve(l.ln); err != nil {
				s.log.Error("listener stopped", "listener", l.name, "error", err)
			}
		})
	}
	for _, t := range todo {
		s.wg.Go(func() {
			if err := t.srv.Serve(t.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("server stopped", "address", t.ln.Addr().String(), "error", err)
			}
		})
	}
	return addrs, nil
}

func (s *Server) closeBound() {
	for _, ln := range s.bound {
		ln.Close()
	}
	s.bound = nil
}

// Shutdown drains the server: /ready turns 503, listeners stop accepting,
// requests in flight finish (until ctx ends), queued spans are flushed to the
// drivers and the drivers are stopped.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	var wg sync.WaitGroup
	var errs []error
	var mu sync.Mutex
	for _, l := range s.listeners {
		if l.ln != nil {
			l.ln.Close() // accept no more
		}
		for _, stop := range []func(context.Context) error{l.srv.Shutdown, l.drain} {
			wg.Go(func() {
				if err := stop(ctx); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("listener %q: %w", l.name, err))
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	if s.pipeline != nil {
		// Spans that could not be delivered by the deadline are counted and
		// logged; they do not make the shutdown fail.
		if err := s.pipeline.Shutdown(ctx); err != nil {
			s.log.Warn("stopping a driver failed", "error", err)
		}
		for _, st := range s.pipeline.Stats() {
			if n := st.Dropped[pipeline.DropShutdown] + st.Dropped[pipeline.DropRetriesExhausted]; n > 0 {
				s.log.Warn("spans could not be delivered before shutdown", "driver", st.Name, "dropped", n, "exported", st.Exported)
			}
		}
	}
	if s.admin != nil {
		s.admin.Shutdown(ctx)
	}
	s.wg.Wait()
	for _, c := range s.clusters {
		c.transport.CloseIdleConnections()
		for i := range c.endpoints {
			c.endpoints[i].pool.closeIdle()
		}
	}
	return errors.Join(errs...)
}

// bufferPool recycles the 32 KiB copy buffers of ReverseProxy.
type bufferPool struct{}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *copyBuffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { copyBuffers.Put(&b) }

// CheckAddresses binds and releases every listener's address and the admin
// address, so that `tracehop validate` reports an address in use as a start
// would.
func CheckAddresses(cfg *config.Config) error {
	var errs []error
	check := func(name, addr string) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			errs = append(errs, fmt.Errorf("listener %q: cannot listen on %s: %w", name, addr, err))
			return
		}
		ln.Close()
	}
	for _, l := range cfg.Listeners {
		check(l.Name, l.Address)
	}
	if cfg.Admin.Address != "off" {
		check("admin", cfg.Admin.Address)
	}
	return errors.Join(errs...)
}
