package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tracehop/tracehop/internal/app"
	"github.com/tracehop/tracehop/proxy"
	"github.com/tracehop/tracehop/proxy/config"
)

// One process per core, supervised: `tracehop run -workers N` starts N
// worker processes of the same executable, each of GOMAXPROCS 1, on the
// same listener addresses (reuse_port, so the kernel spreads new
// connections over them, as over nginx's workers), and stays as their
// supervisor. It serves nothing itself: it forwards SIGHUP (reload) and
// SIGTERM/SIGINT (drain and stop; a second one: SIGKILL) to the workers,
// and starts again a worker that dies.
//
// Each worker is a whole tracehop (its own driver process, span queue and
// limits); worker i's admin server is on admin.address's port + 1 + i, and
// the supervisor's on admin.address serves every worker's metrics merged
// and one /ready for all (workers_admin.go). A worker knows it is one by
// two environment variables, and tells its supervisor that it serves, and
// where its admin server is, by a line on the pipe it got as descriptor 3.

// Environment variables from the supervisor to a worker.
const (
	envWorker  = "TRACEHOP_WORKER"  // this worker's index, 0 to N-1
	envWorkers = "TRACEHOP_WORKERS" // N
	// envWorkersAdmin is admin.address as the supervisor started with it:
	// worker i's admin server is at its port + 1 + i for the supervisor's
	// life, whatever the file says later.
	envWorkersAdmin = "TRACEHOP_WORKERS_ADMIN"
	// envWorkerReload is how long a worker's reload may take before the
	// worker gives it up (and answers that it refused it): -worker-timeout,
	// so that a worker silent a little longer is hung, not slow.
	envWorkerReload = "TRACEHOP_WORKER_RELOAD_TIMEOUT"
)

// reloadTimeout bounds one reload of the config (its drivers' start and
// configure included, 20 s at most each) where -worker-timeout does not.
const reloadTimeout = time.Minute

// reloadGrace is how much longer than a worker's own reload budget the
// supervisor waits for its answer before it counts the worker hung.
const reloadGrace = 2 * time.Second

// A worker's descriptors from its supervisor: the pipe on which it says
// that it serves, and the config it starts with (the last one the
// supervisor found valid: a worker started again after the file went
// wrong runs what the others run).
const (
	readyFD  = 3
	configFD = 4
)

// workerRestartMax bounds the wait before a worker that keeps dying is
// started again; the wait doubles from a second, and starts over once a
// worker has served for workerSteady.
const (
	workerRestartMax = 30 * time.Second
	workerSteady     = time.Minute
)

// workersFlag is -workers: a count, or auto (autoWorkers).
type workersFlag struct {
	n    int
	auto bool
}

func (w *workersFlag) String() string { return strconv.Itoa(w.n) }

func (w *workersFlag) Set(s string) error {
	if s == "auto" {
		w.n, w.auto = autoWorkers(), true
		return nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 256 {
		return fmt.Errorf("want a number of processes from 1 to 256, or auto (one per CPU tracehop may use), got %q", s)
	}
	w.n, w.auto = n, false
	return nil
}

// autoWorkers is one worker per CPU this process may run on, bounded by
// its cgroup's CPU limit rounded up (a sidecar limited to 1.5 CPUs gets
// 2), and 1 off Linux. GOMAXPROCS's default is not used: it never goes
// below 2 for a limit under 2 CPUs.
func autoWorkers() int {
	if runtime.GOOS != "linux" {
		return 1
	}
	n := runtime.NumCPU() // the affinity mask's
	if limit, ok := cgroupCPULimit(readString("/proc/self/cgroup"), "/sys/fs/cgroup"); ok {
		n = min(n, max(1, int(math.Ceil(limit))))
	}
	return n
}

// cgroupCPULimit reads the tightest cpu.max (cgroup v2, mounted at root)
// of the cgroup that procCgroup (/proc/self/cgroup's content) names and
// of its ancestors, in CPUs.
func cgroupCPULimit(procCgroup, root string) (float64, bool) {
	var path string
	for _, line := range strings.Split(procCgroup, "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			path = p
		}
	}
	if path == "" {
		return 0, false
	}
	limit, found := 0.0, false
	for dir := filepath.Join(root, path); strings.HasPrefix(dir, root); dir = filepath.Dir(dir) {
		if f := strings.Fields(readString(filepath.Join(dir, "cpu.max"))); len(f) == 2 && f[0] != "max" {
			quota, err1 := strconv.ParseFloat(f[0], 64)
			period, err2 := strconv.ParseFloat(f[1], 64)
			if err1 == nil && err2 == nil && period > 0 && (!found || quota/period < limit) {
				limit, found = quota/period, true
			}
		}
		if dir == root {
			break
		}
	}
	return limit, found
}

func readString(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// workerIndex returns this process's index when a supervisor started it.
func workerIndex() (i, n int, ok bool) {
	si, sn := os.Getenv(envWorker), os.Getenv(envWorkers)
	if si == "" || sn == "" {
		return 0, 0, false
	}
	i, err1 := strconv.Atoi(si)
	n, err2 := strconv.Atoi(sn)
	if err1 != nil || err2 != nil || i < 0 || i >= n {
		return 0, 0, false
	}
	return i, n, true
}

// checkWorkers says what in cfg keeps it from running as n workers, each
// problem with its place in the file. adminBase is the admin.address the
// workers' admin ports follow ("": cfg's; a running supervisor's is the
// one it started with).
func checkWorkers(cfg *config.Config, n int, adminBase string) error {
	if adminBase == "" {
		adminBase = cfg.Admin.Address
	}
	if runtime.GOOS != "linux" {
		return fmt.Errorf("-workers %d needs Linux, whose SO_REUSEPORT spreads connections over processes: run one tracehop (GOMAXPROCS sets its threads)", n)
	}
	var problems []string
	bad := func(key, format string, args ...any) {
		file, line := cfg.Place(key)
		problems = append(problems, fmt.Sprintf("%s:%d: %s: %s", file, line, key, fmt.Sprintf(format, args...)))
	}
	portOf := config.ListenPort
	ports := map[int]string{} // a listener's port: its key
	for i, l := range cfg.Listeners {
		key := fmt.Sprintf("listeners[%d]", i)
		if !l.ReusePort {
			bad(key, "%q (%s) needs reuse_port: true, so that the %d workers can share its address", l.Name, l.Address, n)
		}
		if port := portOf(l.Address); port != 0 {
			ports[port] = key
		}
	}
	if adminBase != "off" {
		if _, err := app.AdminAddress(adminBase, n); err != nil {
			bad("admin.address", "%v", err)
		} else {
			for i := 1; i <= n; i++ {
				a, _ := app.AdminAddress(adminBase, i)
				if port := portOf(a); ports[port] != "" && port != 0 {
					bad("admin.address", "worker %d's admin server would be on %s, the port of %s: move the admin port or the listener's", i-1, a, ports[port])
				}
			}
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "\n"))
	}
	return nil
}

// workerArgs returns the run command line of a worker: the flags given to
// the supervisor, but -workers, and no file watch (the supervisor's).
func workerArgs(fs *flag.FlagSet) []string {
	args := []string{"run"}
	fs.Visit(func(f *flag.Flag) {
		if f.Name != "workers" && f.Name != "watch" && f.Name != "worker-timeout" {
			args = append(args, "-"+f.Name+"="+f.Value.String())
		}
	})
	return append(args, "-watch=false")
}

// loadForWorkers reads the config file and checks it as a config of n
// workers, returning its content too (also with a config error: nil only
// when the file cannot be read).
func loadForWorkers(file string, n int, adminBase string) ([]byte, *config.Config, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		_, err = config.Load(file) // its words for a file it cannot read
		if err == nil {
			err = fmt.Errorf("%s: it changed while it was read: try again", file)
		}
		return nil, nil, err
	}
	cfg, err := config.Parse(file, raw)
	if err == nil {
		err = checkWorkers(cfg, n, adminBase)
	}
	if err != nil {
		return raw, nil, err
	}
	return raw, cfg, nil
}

// reload checks the config file as it is now (SIGHUP, or the file watch
// saw it change): valid, every worker reloads it, and a worker started
// from now on starts with it; not, every worker keeps the config it runs,
// and a worker started again gets that too.
func (s *supervisor) reload() {
	s.mu.Lock()
	if s.stopped || s.round != nil {
		s.again = s.round != nil && !s.stopped // after it, with the file as it is then
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	raw, cfg, err := loadForWorkers(s.file, s.n, s.admin)
	sum := sha256.Sum256(raw)
	if raw != nil {
		s.watch.saw(sum) // the watch need not ask again
	}
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			if line = strings.TrimSpace(line); line != "" {
				s.log.Error("config reload refused: every worker keeps the config it runs", "problem", line)
			}
		}
		s.count("refused")
		return
	}
	s.mu.Lock()
	if s.round != nil { // another reload began meanwhile
		s.again = true
		s.mu.Unlock()
		return
	}
	r := &reloadRound{raw: raw, sum: fmt.Sprintf("%x", sum), hash: proxy.HashConfig(cfg), waiting: map[int]*os.Process{}, askedAt: map[int]time.Time{}}
	now := time.Now()
	for i, p := range s.procs {
		if p != nil { // one starting gets the SIGHUP once it serves
			r.waiting[i] = p
			if s.ready[i] {
				r.askedAt[i] = now
			}
		}
	}
	r.asked = len(r.waiting)
	s.round = r
	s.settle() // none to ask: it is in force at once
	if s.round == r && s.hungAfter > 0 {
		// A worker that never answers would hold back every later reload:
		// the watchdog sees it only through an admin server, which may be
		// off, and only if /healthz hangs too. A worker's own reload gives
		// up after -worker-timeout (envWorkerReload): one silent past that
		// is hung.
		time.AfterFunc(s.hungAfter+reloadGrace, func() { s.overdue(r) })
	}
	s.mu.Unlock()
	s.log.Info("reloading: every worker reloads the config", "config", s.file, "hash", r.hash)
	s.signal(syscall.SIGHUP, true)
}

// answer records worker i's (the process p's) outcome of the reload
// under way: the SHA-256 of the content it runs now, "" if it refused.
func (s *supervisor) answer(i int, p *os.Process, sum string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.procs[i] == p && sum != "" {
		s.runs[i] = sum // what it runs, whichever round it answers
	}
	r := s.round
	if r == nil || r.waiting[i] != p {
		return
	}
	delete(r.waiting, i)
	switch {
	case sum == r.sum:
		r.took = append(r.took, i)
	case sum == "":
		r.refused = append(r.refused, i)
	default:
		// It read the file after it changed again: the round says
		// nothing, and the next one (with the file as it is) settles it.
		r.newer = true
	}
	s.settle()
}

// overdue kills the workers that have not answered the round r for
// -worker-timeout (and reloadGrace) since they were asked: hung, as far as
// the config goes. Their exits end their part in the round (clear),
// which then settles. A worker asked later (it was starting) or still
// starting is looked at again when its own time is up.
func (s *supervisor) overdue(r *reloadRound) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.round != r || s.stopped {
		return
	}
	wait := s.hungAfter + reloadGrace
	next := time.Duration(0)
	for i, p := range r.waiting {
		if s.procs[i] != p {
			continue
		}
		at, asked := r.askedAt[i]
		if left := wait - time.Since(at); !asked || left > 0 {
			if !asked {
				left = wait
			}
			if next == 0 || left < next {
				next = left
			}
			continue
		}
		s.log.Error("a worker has not answered the reload: killing it (SIGQUIT: its goroutines' stacks follow; SIGKILL 2s later), to start it again with the config in force", "worker", i, "pid", p.Pid, "worker_timeout", s.hungAfter.String())
		s.kill(i, p)
	}
	if next > 0 {
		time.AfterFunc(next, func() { s.overdue(r) })
	}
}

// kill ends worker i, the process p, as hung: SIGQUIT first, so that Go
// writes every goroutine's stack to the worker's standard error, the
// supervisor's, and the log says where it hung; SIGKILL 2 s later if it
// is still there.
func (s *supervisor) kill(i int, p *os.Process) {
	p.Signal(syscall.SIGCONT) // a stopped process would not act on SIGQUIT
	p.Signal(syscall.SIGQUIT)
	time.AfterFunc(2*time.Second, func() {
		if s.proc(i) == p {
			p.Signal(syscall.SIGKILL)
		}
	})
}

// settle ends the round under way once every worker asked has answered
// (or exited): the config it checked is in force if any worker took it,
// and the workers that did not are started again with it, so that all
// run one config; if none took it, they all run the one they ran. Under
// s.mu.
func (s *supervisor) settle() {
	r := s.round
	if r == nil || len(r.waiting) > 0 {
		return
	}
	s.round = nil
	if r.newer {
		s.log.Info("the config file changed while the workers reloaded it: reloading every worker again", "config", s.file)
		s.count("superseded")
		s.again = false
		go s.reload()
		return
	}
	defer func() {
		if s.again {
			s.again = false
			go s.reload()
		}
	}()
	result := "success"
	switch {
	case len(r.took) == 0 && r.asked > 0:
		// Every worker asked refused it, or exited before it answered
		// (a config that kills them must not be what they restart with).
		s.log.Error("no worker took the config (each said why, or exited): the one they ran stays the one a worker started again gets", "config", s.file)
		result = "failure"
	default:
		if r.sum != s.goodSum {
			select { // a worker waiting out a crash's backoff may start now
			case s.promoted <- struct{}{}:
			default:
			}
		}
		s.good, s.goodSum = r.raw, r.sum
	}
	// Every worker that serves and runs another config than the one in
	// force is started again with it: one that refused it, one started
	// meanwhile, one whose late answer said it runs something else. One
	// still starting is seen to once it serves (markReady).
	var behind []int
	for i, p := range s.procs {
		if p != nil && s.ready[i] && s.runs[i] != s.goodSum {
			behind = append(behind, i)
			s.planned[i] = true
			p.Signal(syscall.SIGTERM)
		}
	}
	if len(behind) > 0 {
		s.log.Error("workers do not run the config the others run: stopping them, to start them again with it, so that every worker runs one config", "config", s.file, "workers", fmt.Sprint(behind), "hash", r.hash)
		if result == "success" {
			result = "partial"
		}
	} else if result == "success" && len(r.took) > 0 {
		s.log.Info("every worker runs the config", "config", s.file, "hash", r.hash)
	}
	s.count(result)
}

// count records a reload's result where the supervisor's admin server
// counts them.
func (s *supervisor) count(result string) {
	if s.reloaded != nil {
		s.reloaded(result)
	}
}

// workerConfig reads, in a worker, the config its supervisor handed it.
func workerConfig() ([]byte, error) {
	syscall.CloseOnExec(configFD) // not the driver's
	f := os.NewFile(configFD, "config")
	defer f.Close()
	return io.ReadAll(f)
}

// supervisor runs and watches the workers.
type supervisor struct {
	args           []string
	n              int
	file           string
	admin          string // admin.address at the start (envWorkersAdmin)
	stdout, stderr io.Writer
	log            *slog.Logger

	mu      sync.Mutex
	procs   []*os.Process // nil where a worker is not running
	ready   []bool        // the worker serves (it has signals in hand)
	addrs   []string      // where a serving worker's admin server is
	hup     []bool        // a SIGHUP came while the worker started: send it once it serves
	stopped bool          // SIGTERM or SIGINT arrived: start nothing more
	// good is the content of the config file the workers run: the last
	// one the supervisor found valid, and what a worker starts with.
	good  []byte
	watch fileWatch // the file's, told what a reload read
	// round is the reload under way: a config the supervisor checked,
	// that becomes good once the workers took it.
	round *reloadRound
	// reloaded counts a reload's result (tracehop_workers_config_reloads_total).
	reloaded func(result string)
	// promoted says that another config is in force: a worker that kept
	// dying on the last one is started again at once, not after its
	// backoff.
	promoted chan struct{}
	runs     []string // the SHA-256 (hex) of the config content each worker runs
	goodSum  string   // good's
	// reloadLater: a reload asked for during the first start, run once
	// every worker serves.
	reloadLater bool
	// again: a reload asked for while a round was under way, run once it
	// settles: one round at a time, so that every answer is to it.
	again bool
	// planned: worker i was stopped to run the config in force; its exit
	// is no crash, and it starts again at once.
	planned []bool
	// hungAfter is -worker-timeout: how long a worker may leave /healthz
	// or a reload unanswered before it is killed (0: never).
	hungAfter time.Duration
}

// reloadRound is one reload of every worker: the config checked, the
// SHA-256 of its content (hex), its hash as tracehop_config_info shows
// it, and the workers asked that have not answered yet.
type reloadRound struct {
	raw           []byte
	sum, hash     string
	waiting       map[int]*os.Process
	askedAt       map[int]time.Time // when each worker waited for got its SIGHUP
	asked         int
	took, refused []int
	newer         bool // a worker took content newer than the round's: the file changed meanwhile
}

// superviseWorkers is `tracehop run -workers N` with N > 1.
func superviseWorkers(fs *flag.FlagSet, file string, n int, watch bool, hungAfter time.Duration, logger *slog.Logger, stdout, stderr io.Writer) int {
	raw, cfg, err := loadForWorkers(file, n, "")
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitInvalid
	}
	// The kernel sends a worker its parent-death signal when the thread
	// that started it ends, not the process: every worker is started from
	// this goroutine, kept on one thread for as long as it runs.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	s := &supervisor{args: workerArgs(fs), n: n, file: file, admin: cfg.Admin.Address, good: raw, goodSum: fmt.Sprintf("%x", sha256.Sum256(raw)), stdout: stdout, stderr: stderr, log: logger,
		procs: make([]*os.Process, n), ready: make([]bool, n), addrs: make([]string, n), hup: make([]bool, n), runs: make([]string, n), planned: make([]bool, n),
		hungAfter: hungAfter, promoted: make(chan struct{}, 1)}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	// The supervisor watches the file, not the workers: it checks a new
	// config once, for all of them, before any reloads it.
	if watch {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		changed := make(chan struct{}, 1)
		s.watch = fileWatch{path: file, read: os.ReadFile, every: time.Second, log: logger, seen: new(atomic.Pointer[[32]byte])}
		go s.watch.run(ctx, sha256.Sum256(raw), changed)
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-changed:
					select {
					case sigs <- syscall.SIGHUP:
					case <-ctx.Done():
						return
					}
				}
			}
		}()
	}
	var admin *supervisorAdmin
	if cfg.Admin.Address != "off" {
		a, ln, err := listenSupervisorAdmin(s, cfg.Admin.Address)
		if err != nil {
			logger.Error("tracehop cannot start", "config", file, "error", err)
			return exitFailure
		}
		admin = a
		s.reloaded = func(result string) { a.reloads.WithLabelValues(result).Inc() }
		go a.srv.Serve(ln)
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			a.srv.Shutdown(ctx)
		}()
		logger.Info("admin server of the workers", "address", ln.Addr().String(), "metrics", "http://"+ln.Addr().String()+"/metrics", "ready", "http://"+ln.Addr().String()+"/ready")
	}

	logger.Info("starting workers: one tracehop process per core, sharing the listeners (reuse_port)", "workers", n, "config", file)
	// Every worker must come up once: a config or an address that fails
	// one fails the others, so the first start is all or nothing.
	exits := make(chan workerExit, n)
	for i := range n {
		ready, err := s.start(i, exits)
		if err == nil {
			err = s.awaitReady(i, ready, exits, sigs)
		}
		if err != nil {
			code, who := exitFailure, i
			var we *workerExitError
			switch {
			case errors.As(err, &we):
				who = we.i
				if we.code > 0 {
					code = we.code
				}
			case errors.Is(err, errStoppedStarting):
				code = exitOK
			}
			if code == exitOK {
				logger.Info("shutting down while the workers started: every worker started drains and stops (a second signal kills them)", "error", err)
			} else {
				logger.Error("a worker did not start: stopping the others", "worker", who, "error", err)
			}
			s.signal(syscall.SIGTERM, false)
			s.waitAll(exits, sigs)
			return code
		}
	}
	for i, a := range s.states() {
		logger.Info("worker serving", "worker", i, "pid", s.pid(i), "admin", a)
	}
	s.mu.Lock()
	later := s.reloadLater
	s.mu.Unlock()
	if later {
		s.reload()
	}
	logger.Info("tracehop is running as a supervisor; stop it with Ctrl-C or SIGTERM, reload every worker's config with SIGHUP", "workers", n, "pid", os.Getpid())
	switch {
	case admin != nil && hungAfter > 0:
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go s.watchdog(ctx, admin, hungAfter)
	case hungAfter > 0:
		logger.Warn("admin.address is off: no worker is asked whether it answers (that needs the workers' admin servers); a worker is started again when it exits, or when it leaves a reload unanswered for -worker-timeout")
	}

	backoff := make([]time.Duration, n)
	pending := make([]*time.Timer, n) // a worker's restart after its backoff
	restart := make(chan int, n)
	code, alive := exitOK, n
	for !s.isStopped() || alive > 0 {
		select {
		case sig := <-sigs:
			switch {
			case sig == syscall.SIGHUP:
				s.reload()
			case s.isStopped():
				logger.Warn("stopping the workers at once (SIGKILL): a second signal", "signal", sig.String())
				s.signal(syscall.SIGKILL, false)
			default:
				logger.Info("shutting down: every worker drains its requests and flushes its spans (a second signal kills them)", "signal", sig.String())
				s.signal(syscall.SIGTERM, false)
			}
		case e := <-exits:
			served := s.isReady(e.i)
			planned := s.wasPlanned(e.i)
			s.clear(e.i)
			alive--
			if s.isStopped() {
				// One still starting when the stop came cannot drain (it
				// has no signal handler yet, or its start was cut): its
				// exit says nothing.
				if e.code != 0 && served {
					code = exitFailure
					logger.Error("a worker did not stop cleanly", "worker", e.i, "exit", e.err)
				}
				continue
			}
			if planned || s.ranStale(e.i) {
				// Stopped to run the config in force, or dead on one no
				// longer in force (a reload put another in force while it
				// started): its exits say nothing of the config it starts
				// with now, which it gets at once.
				if planned {
					logger.Info("a worker stopped to run the config the others run: starting it again", "worker", e.i)
				} else {
					logger.Warn("a worker exited on a config no longer in force: starting it again at once with the one in force", "worker", e.i, "exit", fmt.Sprint(e.err))
				}
				backoff[e.i] = 0
				i := e.i
				go func() { restart <- i }()
				continue
			}
			if e.ran >= workerSteady || backoff[e.i] == 0 {
				backoff[e.i] = time.Second
			} else {
				backoff[e.i] = min(2*backoff[e.i], workerRestartMax)
			}
			if e.err == nil { // someone else stopped it, cleanly
				logger.Warn("a worker stopped: starting it again", "worker", e.i, "exit", 0, "ran", e.ran.Round(time.Millisecond).String(), "in", backoff[e.i].String())
			} else {
				logger.Error("a worker exited: starting it again", "worker", e.i, "exit", e.err.Error(), "ran", e.ran.Round(time.Millisecond).String(), "in", backoff[e.i].String())
			}
			i := e.i
			pending[i] = time.AfterFunc(backoff[i], func() { restart <- i })
		case <-s.promoted:
			if s.isStopped() {
				continue
			}
			for i, t := range pending {
				if t == nil {
					continue
				}
				// Its crashes were on the last config: the next one on
				// this config waits 1 s, whether the timer had fired yet
				// or not.
				if t.Stop() {
					logger.Info("the config changed: starting a worker that was waiting out its crashes' backoff now", "worker", i, "backoff", backoff[i].String())
					go func() { restart <- i }()
				}
				pending[i], backoff[i] = nil, 0
			}
		case i := <-restart:
			pending[i] = nil
			if s.isStopped() {
				continue
			}
			ready, err := s.start(i, exits)
			if err != nil {
				logger.Error("a worker cannot be started: trying again", "worker", i, "error", err, "in", workerRestartMax)
				time.AfterFunc(workerRestartMax, func() { restart <- i })
				continue
			}
			alive++
			if admin != nil {
				admin.restarts.WithLabelValues(strconv.Itoa(i)).Inc()
			}
			p := s.proc(i)
			go s.follow(i, p, ready, func(addr string, ok bool) {
				if ok && s.markReady(i, p, addr) {
					logger.Info("worker serving again", "worker", i, "pid", p.Pid, "admin", addr)
				}
			})
		}
	}
	logger.Info("stopped", "workers", n)
	return code
}

// workerExit is a worker's end: its index, how long it ran and how.
type workerExit struct {
	i    int
	code int
	err  error
	ran  time.Duration
}

// workerExitError is a worker that exited during the first start.
type workerExitError struct{ i, code int }

func (e *workerExitError) Error() string {
	return fmt.Sprintf("worker %d exited with code %d during the start (its log above says why)", e.i, e.code)
}

// errStoppedStarting is a SIGTERM or SIGINT during the first start.
var errStoppedStarting = errors.New("stopped while the workers were starting")

// start starts worker i. The returned pipe yields a line when the worker
// serves; exits gets the worker's end.
func (s *supervisor) start(i int, exits chan<- workerExit) (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	// /proc/self/exe is the file this process runs, even where a new
	// version has replaced it on disk since: a restarted worker is of the
	// same build as the others.
	cmd := exec.Command("/proc/self/exe", s.args...)
	cmd.Args[0] = os.Args[0]
	cmd.Env = append(os.Environ(), envWorker+"="+strconv.Itoa(i), envWorkers+"="+strconv.Itoa(s.n), envWorkersAdmin+"="+s.admin)
	if s.hungAfter > 0 {
		cmd.Env = append(cmd.Env, envWorkerReload+"="+s.hungAfter.String())
	}
	if os.Getenv("GOMAXPROCS") == "" {
		cmd.Env = append(cmd.Env, "GOMAXPROCS=1")
	}
	cmd.Stdout, cmd.Stderr = s.stdout, s.stderr
	cmd.SysProcAttr = workerSysProcAttr()
	s.mu.Lock()
	defer s.mu.Unlock()
	// Under the lock: a round that settles meanwhile must see this worker
	// (procs[i]) with the config it starts with (runs[i]).
	conf, err := configFile(s.good)
	if err != nil {
		r.Close()
		w.Close()
		return nil, err
	}
	defer conf.Close()
	cmd.ExtraFiles = []*os.File{w, conf} // readyFD, configFD
	if s.stopped {
		r.Close()
		w.Close()
		return nil, errors.New("tracehop is stopping")
	}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, err
	}
	w.Close()
	s.procs[i], s.ready[i], s.runs[i] = cmd.Process, false, s.goodSum
	began := time.Now()
	go func() {
		err := cmd.Wait()
		code := 0
		if err != nil {
			code = -1
			var ee *exec.ExitError
			if errors.As(err, &ee) && ee.ExitCode() > 0 {
				code = ee.ExitCode()
			}
		}
		exits <- workerExit{i: i, code: code, err: err, ran: time.Since(began)}
	}()
	return r, nil
}

// awaitReady waits until worker i serves. It fails if worker i, or one
// started before it, exits first, and stops at SIGTERM or SIGINT; a SIGHUP
// meanwhile reloads the workers that serve (the others read the file as
// they start).
func (s *supervisor) awaitReady(i int, ready *os.File, exits chan workerExit, sigs chan os.Signal) error {
	type said struct {
		addr string
		ok   bool
	}
	line := make(chan said, 1)
	p := s.proc(i)
	go s.follow(i, p, ready, func(addr string, ok bool) { line <- said{addr, ok} })
	for {
		select {
		case l := <-line:
			if l.ok && s.markReady(i, p, l.addr) {
				return nil
			}
			line = nil // its exit follows
		case e := <-exits:
			s.clear(e.i)
			// A Ctrl-C to the process group reaches the workers too: one
			// may be gone before the supervisor's own signal is read.
			for len(sigs) > 0 {
				if sig := <-sigs; sig != syscall.SIGHUP {
					return fmt.Errorf("%w (%s)", errStoppedStarting, sig)
				}
			}
			return &workerExitError{i: e.i, code: e.code}
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				// Once every worker serves: a round now would meet
				// workers still starting with the config before it.
				s.mu.Lock()
				s.reloadLater = true
				s.mu.Unlock()
				continue
			}
			return fmt.Errorf("%w (%s)", errStoppedStarting, sig)
		}
	}
}

// readyPipe returns, in a worker, the pipe on which it tells its
// supervisor that it serves (nil elsewhere). It is made close-on-exec at
// once: a driver process started with it open would keep the pipe from
// ending when the worker dies, and its supervisor waiting.
func readyPipe() *os.File {
	if _, _, ok := workerIndex(); !ok {
		return nil
	}
	syscall.CloseOnExec(readyFD)
	return os.NewFile(readyFD, "ready")
}

// A worker tells its supervisor, a line each on its pipe: that it serves
// ("ready ADMIN", "off" for no admin server), then after each reload
// that its supervisor's SIGHUP asked for, its outcome ("reloaded SUM",
// the SHA-256 in hex of the file content it now runs, or "refused"). The
// content, not the config's hash: a config may say ${TRACEHOP_WORKER}.

// signalReady writes the line that says this worker serves, with where
// its admin server is.
func signalReady(f *os.File, admin string) {
	if f != nil {
		fmt.Fprintf(f, "ready %s\n", admin)
	}
}

// reportReload writes a reload's outcome: the content's SHA-256 it read.
func reportReload(f *os.File, err error, sum [32]byte) {
	switch {
	case f == nil:
	case err != nil:
		fmt.Fprintln(f, "refused")
	default:
		fmt.Fprintf(f, "reloaded %x\n", sum)
	}
}

// follow reads worker i's (the process p's) pipe until it ends: onReady
// gets its ready line (false when the pipe ended without one: the worker
// is gone), answer its reloads' outcomes.
func (s *supervisor) follow(i int, p *os.Process, r *os.File, onReady func(admin string, ok bool)) {
	defer r.Close()
	br := bufio.NewReader(r)
	line, err := br.ReadString('\n')
	admin, ok := strings.CutPrefix(strings.TrimSpace(line), "ready ")
	onReady(admin, ok && err == nil)
	for ok && err == nil {
		line, err = br.ReadString('\n')
		switch f := strings.Fields(line); {
		case err != nil:
		case len(f) == 2 && f[0] == "reloaded":
			s.answer(i, p, f[1])
		case len(f) == 1 && f[0] == "refused":
			s.answer(i, p, "")
		}
	}
}

// signal sends sig to every running worker, or only to those that serve:
// one still starting may not handle SIGHUP yet, whose default action
// would kill it. Any signal but SIGHUP also stops the supervisor from
// starting workers.
func (s *supervisor) signal(sig syscall.Signal, onlyReady bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sig != syscall.SIGHUP {
		s.stopped = true
	}
	for i, p := range s.procs {
		switch {
		case p == nil:
		case s.ready[i] || !onlyReady:
			p.Signal(sig)
		case sig == syscall.SIGHUP:
			s.hup[i] = true // it may have read the file already
		}
	}
}

func (s *supervisor) isStopped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopped
}

// markReady records that worker i, still the process p, serves, with its
// admin server on addr.
func (s *supervisor) markReady(i int, p *os.Process, addr string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.procs[i] != p {
		return false
	}
	s.ready[i], s.addrs[i] = true, addr
	switch {
	case s.round == nil && s.runs[i] != s.goodSum:
		// It started with the config a round since replaced.
		s.log.Error("a worker started with another config than the others run: stopping it, to start it again with theirs", "worker", i, "pid", p.Pid)
		s.planned[i] = true
		p.Signal(syscall.SIGTERM)
	case s.hup[i]:
		s.hup[i] = false
		p.Signal(syscall.SIGHUP)
		if r := s.round; r != nil && r.waiting[i] == p {
			r.askedAt[i] = time.Now()
		}
	}
	return true
}

// ranStale says whether worker i, which has just exited, ran another
// config than the one in force.
func (s *supervisor) ranStale(i int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.runs[i] != s.goodSum
}

// wasPlanned says, once, whether worker i was stopped on purpose.
func (s *supervisor) wasPlanned(i int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.planned[i]
	s.planned[i] = false
	return p
}

func (s *supervisor) isReady(i int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ready[i]
}

// states says of each worker where its admin server is, "starting" or
// "not running".
func (s *supervisor) states() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, s.n)
	for i := range out {
		switch {
		case s.ready[i]:
			out[i] = s.addrs[i]
		case s.procs[i] != nil:
			out[i] = "starting"
		default:
			out[i] = "not running"
		}
	}
	return out
}

// admins returns each worker's admin address while it serves, "" where
// it does not.
func (s *supervisor) admins() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, s.n)
	for i := range out {
		if s.ready[i] && s.addrs[i] != "off" {
			out[i] = s.addrs[i]
		}
	}
	return out
}

// readyAdmins returns the admin addresses of the workers that serve.
func (s *supervisor) readyAdmins() []string {
	return slices.DeleteFunc(s.admins(), func(a string) bool { return a == "" })
}

func (s *supervisor) clear(i int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.procs[i], s.ready[i], s.addrs[i], s.hup[i] = nil, false, "", false
	if r := s.round; r != nil && r.waiting[i] != nil {
		delete(r.waiting, i) // it starts again with the config in force
		s.settle()
	}
}

func (s *supervisor) proc(i int) *os.Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.procs[i]
}

// watchdog kills a worker whose admin server has not answered /healthz
// for hungAfter (asked every sixth of it): a worker stuck that way still
// gets its share of new connections from the kernel, which it never
// serves. The restart follows as for any worker that dies.
func (s *supervisor) watchdog(ctx context.Context, a *supervisorAdmin, hungAfter time.Duration) {
	every := hungAfter / 6
	missed := make([]time.Time, s.n) // since when worker i has not answered; zero while it does
	who := make([]*os.Process, s.n)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if s.isStopped() {
			return
		}
		admins := s.admins()
		var wg sync.WaitGroup
		answered := make([]bool, s.n)
		for i, addr := range admins {
			if addr == "" {
				continue
			}
			wg.Go(func() {
				// A second at least: a worker busy for a moment answers late, not never.
				pctx, cancel := context.WithTimeout(ctx, max(time.Second, min(every, 2*time.Second)))
				defer cancel()
				if resp, err := a.get(pctx, addr, "/healthz", ""); err == nil {
					resp.Body.Close()
					answered[i] = resp.StatusCode == http.StatusOK
				}
			})
		}
		wg.Wait()
		now := time.Now()
		for i, addr := range admins {
			p := s.proc(i)
			if addr == "" || p != who[i] || answered[i] {
				who[i], missed[i] = p, time.Time{} // not serving, another process, or fine
				if addr != "" && !answered[i] {
					missed[i] = now
				}
				continue
			}
			if missed[i].IsZero() {
				missed[i] = now
				continue
			}
			if since := now.Sub(missed[i]); since >= hungAfter {
				s.log.Error("a worker has not answered its admin server's /healthz: killing it (SIGQUIT: its goroutines' stacks follow; SIGKILL 2s later), to start it again", "worker", i, "pid", p.Pid, "for", since.Round(time.Millisecond).String(), "worker_timeout", hungAfter.String())
				s.kill(i, p)
				missed[i] = time.Time{}
			}
		}
	}
}

func (s *supervisor) pid(i int) int {
	if p := s.proc(i); p != nil {
		return p.Pid
	}
	return 0
}

// waitAll waits for every running worker to exit; a stop signal
// meanwhile kills them.
func (s *supervisor) waitAll(exits chan workerExit, sigs chan os.Signal) {
	for {
		s.mu.Lock()
		n := 0
		for _, p := range s.procs {
			if p != nil {
				n++
			}
		}
		s.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case e := <-exits:
			s.clear(e.i)
		case sig := <-sigs:
			if sig != syscall.SIGHUP {
				s.log.Warn("stopping the workers at once (SIGKILL): a second signal", "signal", sig.String())
				s.signal(syscall.SIGKILL, false)
			}
		}
	}
}

// workerReloadTimeout is how long this process's reload may take: its
// supervisor's -worker-timeout for a worker, reloadTimeout otherwise.
func workerReloadTimeout() time.Duration {
	if d, err := time.ParseDuration(os.Getenv(envWorkerReload)); err == nil && d > 0 {
		return min(d, reloadTimeout)
	}
	return reloadTimeout
}
