// Command tracehop is the tracing sidecar and front proxy. Run it with
// `tracehop help` for its commands.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/tracehop/tracehop/cmd/tracehop/traceview"
	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/core/driverhost"
	"github.com/tracehop/tracehop/core/wire"
	"github.com/tracehop/tracehop/internal/app"
	"github.com/tracehop/tracehop/proxy"
	"github.com/tracehop/tracehop/proxy/config"
)

// Exit codes that scripts can rely on.
const (
	exitOK      = 0
	exitFailure = 1 // something failed while running
	exitUsage   = 2 // the command line is wrong
	exitInvalid = 3 // the config is invalid or a driver refused it
)

const usage = `tracehop: a distributed-tracing proxy whose tracer back ends are plugins.

Usage:
  tracehop run -c FILE        serve traffic as the config says (-workers N: N processes, one per core)
  tracehop validate -c FILE   check the config and start and stop every driver, serving nothing
  tracehop drivers [-c FILE]  list the drivers tracehop can find, and where
  tracehop driver check PATH  run the driver conformance kit on any driver executable (-backend otlp-http|otlp-grpc|zipkin)
  tracehop inject [-f FILE]   add the tracehop sidecar to Kubernetes Pods, Deployments, StatefulSets (YAML in, YAML out)
  tracehop trace view ...     draw traces as a waterfall, from the file driver's output or a Jaeger/Zipkin API
  tracehop version [-drivers]  print the version (with -drivers: each driver's too)
  tracehop help               show this

Run 'tracehop COMMAND -h' for a command's flags.
Exit codes: 0 ok, 1 failure while running, 2 usage error, 3 invalid config or a driver refused it (or manifests inject refuses).
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "run":
		return cmdRun(rest, stdout, stderr)
	case "validate":
		return cmdValidate(rest, stdout, stderr)
	case "drivers":
		return cmdDrivers(rest, stdout, stderr)
	case "driver":
		return cmdDriver(rest, stdout, stderr)
	case "inject":
		return runBeside("tracehop-inject", "inject", rest, os.Stdin, stdout, stderr)
	case "trace":
		if len(rest) == 0 || rest[0] != "view" {
			fmt.Fprintln(stderr, "tracehop trace: the only subcommand is 'view': tracehop trace view -h")
			return exitUsage
		}
		return cmdTraceView(rest[1:], stdout, stderr)
	case "version", "--version", "-version":
		return cmdVersion(rest, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "tracehop: unknown command %q\n\n%s", cmd, usage)
		return exitUsage
	}
}

// logFlags are the logging flags every long-running command has.
type logFlags struct {
	format, level string
}

func (l *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.format, "log-format", "text", "log format: text or json")
	fs.StringVar(&l.level, "log-level", "info", "log level: debug, info, warn or error")
}

func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.level)); err != nil {
		return nil, fmt.Errorf("-log-level: %q is not one of debug, info, warn, error", l.level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch l.format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("-log-format: %q is not text or json", l.format)
}

func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: tracehop %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags and reports whether the command should go on; code is
// the exit code when it should not.
func parse(fs *flag.FlagSet, args []string) (ok bool, code int) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return false, exitOK
		}
		return false, exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "tracehop %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		fs.Usage()
		return false, exitUsage
	}
	return true, 0
}

// commandFlags are the flags of the commands that read a config file and
// log: -c FILE (required) and the log flags.
type commandFlags struct {
	file *string
	log  logFlags
}

// configFlags registers -c and the log flags on fs.
func configFlags(fs *flag.FlagSet) *commandFlags {
	cf := &commandFlags{file: fs.String("c", "", "the config file (required)")}
	cf.log.register(fs)
	return cf
}

// parse parses args; with a nil logger the command stops with code.
func (cf *commandFlags) parse(fs *flag.FlagSet, args []string, stderr io.Writer) (*string, *slog.Logger, int) {
	if ok, code := parse(fs, args); !ok {
		return nil, nil, code
	}
	if *cf.file == "" {
		fmt.Fprintf(stderr, "tracehop %s: -c FILE is required\n", fs.Name())
		fs.Usage()
		return nil, nil, exitUsage
	}
	logger, err := cf.log.logger(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "tracehop %s: %v\n", fs.Name(), err)
		return nil, nil, exitUsage
	}
	return cf.file, logger, 0
}

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("validate", "validate -c FILE [-workers N]", stderr)
	cf := configFlags(fs)
	workers := workersFlag{n: 1}
	fs.Var(&workers, "workers", "check the config for tracehop run -workers N too (reuse_port on every listener, the workers' admin ports free)")
	file, logger, code := cf.parse(fs, args, stderr)
	if logger == nil {
		return code
	}
	cfg, err := config.Load(*file)
	if err == nil && workers.n > 1 {
		err = checkWorkers(cfg, workers.n, "")
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitInvalid
	}
	fmt.Fprintf(stdout, "%s: config is valid: %d listeners, %d clusters\n", *file, len(cfg.Listeners), len(cfg.Clusters))
	if workers.n > 1 {
		if cfg.Admin.Address == "off" {
			fmt.Fprintf(stdout, "%d workers: every listener shares its address (reuse_port); admin.address is off: no admin server, the supervisor's nor the workers'\n", workers.n)
		} else {
			at := make([]string, workers.n)
			for i := range at {
				a, _ := app.AdminAddress(cfg.Admin.Address, i+1) // checkWorkers took its error
				at[i] = fmt.Sprintf("worker %d's on %s", i, a)
			}
			fmt.Fprintf(stdout, "%d workers: every listener shares its address (reuse_port); the supervisor's admin server on %s, %s\n", workers.n, cfg.Admin.Address, strings.Join(at, ", "))
		}
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(stdout, "warning:", w)
	}
	if !printCertificates(cfg, stdout, stderr) {
		return exitInvalid
	}
	running := cfg.Admin.Address != "off" && tracehopAt(cfg.Admin.Address)
	switch held, known := runningListeners(cfg.Admin.Address, running); {
	case running && known:
		// Checked before a reload: the addresses the running tracehop
		// holds are its; a new one must be free, as the reload binds it.
		fresh := *cfg
		fresh.Admin.Address = "off"
		fresh.Listeners = slices.DeleteFunc(slices.Clone(cfg.Listeners), func(l config.Listener) bool { return held[l.Address] })
		fmt.Fprintf(stdout, "a tracehop serves admin.address %s: the %d listener addresses it holds are not checked, the %d new ones are; a new tracehop run would need them all free\n", cfg.Admin.Address, len(cfg.Listeners)-len(fresh.Listeners), len(fresh.Listeners))
		if err := proxy.CheckAddresses(&fresh); err != nil {
			fmt.Fprintln(stderr, err)
			return exitFailure
		}
	case running:
		fmt.Fprintf(stdout, "a tracehop serves admin.address %s, whose config could not be read (GET /config): the addresses are not checked (a reload binds the new ones and refuses the config if it cannot); a new tracehop run would need them free\n", cfg.Admin.Address)
	default:
		if err := proxy.CheckAddresses(cfg); err != nil {
			fmt.Fprintln(stderr, err)
			return exitFailure
		}
	}
	taken := false
	for i := 1; !running && workers.n > 1 && i <= workers.n && cfg.Admin.Address != "off"; i++ {
		a, _ := app.AdminAddress(cfg.Admin.Address, i) // checkWorkers took its error
		ln, err := net.Listen("tcp", a)
		if err != nil {
			file, line := cfg.Place("admin.address")
			fmt.Fprintf(stderr, "%s:%d: admin.address: worker %d's admin server (admin.address's port + %d): cannot listen on %s: %v: free it, or move admin.address\n", file, line, i-1, i, a, err)
			taken = true
			continue
		}
		ln.Close()
	}
	if taken {
		return exitFailure
	}
	if cfg.Tracing == nil {
		fmt.Fprintln(stdout, "no tracing block: tracehop will proxy without tracing")
		return exitOK
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	fmt.Fprintf(stdout, "starting %d driver(s) to check them...\n", len(cfg.Tracing.AllDrivers()))
	started, err := app.StartDrivers(ctx, cfg, logger)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitInvalid
	}
	defer app.StopDrivers(context.Background(), started)
	formats := cfg.Tracing.Propagation
	for _, d := range started {
		caps := d.Driver.Capabilities()
		ids := "64-bit"
		if caps.TraceID128 {
			ids = "128-bit"
		}
		fmt.Fprintf(stdout, "driver %s: ok (%s; reads %s; %s trace ids; keeps %s; spans over %s)\n",
			d.Name, d.Driver.Path(), strings.Join(caps.Propagation, ", "), ids, caps.Precision, d.Driver.Transport())
		if len(cfg.Tracing.Propagation) == 0 {
			formats = append(formats, caps.Propagation...) // the default: what the drivers' back ends read
		}
	}
	if len(formats) == 0 {
		formats = []string{"b3", "tracecontext"}
	}
	if err := printSampling(cfg, slices.Contains(formats, "tracecontext"), stdout); err != nil {
		fmt.Fprintln(stderr, err)
		return exitInvalid
	}
	return exitOK
}

// tracehopAt says whether a tracehop's admin server (one tracehop's, or
// the supervisor's of tracehop run -workers) answers at addr: its
// /healthz says so in app.AdminHeader.
func tracehopAt(addr string) bool {
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "0" {
		return false
	}
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil}}
	resp, err := client.Get("http://" + dialable(addr) + "/healthz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK && resp.Header.Get(app.AdminHeader) == "tracehop"
}

// dialable is where to reach a server listening on addr from this host:
// loopback for a wildcard address.
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	return net.JoinHostPort(host, port)
}

// runningListeners returns the listener addresses of the config that the
// tracehop serving admin at addr runs (GET /config; the supervisor of
// tracehop run -workers has none, its worker 0 on the next port does);
// false when it cannot tell.
func runningListeners(addr string, running bool) (map[string]bool, bool) {
	if !running {
		return nil, false
	}
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil}}
	for _, offset := range []int{0, 1} {
		a, err := app.AdminAddress(addr, offset)
		if err != nil {
			return nil, false
		}
		resp, err := client.Get("http://" + dialable(a) + "/config")
		if err != nil {
			return nil, false
		}
		var in struct{ Listeners []struct{ Address string } }
		err = json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&in)
		resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound {
			continue // the supervisor's: ask worker 0
		}
		if resp.StatusCode != http.StatusOK || err != nil {
			return nil, false
		}
		held := map[string]bool{}
		for _, l := range in.Listeners {
			held[l.Address] = true
		}
		return held, true
	}
	return nil, false
}

// printSampling prints the sampling of every route as the file says it:
// its rule, its percentages, and whether a remote strategy may replace
// them.
func printSampling(cfg *config.Config, consistent bool, stdout io.Writer) error {
	rows, err := proxy.SamplingTable(cfg)
	if err != nil {
		return err
	}
	s := cfg.Tracing.Sampling
	how := "decisions hash x-request-id (no tracecontext among the formats)"
	if consistent {
		how = "decisions on W3C randomness where a trace has it, written as tracestate ot=th (tracecontext is among the formats); else they hash x-request-id"
	}
	fmt.Fprintf(stdout, "sampling: tracing.sampling is %s; %s\n", s, how)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  LISTENER\tROUTE\tRULE\tRANDOM\tCLIENT\tOVERALL\tMAX/S\tREMOTE")
	for _, r := range rows {
		remote := "-"
		if s.Remote != nil {
			remote = "the strategy's default"
			if r.Rule != proxy.DefaultRule {
				remote = "its own rule stays"
			}
			remote = fmt.Sprintf("operation %s, else %s", strings.Join(r.Operations, " or "), remote)
		}
		if r.Sampling == nil {
			fmt.Fprintf(tw, "  %s\t%s\t(tracing off)\t-\t-\t-\t-\t-\n", r.Listener, r.Route)
			continue
		}
		rate := "-"
		if m := r.Sampling.MaxTracesPerSecond; m != nil {
			rate = fmt.Sprint(*m)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%v%%\t%v%%\t%v%%\t%s\t%s\n", r.Listener, r.Route, r.Rule,
			r.Sampling.Random, r.Sampling.Client, r.Sampling.Overall, rate, remote)
	}
	tw.Flush()
	if r := s.Remote; r != nil {
		fmt.Fprintf(stdout, "sampling.remote: %s?service=%s every %s; until its first answer (and if it never answers) the rules above apply, then its strategy replaces random (and the rate) until a reload\n",
			r.URL, r.Service, r.PollInterval)
	}
	fmt.Fprintln(stdout, "sampling decides at the head, before a request's outcome: keep the traces of errors or slow requests with tail sampling in a Collector tier")
	return nil
}

// printCertificates prints each certificate the config uses: its subject,
// names and days to expiry, with a warning for one expired or expiring
// within 30 days. It reports whether every one could be read.
func printCertificates(cfg *config.Config, stdout, stderr io.Writer) bool {
	now := time.Now()
	certs, err := proxy.Certificates(cfg, now)
	for _, c := range certs {
		days := int(c.NotAfter.Sub(now).Hours() / 24)
		fmt.Fprintf(stdout, "%s: %s: %s; names %s; expires %s (%d days)\n", c.Key, c.File, c.Subject,
			strings.Join(c.Names, ", "), c.NotAfter.UTC().Format(time.DateOnly), days)
		if c.Warning != "" {
			fmt.Fprintf(stdout, "warning: %s: %s: the certificate %s\n", c.Key, c.File, c.Warning)
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return false
	}
	return true
}

// driverSearch returns where drivers are looked for: -c FILE's
// tracing.plugin_dir first, then the default places.
func driverSearch(file string, stderr io.Writer) (driverhost.Search, bool) {
	dir := ""
	if file != "" {
		cfg, err := config.Load(file)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return driverhost.Search{}, false
		}
		if cfg.Tracing != nil {
			dir = cfg.Tracing.PluginDir
		}
	}
	return driverhost.DefaultSearch(dir), true
}

func cmdDrivers(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("drivers", "drivers [-c FILE]", stderr)
	file := fs.String("c", "", "a config file whose tracing.plugin_dir is searched first")
	if ok, code := parse(fs, args); !ok {
		return code
	}
	search, ok := driverSearch(*file, stderr)
	if !ok {
		return exitInvalid
	}
	return listDrivers(search, stdout)
}

// listDrivers prints every driver found, with what it says it is.
func listDrivers(search driverhost.Search, stdout io.Writer) int {
	found := search.List()
	if len(found) == 0 {
		fmt.Fprintf(stdout, "no drivers found (tracehop-driver-* executables) in tracing.plugin_dir, $%s, tracehop's directory or $PATH\n"+
			"build them with 'make build' (they land in ./bin)\n", driverhost.EnvPluginDir)
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVERSION\tPROTOCOL\tPATH\tFOUND IN\tNOTE")
	for _, f := range found {
		where := f.Source
		if f.Shadowed {
			where += " (shadowed by an earlier one)"
		}
		version, protocol, note := "?", "?", ""
		if info, err := driverhost.Describe(context.Background(), f.Path); err != nil {
			note = err.Error()
		} else {
			version, protocol, note = info.Version, strconv.Itoa(info.Protocol), driverhost.Compatibility(info)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", f.Name, version, protocol, f.Path, where, note)
	}
	tw.Flush()
	return exitOK
}

func cmdVersion(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("version", "version [-drivers] [-c FILE]", stderr)
	drivers := fs.Bool("drivers", false, "also list every driver found, with its own version and protocol version")
	file := fs.String("c", "", "with -drivers: a config file whose tracing.plugin_dir is searched first")
	if ok, code := parse(fs, args); !ok {
		return code
	}
	fmt.Fprintf(stdout, "tracehop %s\n  go:              %s %s/%s\n  driver protocol: %d\n",
		core.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH, wire.ProtocolVersion)
	if !*drivers {
		return exitOK
	}
	search, ok := driverSearch(*file, stderr)
	if !ok {
		return exitInvalid
	}
	fmt.Fprintln(stdout)
	return listDrivers(search, stdout)
}

func cmdRun(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("run", "run -c FILE [-workers N|auto]", stderr)
	cf := configFlags(fs)
	accessLog := fs.Bool("access-log", true, "log one line per request")
	drain := fs.Duration("drain-timeout", 15*time.Second, "on SIGTERM or SIGINT, how long requests in flight and queued spans get to finish (and, on a reload, how long the replaced config waits for its requests)")
	watch := fs.Bool("watch", true, "reload the config when its file changes (checked every second; SIGHUP and POST /reload on the admin server reload too)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile (go tool pprof) of the whole run to this file (with -workers, worker i's to FILE.i)")
	hungAfter := fs.Duration("worker-timeout", 30*time.Second, "with -workers: a worker whose admin server has not answered /healthz for this long is killed and started again, and so is one that has not answered a reload 2s after this long, a worker's reload giving up after this long (0: never, reloads get a minute)")
	workers := workersFlag{n: 1}
	fs.Var(&workers, "workers", "run this many tracehop processes of GOMAXPROCS 1 on the same listeners (each listener needs reuse_port: true; Linux), or auto for one per CPU; their supervisor's admin server on admin.address merges their metrics, worker i's is on its port + 1 + i (README: One process per core)")
	file, logger, code := cf.parse(fs, args, stderr)
	if logger == nil {
		return code
	}
	worker, nWorkers, isWorker := workerIndex()
	if workers.auto && workers.n == 1 && !isWorker {
		logger.Info("-workers auto: one CPU to run on, so one process")
	}
	if *hungAfter != 0 && *hungAfter < time.Second {
		fmt.Fprintf(stderr, "tracehop run: -worker-timeout %s: want 1s or more (a worker busy for a moment is not hung), or 0 for never\n", *hungAfter)
		return exitUsage
	}
	if workers.n > 1 && !isWorker {
		return superviseWorkers(fs, *file, workers.n, *watch, *hungAfter, logger, stdout, stderr)
	}
	ready := readyPipe()
	defer ready.Close() // a worker that fails to start: its supervisor sees the pipe end
	adminOffset := 0
	if isWorker {
		adminOffset = worker + 1 // beside its supervisor's admin server
		logger = logger.With("worker", worker)
		if *cpuProfile != "" {
			*cpuProfile += "." + strconv.Itoa(worker) // one profile per worker
		}
	}
	// SIGHUP is ours from here on, before the drivers start (which may
	// take a while): its default action would kill tracehop. A reload asked
	// for during the start runs once it is up.
	reloads := make(chan struct{}, 1)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			select {
			case reloads <- struct{}{}:
			default: // one is pending already
			}
		}
	}()
	// The file watch compares against what was loaded, so that a change
	// made while tracehop starts is not missed.
	fw := fileWatch{path: *file, read: os.ReadFile, every: time.Second, log: logger, seen: new(atomic.Pointer[[32]byte])}
	loaded, _ := fw.sum() // unreadable: config.Load says why
	var cfg *config.Config
	var err error
	if isWorker {
		// What its supervisor found valid last, which the other workers
		// run: the file may have gone wrong since.
		var raw []byte
		if raw, err = workerConfig(); err == nil {
			cfg, err = config.Parse(*file, raw)
		}
	} else {
		cfg, err = config.Load(*file)
	}
	if err != nil {
		if isWorker { // among the other workers' lines: a log line each, with worker=i
			for _, line := range strings.Split(err.Error(), "\n") {
				if line = strings.TrimSpace(line); line != "" {
					logger.Error("the config is invalid: this worker cannot start", "problem", line)
				}
			}
			return exitInvalid
		}
		fmt.Fprintln(stderr, err)
		return exitInvalid
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(stderr, "tracehop run: -cpuprofile:", err)
			return exitUsage
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
			logger.Info("CPU profile written", "file", *cpuProfile, "view", "go tool pprof -top "+*cpuProfile)
		}()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	startCtx, cancel := context.WithTimeout(ctx, time.Minute)
	for _, w := range cfg.Warnings {
		logger.Warn(w.Msg, "config", w.File, "line", w.Line, "key", w.Key)
	}
	if certs, err := proxy.Certificates(cfg, time.Now()); err == nil {
		for _, c := range certs {
			if c.Warning != "" {
				logger.Warn("certificate "+c.Warning, "key", c.Key, "file", c.File, "subject", c.Subject)
			}
		}
	}
	opts := app.Options{Logger: logger, AccessLog: *accessLog, ConfigFile: *file, DrainTimeout: *drain}
	if isWorker {
		opts.AdminPortOffset, opts.AdminBase = adminOffset, os.Getenv(envWorkersAdmin)
		opts.Check = func(c *config.Config) error { return checkWorkers(c, nWorkers, opts.AdminBase) }
		// Every worker reloads alike, or none: through the supervisor.
		supervisor := os.Getppid()
		opts.Reload = func(context.Context) error {
			if os.Getppid() != supervisor {
				return errors.New("this worker's supervisor is gone: nothing reloads it")
			}
			if err := syscall.Kill(supervisor, syscall.SIGHUP); err != nil {
				return fmt.Errorf("asking the supervisor to reload every worker: %w", err)
			}
			return app.Accepted(fmt.Sprintf("asked the supervisor (pid %d) to reload every worker: its log and its /metrics (tracehop_config_info) say what came of it", supervisor))
		}
	}
	a, err := app.Start(startCtx, cfg, opts)
	cancel()
	if err != nil {
		logger.Error("tracehop cannot start", "config", *file, "error", err)
		var de *app.DriverError
		if errors.As(err, &de) {
			return exitInvalid
		}
		return exitFailure
	}
	for _, a := range a.Addrs {
		if a.Direction == "admin" {
			logger.Info("admin server", "address", a.Address, "metrics", "http://"+a.Address+"/metrics", "config", "http://"+a.Address+"/config")
			continue
		}
		logger.Info("listening", "listener", a.Name, "direction", a.Direction, "address", a.Address)
	}
	if a.Tracer != nil {
		names := make([]string, len(a.Drivers))
		for i, d := range a.Drivers {
			names[i] = d.Name
		}
		logger.Info("tracing", "drivers", names, "propagation", a.Tracer.Formats())
	} else {
		logger.Info("no tracing block: proxying without tracing")
	}
	logger.Info("tracehop is running; stop it with Ctrl-C or SIGTERM, reload its config with SIGHUP", "version", core.Version, "pid", os.Getpid(), "watch", *watch, "gomaxprocs", runtime.GOMAXPROCS(0))
	adminAt := "off"
	for _, addr := range a.Addrs {
		if addr.Direction == "admin" {
			adminAt = addr.Address
		}
	}
	signalReady(ready, adminAt)
	if *watch {
		go fw.run(ctx, loaded, reloads)
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-reloads:
				if sum, err := fw.sum(); err == nil {
					fw.saw(sum)
				}
				rctx, cancel := context.WithTimeout(ctx, workerReloadTimeout())
				sum, err := a.ReloadFileSum(rctx) // logs what happened
				cancel()
				reportReload(ready, err, sum) // to a worker's supervisor
			}
		}
	}()
	<-ctx.Done()
	if !isWorker {
		stop() // a second SIGTERM or SIGINT stops tracehop at once
	} else {
		// A worker ignores them from now on, to its exit: a group-wide
		// signal (Ctrl-C, systemd's stop) reaches it twice, directly and
		// through its supervisor, which on a second one of its own sends
		// SIGKILL; and the supervisor's may come once it has drained,
		// which must not turn its clean exit into a death by signal.
		// Notified to nobody rather than ignored: an ignored SIGINT would
		// be inherited by a driver started while it drains.
		signal.Notify(make(chan os.Signal, 1), syscall.SIGINT, syscall.SIGTERM)
	}
	logger.Info("shutting down: draining requests and flushing spans", "timeout", *drain)
	sctx, cancel := context.WithTimeout(context.Background(), *drain)
	defer cancel()
	if err := a.Shutdown(sctx); err != nil {
		logger.Error("shutdown was not clean", "error", err)
		return exitFailure
	}
	logger.Info("stopped")
	return exitOK
}

func cmdTraceView(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("trace view", "trace view (-file SPANS.jsonl | -jaeger URL | -zipkin URL) [-service NAME] [-trace ID] [-n N] [-http ADDR]", stderr)
	file := fs.String("file", "", "Zipkin v2 JSON lines, as the file driver writes them ('-' for standard input)")
	jaegerURL := fs.String("jaeger", "", "a Jaeger query API, e.g. http://127.0.0.1:16686")
	zipkinURL := fs.String("zipkin", "", "a Zipkin query API, e.g. http://127.0.0.1:9411")
	service := fs.String("service", "", "with -jaeger or -zipkin: the service whose traces to show")
	traceID := fs.String("trace", "", "show this trace id")
	n := fs.Int("n", 1, "how many of the most recent traces to show (with -http: default 50)")
	color := fs.String("color", "auto", "auto, always or never")
	width := fs.Int("width", 0, "line width in columns (default $COLUMNS or 100)")
	httpAddr := fs.String("http", "", "serve the traces to a browser on this address (such as 127.0.0.1:16686) instead of drawing them here")
	if ok, code := parse(fs, args); !ok {
		return code
	}
	sources := 0
	for _, v := range []string{*file, *jaegerURL, *zipkinURL} {
		if v != "" {
			sources++
		}
	}
	if sources != 1 || *httpAddr != "" && *file == "-" {
		fmt.Fprintln(stderr, "tracehop trace view: give exactly one of -file, -jaeger, -zipkin (with -http, -file names a file, not '-')")
		fs.Usage()
		return exitUsage
	}
	nSet := false
	fs.Visit(func(f *flag.Flag) { nSet = nSet || f.Name == "n" })
	if *httpAddr != "" && !nSet {
		*n = 50
	}
	load := func(ctx context.Context) ([]traceview.Span, error) {
		switch {
		case *file == "-":
			return traceview.ReadZipkin(os.Stdin)
		case *file != "":
			f, err := os.Open(*file)
			if err != nil {
				return nil, err
			}
			defer f.Close()
			return traceview.ReadZipkin(f)
		case *jaegerURL != "":
			return traceview.FetchJaeger(ctx, *jaegerURL, *service, *traceID, *n)
		}
		return traceview.FetchZipkin(ctx, *zipkinURL, *service, *traceID, *n)
	}
	if *httpAddr != "" {
		return serveTraceView(*httpAddr, load, *n, stdout, stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	spans, err := load(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "tracehop trace view:", err)
		return exitFailure
	}
	traces := traceview.Group(spans)
	if *traceID != "" {
		want := strings.TrimLeft(strings.ToLower(*traceID), "0")
		traces = slices.DeleteFunc(traces, func(t traceview.Trace) bool { return strings.TrimLeft(t.ID, "0") != want })
	}
	if len(traces) == 0 {
		fmt.Fprintln(stderr, "tracehop trace view: no traces found")
		return exitFailure
	}
	if *n > 0 && len(traces) > *n {
		traces = traces[len(traces)-*n:]
	}
	w := *width
	if w == 0 {
		w, _ = strconv.Atoi(os.Getenv("COLUMNS"))
	}
	useColor := *color == "always"
	if *color == "auto" {
		if f, ok := stdout.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				useColor = os.Getenv("NO_COLOR") == ""
			}
		}
	}
	traceview.Render(stdout, traces, traceview.Options{Width: w, Color: useColor})
	return exitOK
}

// serveTraceView serves the trace view to a browser until SIGINT or
// SIGTERM.
func serveTraceView(addr string, load traceview.Loader, n int, stdout, stderr io.Writer) int {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintf(stderr, "tracehop trace view: cannot listen on %s: %v\n", addr, err)
		return exitFailure
	}
	srv := &http.Server{Handler: traceview.Handler(load, n), ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(stdout, "tracehop trace view: open http://%s/ in a browser (the %d most recent traces, read again on each reload); Ctrl-C stops\n", ln.Addr(), n)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(stderr, "tracehop trace view:", err)
		return exitFailure
	}
	return exitOK
}

// fileWatch asks for a reload when the config file's content changes. It
// polls (every second) rather than watching inotify events: Kubernetes
// ConfigMaps and editors replace files by renaming, which a poll of the
// content sees the same way. A change is acted on once the content has
// been stable for a poll, so that a file written in several steps is read
// whole. A file that cannot be read (out of descriptors, removed for a
// moment) is no change: it is logged once, and the watch compares the
// next content it can read with the last it read.
type fileWatch struct {
	path  string
	read  func(string) ([]byte, error) // os.ReadFile
	every time.Duration
	log   *slog.Logger
	// seen, when set, is the SHA-256 of the content a reload read last,
	// whatever asked for it: a change that SIGHUP reloaded already is
	// not reloaded again when the watch sees it.
	seen *atomic.Pointer[[32]byte]
}

// saw records that a reload read content whose SHA-256 is sum.
func (w fileWatch) saw(sum [32]byte) {
	if w.seen != nil {
		w.seen.Store(&sum)
	}
}

func (w fileWatch) run(ctx context.Context, loaded [32]byte, reloads chan<- struct{}) {
	last := loaded
	pending, unreadable := false, false
	tick := time.NewTicker(w.every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		sum, err := w.sum()
		if err != nil {
			if !unreadable {
				w.log.Warn("cannot read the config file; it is watched as unchanged until it can be read", "config", w.path, "error", err)
				unreadable = true
			}
			continue
		}
		if unreadable {
			w.log.Info("the config file can be read again", "config", w.path)
			unreadable = false
		}
		switch {
		case sum != last:
			last, pending = sum, true // wait for it to settle
		case pending:
			pending = false
			if w.seen != nil {
				if seen := w.seen.Load(); seen != nil && *seen == sum {
					continue // reloaded already (SIGHUP)
				}
			}
			w.log.Info("the config file changed", "config", w.path)
			select {
			case reloads <- struct{}{}:
			default:
			}
		}
	}
}

// sum is the SHA-256 of the file's content.
func (w fileWatch) sum() ([32]byte, error) {
	b, err := w.read(w.path)
	if err != nil {
		return [32]byte{}, err
	}
	return sha256.Sum256(b), nil
}
