package app

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/core/pipeline"
	"github.com/tracehop/tracehop/core/sampling"
	"github.com/tracehop/tracehop/proxy"
	"github.com/tracehop/tracehop/proxy/config"
)

// App is a started tracehop: drivers, pipeline, tracer, the data plane's
// server and the admin server.
type App struct {
	Server  *proxy.Server
	Tracer  *proxy.Tracer // nil without tracing
	Drivers []RunningDriver
	Addrs   []proxy.Addr
	admin   *Admin // nil with admin.address: off

	opts     Options
	mu       sync.Mutex  // one reload at a time
	closed   atomic.Bool // Shutdown has begun: no more reloads
	cfg      *config.Config
	pipeline *pipeline.Pipeline
	// remote polls tracing.sampling.remote, when the config has one.
	remote atomic.Pointer[remotePoller]
}

// Options tune Start.
type Options struct {
	Logger    *slog.Logger
	AccessLog bool
	// ConfigFile is where the config came from: ReloadFile reads it again
	// (SIGHUP, the file watch, POST /reload on the admin server).
	ConfigFile string
	// DrainTimeout bounds the wait of a configuration a reload replaced
	// for its requests in flight (default 15s).
	DrainTimeout time.Duration
	// AdminPortOffset moves the admin server to admin.address's port plus
	// this (AdminAddress): worker i of tracehop run -workers is at + 1 + i. The
	// config keeps the file's address, so that every worker's config hash
	// is the file's.
	AdminPortOffset int
	// AdminBase is the admin.address AdminPortOffset applies to, when not
	// the config's: a worker's supervisor gives it the address it started
	// with, so that a worker started again after the file's admin.address
	// changed is still at its place beside the others.
	AdminBase string
	// Check, when set, is asked about every config a reload would apply,
	// beside its own validation: a worker refuses what its supervisor
	// would (every listener with reuse_port), so that the workers never
	// run different configs.
	Check func(*config.Config) error
	// Reload, when set, is what POST /reload on the admin server does
	// instead of reloading the file: a worker asks its supervisor, which
	// reloads every worker alike.
	Reload func(context.Context) error
}

// Accepted is the answer of an Options.Reload that handed the reload on:
// POST /reload answers 202 with its words.
type Accepted string

func (a Accepted) Error() string { return string(a) }

// Start launches what cfg describes: its drivers (each configured, or an
// error naming every driver that refused), the span pipeline, and every
// listener. On error nothing is left running.
func Start(ctx context.Context, cfg *config.Config, opts Options) (*App, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	app := &App{opts: opts, cfg: cfg}
	if cfg.Tracing != nil {
		drivers, err := StartDrivers(ctx, cfg, opts.Logger)
		if err != nil {
			return nil, err
		}
		app.Drivers = drivers
		app.pipeline, app.Tracer, err = app.tracing(cfg, drivers, nil, nil)
		if err != nil {
			StopDrivers(context.Background(), drivers)
			return nil, err
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	app.Server = proxy.NewServer(cfg, proxy.Options{Logger: opts.Logger, Tracer: app.Tracer, Pipeline: app.pipeline, AccessLog: opts.AccessLog, RetireAfter: opts.DrainTimeout, Metrics: reg})
	var reload func(context.Context) error
	if opts.ConfigFile != "" {
		reload = app.ReloadFile
	}
	if opts.Reload != nil {
		reload = opts.Reload
	}
	// The admin address is bound first: if it or a listener's cannot be,
	// nothing is left listening.
	var admin *Admin
	base := cfg.Admin.Address
	if opts.AdminBase != "" {
		base = opts.AdminBase
	}
	adminAddr, err := AdminAddress(base, opts.AdminPortOffset)
	if err != nil {
		err = fmt.Errorf("admin.address %s: %w", base, err)
	} else {
		admin, err = ListenAdmin(adminAddr, app.Server, reg, reload, opts.Logger)
		if err != nil && opts.AdminPortOffset > 0 {
			err = fmt.Errorf("this worker's admin server, on admin.address's port + %d: %w", opts.AdminPortOffset, err)
		}
	}
	if err != nil {
		if app.pipeline != nil {
			app.pipeline.Shutdown(context.Background())
		}
		return nil, err
	}
	addrs, err := app.Server.Start()
	if err != nil {
		admin.Close()
		if app.pipeline != nil {
			app.pipeline.Shutdown(context.Background())
		}
		return nil, err
	}
	if admin != nil {
		app.admin = admin
		status := app.remoteStatus
		admin.remoteStatus.Store(&status)
		addrs = append(addrs, proxy.Addr{Name: "admin", Direction: "admin", Address: admin.Addr()})
		admin.Serve()
	}
	app.Addrs = addrs
	app.startRemote(cfg, nil)
	return app, nil
}

// remoteOf returns cfg's remote sampling source, nil when it has none.
func remoteOf(cfg *config.Config) *config.RemoteSampling {
	if cfg.Tracing == nil {
		return nil
	}
	return cfg.Tracing.Sampling.Remote
}

// startRemote polls cfg's remote sampling source, when it has one, in
// place of prev (stopped; nil for none). A source that stays the same
// (URL and service) keeps its last strategy, which the tracer in force
// gets at once.
func (a *App) startRemote(cfg *config.Config, prev *remotePoller) {
	rc := remoteOf(cfg)
	var seed *sampling.Strategy
	if prev != nil {
		prev.stop()
		if rc != nil && prev.cfg.URL == rc.URL && prev.cfg.Service == rc.Service {
			seed = prev.Last()
		}
	}
	if rc == nil {
		a.remote.Store(nil)
		return
	}
	if seed != nil {
		a.applyRemote(seed)
	}
	a.remote.Store(startRemote(*rc, seed, a.applyRemote, a.opts.Logger))
}

// applyRemote puts a remote strategy in force on the tracer in force.
func (a *App) applyRemote(st *sampling.Strategy) {
	if t := a.Server.InForce().Tracer; t != nil {
		if err := t.SetRemote(st); err != nil {
			a.opts.Logger.Error("remote sampling strategy refused: the sampling in force stays", "error", err)
		}
	}
}

// remoteStatus is the remote source's state for GET /sampling; nil
// without one.
func (a *App) remoteStatus() *RemoteStatus {
	if p := a.remote.Load(); p != nil {
		return p.Status()
	}
	return nil
}

// tracing builds the pipeline and tracer of cfg over drivers; prevP and
// prevT, when a reload replaces them, hand over what carries on.
func (a *App) tracing(cfg *config.Config, drivers []RunningDriver, prevP *pipeline.Pipeline, prevT *proxy.Tracer) (*pipeline.Pipeline, *proxy.Tracer, error) {
	targets := make([]pipeline.Target, len(drivers))
	caps := make([]core.Capabilities, len(drivers))
	for i, d := range drivers {
		targets[i] = pipeline.Target{Name: d.Name, Driver: d.Driver}
		caps[i] = d.Driver.Capabilities()
	}
	log := a.opts.Logger.With("component", "pipeline")
	var p *pipeline.Pipeline
	var err error
	if prevP != nil {
		p, err = prevP.Successor(cfg.Tracing.Queue.Pipeline(), targets, log)
	} else {
		p, err = pipeline.New(cfg.Tracing.Queue.Pipeline(), targets, log)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("tracing.queue: %w", err)
	}
	t, err := proxy.NewTracer(cfg, proxy.TracerOptions{Sink: p, Capabilities: caps, Previous: prevT})
	if err != nil {
		p.Shutdown(context.Background())
		return nil, nil, err
	}
	return p, t, nil
}

// Reload makes cfg (loaded and validated) the configuration in force. It
// starts and configures every driver that is new or whose config changed
// before anything switches; if one fails, or a new listener's address
// cannot be bound, the running configuration stays untouched and the
// error says why. Drivers that did not change keep running (same
// process, same queue); removed ones get the spans of requests that began
// before the switch, then stop.
func (a *App) Reload(ctx context.Context, cfg *config.Config) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var err error
	if a.opts.Check != nil {
		err = a.opts.Check(cfg)
	}
	if err == nil {
		err = a.reload(ctx, cfg)
	}
	a.Server.RecordReload(err)
	return err
}

// errShuttingDown refuses a reload once Shutdown has begun.
var errShuttingDown = errors.New("tracehop is shutting down: the config is not reloaded")

func (a *App) reload(ctx context.Context, cfg *config.Config) error {
	if a.closed.Load() {
		return errShuttingDown
	}
	if base := a.opts.AdminBase; base != "" && cfg.Admin.Address != base {
		at := base
		if a.admin != nil {
			at = a.admin.Addr() // this worker's
		}
		a.opts.Logger.Warn("admin.address changes when the supervisor (tracehop run -workers) starts again: every admin server stays where it is", "address", at, "supervisor", base, "new", cfg.Admin.Address)
	} else if base == "" && cfg.Admin.Address != a.cfg.Admin.Address {
		a.opts.Logger.Warn("admin.address changes on a restart only: the admin server stays where it is", "address", a.cfg.Admin.Address, "new", cfg.Admin.Address)
	}
	var drivers, started []RunningDriver
	if cfg.Tracing != nil {
		old := map[string]RunningDriver{}
		if a.cfg.Tracing != nil {
			for i, d := range a.cfg.Tracing.AllDrivers() {
				old[driverKey(a.cfg, d)] = a.Drivers[i]
			}
		}
		var todo []int // indexes of the drivers to start
		specs := cfg.Tracing.AllDrivers()
		drivers = make([]RunningDriver, len(specs))
		for i, d := range specs {
			if sd, ok := old[driverKey(cfg, d)]; ok {
				drivers[i] = sd
				delete(old, driverKey(cfg, d)) // the same driver twice gets two processes
				continue
			}
			todo = append(todo, i)
		}
		if len(todo) > 0 {
			var err error
			started, err = startDrivers(ctx, cfg, todo, a.opts.Logger)
			if err != nil {
				return err
			}
			for j, i := range todo {
				drivers[i] = started[j]
			}
		}
	}
	var p *pipeline.Pipeline
	var t *proxy.Tracer
	if cfg.Tracing != nil {
		var err error
		if p, t, err = a.tracing(cfg, drivers, a.pipeline, a.Tracer); err != nil {
			StopDrivers(context.Background(), started)
			return err
		}
	}
	// The remote strategy in force carries over to the new tracer when
	// the source stays; a PUT /sampling does not: the file's block wins.
	prevRemote := a.remote.Load()
	if rc := remoteOf(cfg); t != nil && rc != nil && prevRemote != nil && prevRemote.cfg.URL == rc.URL && prevRemote.cfg.Service == rc.Service {
		if last := prevRemote.Last(); last != nil {
			t.SetRemote(last)
		}
	}
	overridden := a.Tracer != nil && a.Tracer.SamplingOverridden()
	if err := a.Server.Apply(cfg, t, p); err != nil {
		if p != nil {
			// Stops the new drivers, and gives back the exporters it
			// shared with the pipeline in force.
			p.Shutdown(context.Background())
		}
		return err
	}
	a.cfg, a.pipeline, a.Tracer, a.Drivers = cfg, p, t, drivers
	if overridden {
		a.opts.Logger.Warn("the sampling set through PUT /sampling is superseded by the reloaded config's tracing.sampling")
	}
	if prevRemote != nil && remoteOf(cfg) != nil && reflect.DeepEqual(prevRemote.cfg, *remoteOf(cfg)) {
		if last := prevRemote.Last(); last != nil && t != nil {
			t.SetRemote(last) // what arrived while the reload was under way
		}
	} else if prevRemote != nil || remoteOf(cfg) != nil {
		a.startRemote(cfg, prevRemote)
	}
	return nil
}

// driverKey identifies a driver's process: a reload keeps a driver whose
// key is unchanged. A new queue block restarts every driver (an exporter
// keeps the queue it was made with).
func driverKey(cfg *config.Config, d config.DriverEntry) string {
	raw, _ := json.Marshal(struct {
		Driver    config.DriverEntry
		PluginDir string
		Host      core.HostInfo
		Queue     config.Queue
	}{d, cfg.Tracing.PluginDir, HostInfo(cfg), cfg.Tracing.Queue})
	return string(raw)
}

// ReloadFile reads the config file again and reloads it, as SIGHUP, the
// file watch and POST /reload do. Every problem is logged (file:line: key:
// what is wrong) and the running config stays when there is one.
func (a *App) ReloadFile(ctx context.Context) error {
	_, err := a.ReloadFileSum(ctx)
	return err
}

// ReloadFileSum is ReloadFile, returning the SHA-256 of the content it
// read: a worker of tracehop run -workers tells its supervisor which
// content it took, whatever the environment made of it.
func (a *App) ReloadFileSum(ctx context.Context) (sum [32]byte, err error) {
	log := a.opts.Logger
	if a.opts.ConfigFile == "" {
		return sum, errors.New("no config file to reload")
	}
	// The file is read under the lock: two reloads at once apply the
	// newest content last.
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed.Load() {
		return sum, errShuttingDown
	}
	log.Info("reloading the config", "config", a.opts.ConfigFile)
	var cfg *config.Config
	raw, err := os.ReadFile(a.opts.ConfigFile)
	if err != nil {
		err = fmt.Errorf("cannot read config: %w", err) // config.Load's words
	} else {
		sum = sha256.Sum256(raw)
		cfg, err = config.Parse(a.opts.ConfigFile, raw)
	}
	if err == nil && a.opts.Check != nil {
		err = a.opts.Check(cfg)
	}
	if err != nil {
		a.Server.RecordReload(err)
		for _, line := range strings.Split(err.Error(), "\n") {
			if line = strings.TrimSpace(line); line != "" {
				log.Error("config reload refused: the running config stays in force", "problem", line)
			}
		}
		return sum, err
	}
	for _, w := range cfg.Warnings {
		log.Warn(w.Msg, "config", w.File, "line", w.Line, "key", w.Key)
	}
	err = a.reload(ctx, cfg)
	a.Server.RecordReload(err)
	if err != nil {
		log.Error("config reload failed: the running config stays in force", "config", a.opts.ConfigFile, "error", err)
		return sum, err
	}
	log.Info("config reloaded", "config", a.opts.ConfigFile, "hash", a.Server.ConfigHash())
	return sum, nil
}

// Shutdown drains requests, flushes spans, stops the drivers and then the
// admin server. Reloads
// are refused from now on; one in progress fails at its switch (the
// server is draining) and stops what it started.
func (a *App) Shutdown(ctx context.Context) error {
	// Not under a.mu: a reload starting drivers must not hold the
	// shutdown up.
	a.closed.Store(true)
	if p := a.remote.Swap(nil); p != nil {
		p.stop()
	}
	err := a.Server.Shutdown(ctx)
	if a.admin != nil {
		// Last: /ready says 503 while requests drain and spans flush.
		a.admin.Shutdown(ctx)
	}
	return err
}
