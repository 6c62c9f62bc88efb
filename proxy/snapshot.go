package proxy

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tracehop/tracehop/core/pipeline"
	"github.com/tracehop/tracehop/proxy/config"
	"github.com/tracehop/tracehop/proxy/internal/tlsconf"
	"github.com/tracehop/tracehop/proxy/internal/upstream"
)

// Server is a running tracehop: its sockets, the admin server, and the
// configuration in force, a snapshot that Apply replaces while it runs.
type Server struct {
	log          *slog.Logger
	accessLog    bool
	slowPathOnly bool
	metrics      *metrics
	admin        *http.Server
	adminAddr    string
	draining     atomic.Bool
	// retireAfter bounds how long a replaced snapshot waits for its
	// requests in flight before its pipeline is retired.
	retireAfter time.Duration
	// reload, when set, is what POST /reload on the admin server runs.
	reload func(context.Context) error

	snap atomic.Pointer[snapshot]

	mu        sync.Mutex // Start, Apply and Shutdown, one at a time
	metricsMu sync.Mutex // a reload's build and switch, against a retirement forgetting series
	sockets   []*socket
	started   bool
	retiring  sync.WaitGroup // replaced snapshots and removed sockets
	wg        sync.WaitGroup // accept loops and servers
	// initErr is what NewServer could not set up (a certificate that no
	// longer loads since the config was checked): Start returns it.
	initErr error
}

// snapshot is one configuration in force: the listeners, clusters, tracer
// and pipeline built from a validated config. It is never modified: a
// reload builds the next one (sharing what did not change: clusters, the
// link table, the exporters of drivers that carry over), points every
// socket at it at once, and retires this one when its requests are done.
type snapshot struct {
	cfg       *config.Config
	hash      string
	listeners []*listener // in config order
	clusters  map[string]*upstream.Cluster
	tracer    *Tracer            // nil without tracing
	pipeline  *pipeline.Pipeline // nil without tracing, or in tests that bring a sink
}

// Options are a Server's parts that do not come from the config file.
type Options struct {
	Logger *slog.Logger
	// Tracer and Pipeline are nil when the config has no tracing block.
	Tracer   *Tracer
	Pipeline *pipeline.Pipeline
	// AccessLog writes one log line per request.
	AccessLog bool
	// RetireAfter bounds the wait of a replaced configuration for its
	// requests in flight (default 15s, tracehop run's -drain-timeout).
	RetireAfter time.Duration
}

// NewServer builds the data plane for cfg. Nothing listens until Start.
func NewServer(cfg *config.Config, opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{log: opts.Logger, accessLog: opts.AccessLog, retireAfter: cmp.Or(opts.RetireAfter, 15*time.Second), adminAddr: cfg.Admin.Address}
	s.metrics = newMetrics(
		func() *Tracer { return s.snap.Load().tracer },
		func() pipeline.StatsSource {
			if p := s.snap.Load().pipeline; p != nil {
				return p
			}
			return nil
		})
	snap, err := s.build(cfg, opts.Tracer, opts.Pipeline, nil)
	s.initErr = err
	s.snap.Store(snap)
	s.metrics.configInfo.WithLabelValues(snap.hash).Set(1)
	s.metrics.lastReload.SetToCurrentTime()
	for i, lc := range cfg.Listeners {
		sock := newSocket(lc.Name, lc.Address, s.log)
		sock.cur.Store(snap.listeners[i])
		s.sockets = append(s.sockets, sock)
	}
	if cfg.Admin.Address != "off" {
		s.admin = &http.Server{Handler: s.adminHandler(), ReadHeaderTimeout: 5 * time.Second}
	}
	return s
}

// build makes the snapshot of cfg. Clusters whose config did not change
// are prev's, with their pooled connections.
//
// A certificate or key that does not load (changed since the config was
// checked) is an error; the snapshot is still whole, with that part
// plaintext, for NewServer to report at Start.
func (s *Server) build(cfg *config.Config, tracer *Tracer, p *pipeline.Pipeline, prev *snapshot) (*snapshot, error) {
	snap := &snapshot{cfg: cfg, hash: configHash(cfg), clusters: map[string]*upstream.Cluster{}, tracer: tracer, pipeline: p}
	var errs []error
	for _, c := range cfg.Clusters {
		if old := prev.cluster(c.Name); old != nil && reflect.DeepEqual(old.Config(), c) {
			snap.clusters[c.Name] = old
			continue
		}
		cl, err := upstream.NewCluster(c, s.log)
		if err != nil {
			errs = append(errs, err)
			cl, _ = upstream.NewCluster(config.Cluster{Name: c.Name, Endpoints: c.Endpoints, Protocol: config.HTTP1}, s.log)
		}
		snap.clusters[c.Name] = cl
	}
	for _, lc := range cfg.Listeners {
		l := &listener{
			name: lc.Name, ingress: lc.Direction == config.Ingress, trusted: lc.Trusted(),
			tracer: tracer, log: s.log, accessLog: s.accessLog,
			noRoute:     s.metrics.route(lc.Name, "none", "none"),
			idleTimeout: lc.IdleTimeout, headerTimeout: lc.ReadHeaderTimeout, bodyTimeout: lc.BodyReadTimeout,
			underscores: lc.HeadersWithUnderscores, slowPathOnly: s.slowPathOnly,
			tlsFailures: s.metrics.tlsFailures,
		}
		if lc.TLS != nil {
			tc, err := tlsconf.ServerConfig(lc.TLS, s.log)
			if err != nil {
				errs = append(errs, fmt.Errorf("listener %q: %w", lc.Name, err))
			}
			l.tls, l.handshakeTimeout, l.xfcc = tc, lc.TLS.HandshakeTimeout, lc.TLS.ForwardClientCert
		}
		for i, rc := range lc.Routes {
			rt := &route{
				name: rc.Name, prefix: rc.Match.Prefix, path: rc.Match.Path, cluster: snap.clusters[rc.Cluster],
				operation: rc.Operation, timeout: *rc.Timeout,
			}
			for _, h := range rc.Match.Headers {
				rt.headers = append(rt.headers, config.HeaderMatch{Name: http.CanonicalHeaderKey(h.Name), Value: h.Value})
			}
			if tracer != nil {
				rt.tracing = tracer.forRoute(rc.Tracing)
			}
			rt.name = routeLabel(rt, i)
			rt.metrics = s.metrics.route(lc.Name, rt.name, rt.cluster.Name())
			l.routes = append(l.routes, rt)
		}
		l.proxy = &httputil.ReverseProxy{
			Rewrite:        l.rewrite,
			ModifyResponse: modifyResponse,
			Transport:      l,
			ErrorHandler:   l.errorHandler,
			ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
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
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		}
		snap.listeners = append(snap.listeners, l)
	}
	return snap, errors.Join(errs...)
}

func (sn *snapshot) cluster(name string) *upstream.Cluster {
	if sn == nil {
		return nil
	}
	return sn.clusters[name]
}

// configHash identifies a config by what it says, not how it is written:
// the SHA-256 of its decoded form, as /config and /metrics show it.
func configHash(cfg *config.Config) string {
	raw, _ := json.Marshal(cfg)
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:6])
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
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := s.snap.Load()
	var bound []net.Listener
	fail := func(err error) ([]Addr, error) {
		for _, ln := range bound {
			ln.Close()
		}
		for _, sock := range s.sockets {
			sock.ln = nil
		}
		return nil, err
	}
	var addrs []Addr
	for i, sock := range s.sockets {
		ln, err := bindListener(sock.name, sock.addr)
		if err != nil {
			return fail(err)
		}
		bound = append(bound, ln)
		sock.ln = ln
		addrs = append(addrs, Addr{Name: sock.name, Direction: snap.cfg.Listeners[i].Direction, Address: ln.Addr().String()})
	}
	var adminLn net.Listener
	if s.admin != nil {
		ln, err := bindListener("admin", s.adminAddr)
		if err != nil {
			return fail(err)
		}
		adminLn = ln
		addrs = append(addrs, Addr{Name: "admin", Direction: "admin", Address: ln.Addr().String()})
	}
	for _, sock := range s.sockets {
		s.attach(sock, sock.cur.Load())
		s.serveSocket(sock)
	}
	if adminLn != nil {
		s.wg.Go(func() {
			if err := s.admin.Serve(adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("admin server stopped", "address", adminLn.Addr().String(), "error", err)
			}
		})
	}
	s.started = true
	return addrs, nil
}

func bindListener(name, addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listener %q: cannot listen on %s: %w", name, addr, err)
	}
	return ln, nil
}

// attach makes l the listener of sock, with a handoff of its own served by
// its net/http server.
func (s *Server) attach(sock *socket, l *listener) {
	l.handoff = newHandoff(sock.ln.Addr())
	s.wg.Go(func() {
		if err := l.srv.Serve(l.handoff); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("server stopped", "listener", l.name, "error", err)
		}
	})
	sock.cur.Store(l)
}

func (s *Server) serveSocket(sock *socket) {
	s.wg.Go(func() {
		if err := sock.serve(); err != nil {
			s.log.Error("listener stopped", "listener", sock.name, "error", err)
		}
	})
}

// Apply makes cfg the configuration in force, with tracer and p (nil
// without tracing) built for it, without dropping a connection: a
// listener whose address stays keeps its socket; new addresses are bound
// first, and if one cannot be, nothing changes and the error names it.
// Requests in flight finish on the snapshot they began on; it is retired
// (its net/http connections closed when idle, its pipeline shut down
// where no driver carries over, clusters that are gone closed) once they
// are done, or after RetireAfter.
func (s *Server) Apply(cfg *config.Config, tracer *Tracer, p *pipeline.Pipeline) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining.Load() {
		return errors.New("tracehop is shutting down")
	}
	prev := s.snap.Load()
	// From the build (which makes the new routes' series) to the switch,
	// no retirement forgets series.
	s.metricsMu.Lock()
	defer s.metricsMu.Unlock()
	next, err := s.build(cfg, tracer, p, prev)
	if err != nil {
		return err
	}

	// Sockets carry over by address (a port 0 address only by name too:
	// each binds a new port).
	kept := make([]*socket, len(cfg.Listeners))
	used := map[*socket]bool{}
	for i, lc := range cfg.Listeners {
		for _, sock := range s.sockets {
			if !used[sock] && sock.addr == lc.Address && (!ephemeral(lc.Address) || sock.name == lc.Name) {
				kept[i], used[sock] = sock, true
				break
			}
		}
	}
	var opened []*socket
	for i, lc := range cfg.Listeners {
		if kept[i] != nil || !s.started {
			continue
		}
		ln, err := bindListener(lc.Name, lc.Address)
		if err != nil {
			for _, sock := range opened {
				sock.ln.Close()
			}
			return err
		}
		sock := newSocket(lc.Name, lc.Address, s.log)
		sock.ln = ln
		kept[i] = sock
		opened = append(opened, sock)
	}
	// The switch.
	for i, sock := range kept {
		if sock == nil { // not started: the socket binds at Start
			sock = newSocket(cfg.Listeners[i].Name, cfg.Listeners[i].Address, s.log)
			sock.cur.Store(next.listeners[i])
			kept[i] = sock
			continue
		}
		if s.started {
			s.attach(sock, next.listeners[i])
		} else {
			sock.cur.Store(next.listeners[i])
		}
	}
	s.snap.Store(next)
	for _, sock := range opened {
		s.serveSocket(sock)
	}
	var removed []*socket
	for _, sock := range s.sockets {
		if !used[sock] {
			removed = append(removed, sock)
		}
	}
	s.sockets = kept
	s.metrics.configInfo.Reset()
	s.metrics.configInfo.WithLabelValues(next.hash).Set(1)
	s.retiring.Go(func() { s.retire(prev, next, removed) })
	return nil
}

func ephemeral(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	return err != nil || port == "0" || port == ""
}

// retirementGrace is how long a replaced snapshot is left alone before
// its retirement looks at its requests in flight: a request that loaded
// it just before the switch has begun by then.
const retirementGrace = 200 * time.Millisecond

// retire stops what a reload replaced, once nothing uses it.
func (s *Server) retire(prev, next *snapshot, removed []*socket) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), s.retireAfter)
	defer cancel()
	var wg sync.WaitGroup
	for _, sock := range removed {
		if sock.ln != nil {
			sock.ln.Close()
		}
		wg.Go(func() { sock.drain(ctx) })
	}
	time.Sleep(retirementGrace)
	for _, l := range prev.listeners {
		if l.handoff != nil {
			// Connections it took finish their request and close.
			wg.Go(func() { l.srv.Shutdown(ctx) })
		}
	}
	wg.Wait()
	s.log.Debug("retiring a replaced config", "waited_for_connections", time.Since(start))
	if t := prev.tracer; t != nil {
		// Twice at 0, a grace apart: a request that loaded the replaced
		// listener just before the switch has begun (and counted itself)
		// by the second look.
		for zeros := 0; zeros < 2 && ctx.Err() == nil; {
			if t.inflight.Load() > 0 {
				zeros = 0
				time.Sleep(10 * time.Millisecond)
				continue
			}
			if zeros++; zeros < 2 {
				time.Sleep(retirementGrace)
			}
		}
		if n := t.inflight.Load(); n > 0 {
			s.log.Warn("a replaced config still has requests in flight after the drain timeout; the spans of those whose driver was removed will be counted as dropped", "requests", n)
		}
	}
	if prev.pipeline != nil && prev.pipeline != next.pipeline {
		// Its own deadline: waiting for requests above may have used the
		// first one up, and what a removed driver has queued must still
		// be flushed into it.
		fctx, fcancel := context.WithTimeout(context.Background(), s.retireAfter)
		if err := prev.pipeline.Shutdown(fctx); err != nil {
			s.log.Warn("a driver removed by the reload did not stop cleanly", "error", err)
		}
		fcancel()
	}
	for name, c := range prev.clusters {
		if next.clusters[name] != c {
			c.Close()
		}
	}
	// Unless a newer reload is in force (or being built) by now: its
	// routes decide.
	s.metricsMu.Lock()
	if s.snap.Load() == next {
		s.metrics.forget(prev.listeners, next.listeners)
	}
	s.metricsMu.Unlock()
}

// Shutdown drains the server: /ready turns 503, listeners stop accepting,
// requests in flight finish (until ctx ends), queued spans are flushed to the
// drivers and the drivers are stopped.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := s.snap.Load()
	var wg sync.WaitGroup
	var errs []error
	var mu sync.Mutex
	fail := func(name string, err error) {
		mu.Lock()
		errs = append(errs, fmt.Errorf("listener %q: %w", name, err))
		mu.Unlock()
	}
	for i, sock := range s.sockets {
		if sock.ln != nil {
			sock.ln.Close() // accept no more
		}
		l := snap.listeners[i]
		wg.Go(func() {
			if err := sock.drain(ctx); err != nil {
				fail(l.name, err)
			}
		})
		if l.handoff != nil {
			wg.Go(func() {
				if err := l.srv.Shutdown(ctx); err != nil {
					fail(l.name, err)
				}
			})
		}
	}
	wg.Wait()
	// What reloads replaced is flushed first, within ctx.
	retired := make(chan struct{})
	go func() { s.retiring.Wait(); close(retired) }()
	select {
	case <-retired:
	case <-ctx.Done():
		s.log.Warn("a configuration replaced by a reload was still retiring at the end of the drain")
	}
	if snap.pipeline != nil {
		// Spans that could not be delivered by the deadline are counted and
		// logged; they do not make the shutdown fail.
		if err := snap.pipeline.Shutdown(ctx); err != nil {
			s.log.Warn("stopping a driver failed", "error", err)
		}
		for _, st := range snap.pipeline.Stats() {
			if n := st.Dropped[pipeline.DropShutdown] + st.Dropped[pipeline.DropRetriesExhausted]; n > 0 {
				s.log.Warn("spans could not be delivered before shutdown", "driver", st.Name, "dropped", n, "exported", st.Exported)
			}
		}
	}
	if s.admin != nil {
		s.admin.Shutdown(ctx)
	}
	s.wg.Wait()
	for _, c := range snap.clusters {
		c.Close()
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

// recordReload counts a reload's result in /metrics.
func (s *Server) recordReload(err error) {
	if err != nil {
		s.metrics.reloads.WithLabelValues("failure").Inc()
		return
	}
	s.metrics.reloads.WithLabelValues("success").Inc()
	s.metrics.lastReload.SetToCurrentTime()
}

// ConfigHash is the hash of the config in force, as /config and
// tracehop_config_info show it.
func (s *Server) ConfigHash() string { return s.snap.Load().hash }
