package drivertest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/core/driverhost"
	"github.com/tracehop/tracehop/core/wire"
	"github.com/tracehop/tracehop/sdk"
)

// T is what a check, a back end and a reference receiver need of whoever
// runs them: *testing.T and *testing.B give it (Run's checks are
// subtests), and so does Check's runner, which records each check's
// outcome in a Report instead of failing a test. Fatal and Skip end the
// check, as in a test.
type T interface {
	Helper()
	Cleanup(f func())
	Log(args ...any)
	Logf(format string, args ...any)
	Error(args ...any)
	Errorf(format string, args ...any)
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Skip(args ...any)
	TempDir() string
}

var (
	_ T = (*testing.T)(nil)
	_ T = (*testing.B)(nil)
	_ T = (*checkT)(nil)
)

// DefaultBurstSpans is the size of the burst check unless the Suite or
// Target says otherwise.
const DefaultBurstSpans = 10000

// run runs f as the named subcheck of t: a subtest under Run, a line of
// the Report under Check.
func run(t T, name string, f func(t T)) {
	switch p := t.(type) {
	case *testing.T:
		p.Run(name, func(t *testing.T) { f(t) })
	case *checkT:
		p.run(name, f)
	default:
		panic(fmt.Sprintf("drivertest: a check runs under *testing.T or Check, not %T", t))
	}
}

// viaPlugin starts the driver executable bin through tracehop's host
// (core/driverhost), as tracehop does; its log goes to logger, or to the
// check's log when logger is nil. transport, when not nil, is told what
// each start agreed on (Process.Transport).
func viaPlugin(name, bin string, logger *slog.Logger, transport func(string)) starter {
	return func(t T, config map[string]any) (sdk.Driver, sdk.Capabilities, error) {
		l := logger
		if l == nil {
			l = TestLogger(t)
		}
		d, err := driverhost.Start(context.Background(), driverhost.Spec{Name: name, Path: bin, Config: mustJSON(t, config)},
			driverhost.Options{Logger: l, Host: core.HostInfo{Version: "drivertest"}})
		if err != nil {
			return nil, sdk.Capabilities{}, err
		}
		t.Cleanup(func() { d.Shutdown(context.Background()) })
		if transport != nil {
			transport(d.Transport())
		}
		return d, d.Capabilities(), nil
	}
}

// Target is a driver executable for Check, and the back end it reports to.
type Target struct {
	// Name is the driver's name (tracing.driver.name).
	Name string
	// Path is the driver's executable, in any language: Check runs it
	// through tracehop's host (core/driverhost), as tracehop does.
	Path string
	// Backend starts a fresh back end for one check, stopped with
	// t.Cleanup; its Config is the driver's config pointing at it. The
	// reference receivers give it (otlpreceiver, zipkinreceiver).
	Backend func(t T) Backend
	// Invalid lists configs the driver must refuse, each naming its key.
	Invalid []InvalidConfig
	// BurstSpans is the size of the burst check (default
	// DefaultBurstSpans).
	BurstSpans int
	// NoFailures, when the back end cannot fail, says why (Suite.NoFailures).
	NoFailures string
	// Logger takes the host's log of the driver process (its standard
	// error, restarts); nil: each check's log in the Report.
	Logger *slog.Logger
}

// Result is the outcome of one check (or subcheck: "Failures/slow").
type Result struct {
	// Name is the check's path, as Run names its subtest under Plugin.
	Name string
	// Failed and Skipped say how it ended; neither: it passed.
	Failed, Skipped bool
	// Problems are its errors, each saying what is wrong; for a skipped
	// check, why.
	Problems []string
	// Log is what it logged: the back end's notes, and the driver's log
	// when Target.Logger is nil.
	Log []string
	// Took is how long it ran.
	Took time.Duration
}

// Report is what Check found: one Result per check and subcheck, in the
// order they ran.
type Report struct {
	Results []Result
	// Transports are what the driver's starts agreed on at Configure, each
	// once ("shm": it took the span ring, though a batch that does not fit
	// there still comes inside Export; "grpc": every batch inside Export),
	// so that an author sees whether the host took their ring reader.
	Transports []string
}

// OK reports whether no check failed.
func (r Report) OK() bool {
	for _, res := range r.Results {
		if res.Failed {
			return false
		}
	}
	return true
}

// Write prints the report for a person: one line per check (PASS, FAIL or
// SKIP, its name and how long it took), each problem indented below it,
// the check's log when verbose (otherwise the last lines above debug level
// of a failed check's log), and a summary line.
func (r Report) Write(w io.Writer, verbose bool) error {
	var b strings.Builder
	var passed, failed, skipped int
	for _, res := range r.Results {
		verdict := "PASS"
		switch {
		case res.Failed:
			verdict, failed = "FAIL", failed+1
		case res.Skipped:
			verdict, skipped = "SKIP", skipped+1
		default:
			passed++
		}
		fmt.Fprintf(&b, "%s  %s (%s)\n", verdict, res.Name, res.Took.Round(time.Millisecond))
		for _, p := range res.Problems {
			fmt.Fprintf(&b, "      %s\n", strings.ReplaceAll(p, "\n", "\n      "))
		}
		log := res.Log
		if !verbose {
			log = nil
			if res.Failed {
				for _, l := range res.Log {
					if !strings.Contains(l, " level=DEBUG ") {
						log = append(log, l)
					}
				}
				log = log[max(0, len(log)-failedLogLines):]
			}
		}
		for _, l := range log {
			fmt.Fprintf(&b, "      log: %s\n", l)
		}
	}
	for _, tr := range r.Transports {
		switch tr {
		case wire.TransportShm:
			b.WriteString("transport: shm (the driver took the span ring: batches come through shared memory, protocol section 7)\n")
		default:
			fmt.Fprintf(&b, "transport: %s (batches come inside Export)\n", tr)
		}
	}
	fmt.Fprintf(&b, "%d passed, %d failed, %d skipped\n", passed, failed, skipped)
	_, err := io.WriteString(w, b.String())
	return err
}

// failedLogLines is how much of a failed check's log Report.Write shows
// when not verbose: the driver's last words, as the host quotes them.
const failedLogLines = 12

// Check runs the kit's checks (CheckNames, the same code as Run's Plugin
// half) on the driver executable tg.Path through tracehop's host, and
// reports each one instead of failing a test: what `tracehop driver
// check` prints. Every check bounds its own time (a minute or so for the
// whole kit against a local receiver).
func Check(tg Target) Report {
	var rep Report
	root := &checkT{report: &rep}
	var missing []string
	for _, f := range []struct {
		name string
		nil  bool
	}{{"Name", tg.Name == ""}, {"Path", tg.Path == ""}, {"Backend", tg.Backend == nil}, {"Invalid", len(tg.Invalid) == 0}} {
		if f.nil {
			missing = append(missing, "Target."+f.name)
		}
	}
	if tg.Backend != nil {
		// One back end, to check what every check will need of it.
		probe := &checkT{report: &Report{}}
		probe.run("Backend", func(t T) { missing = append(missing, backendLacks(tg.Backend(t), tg.NoFailures, "Target")...) })
		if r := probe.report.Results[0]; r.Failed {
			missing = append(missing, "a Backend that starts ("+strings.Join(r.Problems, "; ")+")")
		}
	}
	if len(missing) > 0 {
		rep.Results = append(rep.Results, Result{Name: "Target", Failed: true, Problems: []string{"drivertest: the target lacks " + strings.Join(missing, ", ")}})
		return rep
	}
	if st, err := os.Stat(tg.Path); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		why := "not an executable file"
		if err != nil {
			why = err.Error()
		}
		rep.Results = append(rep.Results, Result{Name: "Target", Failed: true, Problems: []string{fmt.Sprintf("driver %s: %s", tg.Path, why)}})
		return rep
	}
	if tg.BurstSpans == 0 {
		tg.BurstSpans = DefaultBurstSpans
	}
	k := kit{name: tg.Name, backend: tg.Backend, invalid: tg.Invalid, burstSpans: tg.BurstSpans, noFailures: tg.NoFailures}
	var mu sync.Mutex
	seen := func(tr string) {
		mu.Lock()
		defer mu.Unlock()
		if !slices.Contains(rep.Transports, tr) {
			rep.Transports = append(rep.Transports, tr)
		}
	}
	runChecks(root, k, viaPlugin(tg.Name, tg.Path, tg.Logger, seen))
	return rep
}

// checkT runs one check for Check: a T that records instead of failing a
// test. Fatal and Skip end the check's goroutine (runtime.Goexit), as
// they end a test's.
type checkT struct {
	name   string
	report *Report
	parent *checkT

	mu       sync.Mutex
	failed   bool
	skipped  bool
	problems []string
	log      []string
	cleanups []func()
	subs     int
}

func (c *checkT) Helper() {}

func (c *checkT) Cleanup(f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cleanups = append(c.cleanups, f)
}

func (c *checkT) Log(args ...any) { c.addLog(fmt.Sprintln(args...)) }

func (c *checkT) Logf(format string, args ...any) { c.addLog(fmt.Sprintf(format, args...)) }

func (c *checkT) addLog(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.log = append(c.log, strings.TrimRight(s, "\n"))
}

func (c *checkT) Error(args ...any) { c.fail(fmt.Sprintln(args...)) }

func (c *checkT) Errorf(format string, args ...any) { c.fail(fmt.Sprintf(format, args...)) }

func (c *checkT) Fatal(args ...any) {
	c.fail(fmt.Sprintln(args...))
	runtime.Goexit()
}

func (c *checkT) Fatalf(format string, args ...any) {
	c.fail(fmt.Sprintf(format, args...))
	runtime.Goexit()
}

func (c *checkT) Skip(args ...any) {
	c.mu.Lock()
	c.skipped = true
	c.problems = append(c.problems, strings.TrimRight(fmt.Sprintln(args...), "\n"))
	c.mu.Unlock()
	runtime.Goexit()
}

func (c *checkT) fail(s string) {
	c.mu.Lock()
	c.failed = true
	c.problems = append(c.problems, strings.TrimRight(s, "\n"))
	c.mu.Unlock()
	for p := c.parent; p != nil; p = p.parent {
		p.mu.Lock()
		p.failed = true
		p.mu.Unlock()
	}
}

func (c *checkT) TempDir() string {
	dir, err := os.MkdirTemp("", "tracehop-driver-check-")
	if err != nil {
		c.Fatalf("TempDir: %v", err)
	}
	c.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// run runs f as a subcheck in a goroutine of its own (so that Fatal ends
// it alone), then its cleanups, last first, and records its Result: a
// check with subchecks is reported only by what it says itself.
func (c *checkT) run(name string, f func(t T)) {
	full := name
	if c.name != "" {
		full = c.name + "/" + name
	}
	sub := &checkT{name: full, report: c.report, parent: c}
	c.mu.Lock()
	c.subs++
	c.mu.Unlock()
	i := len(c.report.Results)
	c.report.Results = append(c.report.Results, Result{Name: full})
	t0 := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			for i := len(sub.cleanups) - 1; i >= 0; i-- {
				sub.cleanups[i]()
			}
		}()
		f(sub)
	}()
	<-done
	res := Result{Name: full, Failed: sub.failed, Skipped: sub.skipped && !sub.failed, Problems: sub.problems, Log: sub.log, Took: time.Since(t0)}
	if sub.subs > 0 && len(sub.problems) == 0 {
		// Reported by its subchecks: drop its own line.
		c.report.Results = append(c.report.Results[:i], c.report.Results[i+1:]...)
		return
	}
	c.report.Results[i] = res
}
