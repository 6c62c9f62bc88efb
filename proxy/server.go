package proxy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tracehop/tracehop/core/pipeline"
	"github.com/tracehop/tracehop/proxy/config"
)

// Server is tracehop's running data plane: its sockets and the
// configuration in force, a snapshot that Apply replaces while it runs.
type Server struct {
	log          *slog.Logger
	accessLog    bool
	slowPathOnly bool
	metrics      *metrics
	draining     atomic.Bool
	// retireAfter bounds how long a replaced snapshot waits for its
	// requests in flight before its pipeline is retired.
	retireAfter time.Duration

	snap atomic.Pointer[snapshot]

	mu        sync.Mutex // Start, Apply and Shutdown, one at a time
	metricsMu sync.Mutex // a reload's build and switch, against a retirement forgetting series
	listeners []*listener
	// inForce is listeners as the accept loops and /metrics read it,
	// published at each change.
	inForce atomic.Pointer[[]*listener]
	// conns is the process's client connections, against
	// overload.max_connections (or what RLIMIT_NOFILE allows).
	conns connCount
	// containerMemory is the cgroup's memory limit, read at start (0:
	// none), for overload.memory_bytes's default.
	containerMemory int64
	// stopped ends the background work of Start (releaseAfterFloods) at
	// Shutdown.
	stopped  chan struct{}
	stopOnce sync.Once
	started  bool
	retiring sync.WaitGroup // replaced snapshots and removed sockets
	wg       sync.WaitGroup // accept loops and servers
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
	// RetireAfter bounds the wait of a replaced configuration for its
	// requests in flight (default 15s, tracehop run's -drain-timeout).
	RetireAfter time.Duration
	// Metrics is where the server registers its metrics (requests,
	// reloads, the tracer's and the pipeline's counters); nil gives it a
	// registry of its own, which Gatherer returns.
	Metrics *prometheus.Registry
}

// NewServer builds the data plane for cfg. Nothing listens until Start.
func NewServer(cfg *config.Config, opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{log: opts.Logger, accessLog: opts.AccessLog, retireAfter: cmp.Or(opts.RetireAfter, 15*time.Second), stopped: make(chan struct{})}
	reg := opts.Metrics
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	s.metrics = newMetrics(reg,
		func() *Tracer { return s.snap.Load().tracer },
		func() pipeline.StatsSource {
			if p := s.snap.Load().pipeline; p != nil {
				return p
			}
			return nil
		})
	s.metrics.conns.read = s.connCounts
	s.containerMemory = containerMemoryLimit()
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tracehop_overloaded", Help: "1 while tracehop is near one of its limits (overload.*: client connections, memory, span queues), as /ready says.",
	}, func() float64 {
		if over, _ := s.Overloaded(); over {
			return 1
		}
		return 0
	}))
	snap, err := s.builder().build(cfg, opts.Tracer, opts.Pipeline, nil)
	s.initErr = err
	s.snap.Store(snap)
	s.metrics.configInfo.WithLabelValues(snap.hash).Set(1)
	s.metrics.lastReload.SetToCurrentTime()
	s.setLimits(cfg)
	for i, lc := range cfg.Listeners {
		sock := s.newListener(lc.Name, lc.Address, lc.ReusePort)
		sock.cur.Store(snap.frontends[i])
		s.listeners = append(s.listeners, sock)
	}
	s.publishListeners()
	return s
}

func (s *Server) newListener(name, addr string, reusePort bool) *listener {
	l := newListener(name, addr, s.log, listenerEnv{process: &s.conns, metrics: s.metrics, peers: s.peers})
	l.reusePort = reusePort
	return l
}

// peers returns the listeners in force.
func (s *Server) peers() []*listener {
	if p := s.inForce.Load(); p != nil {
		return *p
	}
	return nil
}

func (s *Server) publishListeners() {
	ls := append([]*listener(nil), s.listeners...)
	s.inForce.Store(&ls)
}

// setLimits puts the process's limits of cfg in force.
func (s *Server) setLimits(cfg *config.Config) {
	n := int64(cfg.Overload.MaxConnections)
	if n == 0 {
		n = defaultMaxConnections()
	}
	s.conns.max.Store(n)
}

// connCounts is what tracehop_downstream_connections reports.
func (s *Server) connCounts() (map[string]int64, int64, int64) {
	per := map[string]int64{}
	for _, l := range s.peers() {
		per[l.name] += l.count.n.Load()
	}
	return per, s.conns.n.Load(), s.conns.max.Load()
}

// Addr describes one bound address.
type Addr struct {
	Name, Direction, Address string
}

// Start binds every listener and serves in the background. If any address cannot be bound, nothing is left listening and
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
		for _, sock := range s.listeners {
			sock.ln = nil
		}
		return nil, err
	}
	var addrs []Addr
	for i, sock := range s.listeners {
		ln, err := bindListener(sock.name, sock.addr, sock.reusePort)
		if err != nil {
			return fail(err)
		}
		bound = append(bound, ln)
		sock.ln = ln
		addrs = append(addrs, Addr{Name: sock.name, Direction: snap.cfg.Listeners[i].Direction, Address: ln.Addr().String()})
	}
	for _, sock := range s.listeners {
		s.attach(sock, sock.cur.Load())
		s.serveSocket(sock)
	}
	s.wg.Go(func() { releaseAfterFloods(&s.conns, floodCheckEvery, s.stopped) })
	s.started = true
	return addrs, nil
}

// floodCheckEvery is how often releaseAfterFloods looks.
const floodCheckEvery = 2 * time.Second

// bindListener listens on addr, with SO_REUSEPORT when reusePort is set.
func bindListener(name, addr string, reusePort bool) (net.Listener, error) {
	ln, err := listen(addr, reusePort)
	if err != nil {
		return nil, ListenError(name, addr, reusePort, err)
	}
	return ln, nil
}

// ListenError says that listener name ("admin" for the admin server)
// cannot listen on addr, and, when the address is taken, what would let
// it: the one wording for every place tracehop binds.
func ListenError(name, addr string, reusePort bool, err error) error {
	err = fmt.Errorf("listener %q: cannot listen on %s: %w", name, addr, err)
	switch {
	case !errors.Is(err, syscall.EADDRINUSE):
		return err
	case reusePort:
		return fmt.Errorf("%w (another process holds it without reuse_port, or as another user: only processes of the same user that all set reuse_port share an address)", err)
	case name == "admin":
		return fmt.Errorf("%w (stop what holds it or pick another admin address: each tracehop process needs its own)", err)
	case !reusePortWorks:
		return fmt.Errorf("%w (stop what holds it or pick another address)", err)
	default:
		return fmt.Errorf("%w (stop what holds it, pick another address, or, to share it with other tracehop processes, set reuse_port: true on the listener of each)", err)
	}
}

// listen binds a TCP listener on addr, with SO_REUSEPORT when reusePort is
// set (on Linux: reusePortControl).
func listen(addr string, reusePort bool) (net.Listener, error) {
	if !reusePort {
		return net.Listen("tcp", addr)
	}
	lc := net.ListenConfig{Control: reusePortControl}
	return lc.Listen(context.Background(), "tcp", addr)
}

// attach makes l the listener of sock, with a handoff of its own served by
// its net/http server.
func (s *Server) attach(sock *listener, l *frontend) {
	l.handoff = newHandoff(sock.ln.Addr())
	s.wg.Go(func() {
		if err := l.srv.Serve(l.handoff); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("server stopped", "listener", l.name, "error", err)
		}
	})
	sock.cur.Store(l)
}

func (s *Server) serveSocket(sock *listener) {
	s.wg.Go(func() {
		if err := sock.serve(); err != nil {
			s.log.Error("listener stopped", "listener", sock.name, "error", err)
		}
	})
}

// Shutdown drains the server: Draining turns true (/ready 503), listeners stop accepting,
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
	for i, sock := range s.listeners {
		if sock.ln != nil {
			sock.ln.Close() // accept no more
		}
		l := snap.frontends[i]
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
	s.stopOnce.Do(func() { close(s.stopped) })
	s.wg.Wait()
	for _, c := range snap.clusters {
		c.Close()
	}
	return errors.Join(errs...)
}

// CheckAddresses binds and releases every listener's address and the admin
// address, so that `tracehop validate` reports an address in use as a start
// would.
func CheckAddresses(cfg *config.Config) error {
	var errs []error
	check := func(name, addr string, reusePort bool) {
		if reusePort {
			// Bound, not listening: a listening socket would take some of
			// the connections of the tracehops that share the address.
			if err := bindReusePort(addr); err != nil {
				errs = append(errs, ListenError(name, addr, reusePort, err))
			}
			return
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			errs = append(errs, ListenError(name, addr, false, err))
			return
		}
		ln.Close()
	}
	for _, l := range cfg.Listeners {
		check(l.Name, l.Address, l.ReusePort)
	}
	if cfg.Admin.Address != "off" {
		check("admin", cfg.Admin.Address, false)
	}
	return errors.Join(errs...)
}

// RecordReload counts a reload's result (tracehop_config_reloads_total),
// whether it failed before reaching Apply or at it.
func (s *Server) RecordReload(err error) {
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

// Draining reports whether Shutdown has begun: the admin server's /ready
// answers 503 from then on, so that load balancers stop sending traffic.
func (s *Server) Draining() bool { return s.draining.Load() }

// Overloaded reports whether tracehop is near one of its limits, and
// which (overload.*): client connections, of the process or of a
// listener; resident memory, against overload.memory_bytes or the
// container's limit; a driver's span queue. The admin server's /ready says
// so, with 503 under overload.ready_when_overloaded: false, so that
// Kubernetes sends traffic elsewhere before requests fail.
func (s *Server) Overloaded() (bool, string) {
	snap := s.snap.Load()
	o := snap.cfg.Overload
	var why []string
	near := func(n, limit int64, percent float64) bool {
		return limit > 0 && percent > 0 && float64(n) >= percent/100*float64(limit)
	}
	if p := o.Connections(); p > 0 {
		if n, m := s.conns.n.Load(), s.conns.max.Load(); near(n, m, p) {
			why = append(why, fmt.Sprintf("client connections: %d of the process's %d", n, m))
		}
		for _, l := range s.peers() {
			if n, m := l.count.n.Load(), l.cur.Load().maxConns; near(n, m, p) {
				why = append(why, fmt.Sprintf("client connections: %d of listener %s's %d", n, l.name, m))
			}
		}
	}
	if limit := cmp.Or(o.MemoryBytes, s.containerMemory); limit > 0 && o.Memory() > 0 {
		if rss := residentBytes(); near(rss, limit, o.Memory()) {
			why = append(why, fmt.Sprintf("resident memory: %d MiB of %d MiB", rss>>20, limit>>20))
		}
	}
	if p := o.SpanQueuePercent; p > 0 && snap.pipeline != nil {
		for _, st := range snap.pipeline.Stats() {
			if near(int64(st.QueueLen), int64(st.QueueCap), p) {
				why = append(why, fmt.Sprintf("span queue of driver %s: %d of %d", st.Name, st.QueueLen, st.QueueCap))
			}
		}
	}
	return len(why) > 0, strings.Join(why, "; ")
}

// ReadyWhenOverloaded says whether /ready stays 200 while Overloaded
// (overload.ready_when_overloaded, true by default).
func (s *Server) ReadyWhenOverloaded() bool {
	o := s.snap.Load().cfg.Overload
	return o.Ready()
}

// InForce describes the configuration in force, for the admin server's
// /config: the config, its hash, and each driver's secret config keys
// (in the order of the config's drivers) to redact.
type InForce struct {
	Config     *config.Config
	Hash       string
	SecretKeys [][]string
	// Tracer is the tracer in force (nil without tracing): its sampling
	// can be read and changed (Tracer.SamplingState, SetSampling) until a
	// reload replaces it.
	Tracer *Tracer
}

// InForce returns the configuration in force.
func (s *Server) InForce() InForce {
	snap := s.snap.Load()
	return InForce{Config: snap.cfg, Hash: snap.hash, SecretKeys: snap.tracer.secretKeys(), Tracer: snap.tracer}
}

// Gatherer is the registry the server's metrics are in (Options.Metrics,
// or its own), for the admin server's /metrics.
func (s *Server) Gatherer() prometheus.Gatherer { return s.metrics.reg }

// builder is how the server builds snapshots.
func (s *Server) builder() builder {
	return builder{log: s.log, accessLog: s.accessLog, slowPathOnly: s.slowPathOnly, metrics: s.metrics}
}
