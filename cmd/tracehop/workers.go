package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tracehop/tracehop/proxy/config"
)

// One process per core, supervised: `tracehop run -workers N` starts N
// worker processes of the same command, each of GOMAXPROCS 1, on the same
// listener addresses (reuse_port, so the kernel spreads new connections
// over them, as over nginx's workers), and stays as their supervisor. It
// serves nothing itself: it forwards SIGHUP (reload) and SIGTERM/SIGINT
// (drain and stop) to every worker, and starts again a worker that dies.
//
// Each worker is a whole tracehop (its own driver process, span queue and
// limits); worker i's admin server is on admin.address's port + i, so that
// each can be scraped and probed on its own. A worker knows it is one by
// two environment variables, and tells its supervisor that it serves by
// writing a line on the pipe it got as descriptor 3.

// Environment variables from the supervisor to a worker.
const (
	envWorker  = "TRACEHOP_WORKER"  // this worker's index, 0 to N-1
	envWorkers = "TRACEHOP_WORKERS" // N
)

// workerRestartMax bounds the wait before a worker that keeps dying is
// started again; the wait doubles from a second, and starts over once a
// worker has served for workerSteady.
const (
	workerRestartMax = 30 * time.Second
	workerSteady     = time.Minute
)

// workersFlag is -workers: a count, or auto for GOMAXPROCS's default
// (the CPUs this process may use, its cgroup's limit included).
type workersFlag struct{ n int }

func (w *workersFlag) String() string { return strconv.Itoa(w.n) }

func (w *workersFlag) Set(s string) error {
	if s == "auto" {
		w.n = runtime.GOMAXPROCS(0)
		return nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 256 {
		return fmt.Errorf("want a number of processes from 1 to 256, or auto (one per CPU tracehop may use), got %q", s)
	}
	w.n = n
	return nil
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

// workerAdmin returns the admin address of worker i: addr's port + i.
// Port 0 (any free port) and "off" stay as they are.
func workerAdmin(addr string, i int) (string, error) {
	if addr == "off" || i == 0 {
		return addr, nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return "", fmt.Errorf("admin.address %s: the port is not a number", addr)
	}
	if p == 0 {
		return addr, nil
	}
	if p+i > 65535 {
		return "", fmt.Errorf("admin.address %s: worker %d's admin server would be on port %d, past 65535: lower the port", addr, i, p+i)
	}
	return net.JoinHostPort(host, strconv.Itoa(p+i)), nil
}

// checkWorkers says what in cfg keeps it from running as n workers.
func checkWorkers(cfg *config.Config, n int) error {
	if runtime.GOOS != "linux" {
		return fmt.Errorf("-workers %d needs Linux, whose SO_REUSEPORT spreads connections over processes: run one tracehop (GOMAXPROCS sets its threads)", n)
	}
	var problems []string
	for i, l := range cfg.Listeners {
		if !l.ReusePort {
			key := fmt.Sprintf("listeners[%d]", i)
			file, line := cfg.Place(key)
			problems = append(problems, fmt.Sprintf("%s:%d: %s (%q, %s): set reuse_port: true, so that the %d workers can share its address", file, line, key, l.Name, l.Address, n))
		}
	}
	if _, err := workerAdmin(cfg.Admin.Address, n-1); err != nil {
		file, line := cfg.Place("admin.address")
		problems = append(problems, fmt.Sprintf("%s:%d: %v", file, line, err))
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "\n"))
	}
	return nil
}

// workerArgs returns the run command line of a worker: the flags given to
// the supervisor, but -workers.
func workerArgs(fs *flag.FlagSet) []string {
	args := []string{"run"}
	fs.Visit(func(f *flag.Flag) {
		if f.Name != "workers" {
			args = append(args, "-"+f.Name+"="+f.Value.String())
		}
	})
	return args
}

// supervisor runs and watches the workers.
type supervisor struct {
	exe            string
	args           []string
	n              int
	stdout, stderr io.Writer
	log            *slog.Logger

	mu      sync.Mutex
	procs   []*os.Process // nil where a worker is not running
	stopped bool          // SIGTERM or SIGINT arrived: start nothing more
}

// superviseWorkers is `tracehop run -workers N` with N > 1.
func superviseWorkers(fs *flag.FlagSet, file string, n int, logger *slog.Logger, stdout, stderr io.Writer) int {
	cfg, err := config.Load(file)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitInvalid
	}
	if err := checkWorkers(cfg, n); err != nil {
		fmt.Fprintln(stderr, err)
		return exitInvalid
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(stderr, "tracehop run: cannot find its own executable to start the workers:", err)
		return exitFailure
	}
	s := &supervisor{exe: exe, args: workerArgs(fs), n: n, stdout: stdout, stderr: stderr, log: logger, procs: make([]*os.Process, n)}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)

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
			var we *workerExitError
			code := exitFailure
			switch {
			case errors.As(err, &we) && we.code > 0:
				code = we.code
			case errors.Is(err, errStoppedStarting):
				code = exitOK
			}
			logger.Error("a worker did not start: stopping the others", "worker", i, "error", err)
			s.signalAll(syscall.SIGTERM)
			s.waitAll(exits)
			return code
		}
	}
	for i, a := range s.adminAddrs(cfg.Admin.Address) {
		logger.Info("worker serving", "worker", i, "pid", s.pid(i), "admin", a)
	}
	logger.Info("tracehop is running as a supervisor; stop it with Ctrl-C or SIGTERM, reload every worker's config with SIGHUP", "workers", n, "pid", os.Getpid())

	backoff := make([]time.Duration, n)
	restart := make(chan int, n)
	code, alive := exitOK, n
	for !s.isStopped() || alive > 0 {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				logger.Info("SIGHUP: every worker reloads its config")
				s.signalAll(sig.(syscall.Signal))
				continue
			}
			// A second one is forwarded too: a worker that has begun
			// draining stops at once on it, as tracehop does.
			if !s.isStopped() {
				logger.Info("shutting down: every worker drains its requests and flushes its spans", "signal", sig.String())
			}
			s.signalAll(syscall.SIGTERM)
		case e := <-exits:
			s.clear(e.i)
			alive--
			if s.isStopped() {
				if e.code != 0 {
					code = exitFailure
					logger.Error("a worker did not stop cleanly", "worker", e.i, "exit", e.err)
				}
				continue
			}
			if e.ran >= workerSteady || backoff[e.i] == 0 {
				backoff[e.i] = time.Second
			} else {
				backoff[e.i] = min(2*backoff[e.i], workerRestartMax)
			}
			logger.Error("a worker exited: starting it again", "worker", e.i, "exit", e.err, "ran", e.ran.Round(time.Millisecond), "in", backoff[e.i])
			i := e.i
			time.AfterFunc(backoff[e.i], func() { restart <- i })
		case i := <-restart:
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
			pid := s.pid(i)
			go func() {
				defer ready.Close()
				var b [16]byte
				if n, _ := ready.Read(b[:]); n > 0 {
					logger.Info("worker serving again", "worker", i, "pid", pid)
				}
			}()
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

// workerExitError is a worker that exited before it served.
type workerExitError struct{ code int }

func (e *workerExitError) Error() string {
	return fmt.Sprintf("the worker exited with code %d before it served (its log above says why)", e.code)
}

// start starts worker i. The returned pipe yields a line when the worker
// serves; exits gets the worker's end.
func (s *supervisor) start(i int, exits chan<- workerExit) (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(s.exe, s.args...)
	cmd.Env = append(os.Environ(), envWorker+"="+strconv.Itoa(i), envWorkers+"="+strconv.Itoa(s.n))
	if os.Getenv("GOMAXPROCS") == "" {
		cmd.Env = append(cmd.Env, "GOMAXPROCS=1")
	}
	cmd.Stdout, cmd.Stderr = s.stdout, s.stderr
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = workerSysProcAttr()
	s.mu.Lock()
	defer s.mu.Unlock()
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
	s.procs[i] = cmd.Process
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

// awaitReady waits until worker i serves, or fails if it exits first. A
// SIGTERM or SIGINT meanwhile stops the start.
func (s *supervisor) awaitReady(i int, ready *os.File, exits chan workerExit, sigs chan os.Signal) error {
	line := make(chan bool, 1)
	go func() {
		defer ready.Close()
		var b [16]byte
		n, _ := ready.Read(b[:]) // EOF without a line: the worker died
		line <- n > 0
	}()
	for {
		select {
		case ok := <-line:
			if ok {
				return nil
			}
			e := <-exits
			s.clear(e.i)
			return &workerExitError{code: e.code}
		case sig := <-sigs:
			if sig != syscall.SIGHUP { // a reload during the start: each worker loads the file as it starts
				return fmt.Errorf("%w (%s)", errStoppedStarting, sig)
			}
		}
	}
}

// errStoppedStarting is a SIGTERM or SIGINT during the first start.
var errStoppedStarting = errors.New("stopped while the workers were starting")

// signalReady tells the supervisor, if there is one, that this worker
// serves.
func signalReady() {
	if _, _, ok := workerIndex(); !ok {
		return
	}
	f := os.NewFile(3, "ready")
	if f == nil {
		return
	}
	f.Write([]byte("ready\n"))
	f.Close()
}

// signalAll sends sig to every running worker; any signal but SIGHUP
// also stops the supervisor from starting workers.
func (s *supervisor) signalAll(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sig != syscall.SIGHUP {
		s.stopped = true
	}
	for _, p := range s.procs {
		if p != nil {
			p.Signal(sig)
		}
	}
}

func (s *supervisor) isStopped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopped
}

func (s *supervisor) clear(i int) {
	s.mu.Lock()
	s.procs[i] = nil
	s.mu.Unlock()
}

func (s *supervisor) pid(i int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.procs[i]; p != nil {
		return p.Pid
	}
	return 0
}

// waitAll waits for every running worker to exit.
func (s *supervisor) waitAll(exits chan workerExit) {
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
		e := <-exits
		s.clear(e.i)
	}
}

func (s *supervisor) adminAddrs(addr string) []string {
	out := make([]string, s.n)
	for i := range out {
		out[i], _ = workerAdmin(addr, i)
	}
	return out
}
