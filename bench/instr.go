package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The instruction count per request (-instructions, make bench-instr).
//
// On these shared machines CPU time per request moves by a quarter from
// one round to the next, more than most changes to the hot path: a change
// of 0.3 µs cannot be seen in it. So tracehop and its driver also run
// under valgrind's callgrind, which counts the instructions each process
// runs: the same for the same binaries and requests whatever else the
// machine does. It leaves out what an instruction count cannot see (the
// kernel's side of a syscall, cache misses), so it stands beside the CPU
// time of make bench, not in its place: the one to compare two builds by,
// the other to compare with nginx and HAProxy.
//
// Each configuration runs alone: tracehop and its driver process under
// callgrind (the driver through a script in a plugin directory of its
// own, which starts it under valgrind), the upstream and the receiver
// natively. After a warm-up, each round zeroes both processes' counters,
// sends n requests on one keep-alive connection, waits for the last batch
// to reach the driver, and has both processes dump. What the idle
// processes run in that time (timers, the Go runtime's monitor) is
// measured once, alone, and taken off.

// instrResult is one configuration's instructions per request.
type instrResult struct {
	Name   string    `json:"name"`
	Desc   string    `json:"description"`
	Host   []float64 `json:"tracehop_per_request"` // by round
	Driver []float64 `json:"driver_per_request,omitempty"`
	// Sched is the part of Host and Driver in Go's scheduler (schedFiles),
	// by round: the part that moves with timing.
	Sched []float64 `json:"scheduler_per_request"`
	// Idle is what the processes ran per second with no request, taken
	// off every round.
	Idle float64 `json:"idle_per_second"`
}

func (r *instrResult) total() float64 {
	t := medianOf(r.Host)
	if len(r.Driver) > 0 {
		t += medianOf(r.Driver)
	}
	return t
}

// work is the median round's instructions outside Go's scheduler, both
// processes: the figure to compare two builds by.
func (r *instrResult) work() float64 {
	w := make([]float64, len(r.Host))
	for i := range r.Host {
		w[i] = r.Host[i] - r.Sched[i]
		if len(r.Driver) > i {
			w[i] += r.Driver[i]
		}
	}
	return medianOf(w)
}

type instrRun struct {
	Date     time.Time         `json:"date"`
	Machine  map[string]string `json:"machine"`
	Requests int               `json:"requests_per_round"`
	Rounds   int               `json:"rounds"`
	Configs  []*instrResult    `json:"configs"`
}

// instrConfig is a configuration measured: a driver and its config, or
// none for tracing off.
type instrConfig struct {
	name, desc, driver string
	config             func(sink string) string
}

var instrConfigs = []instrConfig{
	{"tracehop", "tracing off", "", nil},
	{"tracehop-otlp", "otlp driver, HTTP/protobuf, into a receiver that counts", "otlp", otlpConfig},
	{"tracehop-file", "file driver to /dev/null", "file", func(string) string { return fileConfig }},
}

func runInstr(ctx context.Context, o options) error {
	valgrind, control := lookTool("valgrind", ""), lookTool("callgrind_control", "")
	fortio := lookTool("fortio", o.tools)
	if valgrind == "" || control == "" || fortio == "" {
		return errors.New("valgrind and fortio are needed: run `make bench-deps` (apt valgrind, go install fortio)")
	}
	if o.requests < 2 || o.rounds < 1 {
		return fmt.Errorf("-n must be at least 2 and -rounds at least 1 (got %d and %d)", o.requests, o.rounds)
	}
	var known []string
	matched := false
	for _, c := range instrConfigs {
		known = append(known, c.name)
		matched = matched || o.only == "" || strings.Contains(","+o.only+",", ","+c.name+",")
	}
	if !matched {
		return fmt.Errorf("-only %s names no configuration -instructions runs: it runs %s", o.only, strings.Join(known, ", "))
	}
	builds := []struct{ suffix, bin string }{{"", o.bin}}
	if o.baseline != "" {
		builds = append(builds, struct{ suffix, bin string }{"@base", o.baseline})
	}
	for i := range builds {
		bin, err := filepath.Abs(builds[i].bin)
		if err != nil {
			return err
		}
		if !fileExists(filepath.Join(bin, "tracehop")) {
			return fmt.Errorf("no tracehop in %s: run `make build` first", bin)
		}
		builds[i].bin = bin
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "tracehop-instr-")
	if err != nil {
		return err
	}
	fmt.Printf("bench: instructions per request under callgrind; work files, logs and per-function counts in %s\n", dir)
	port := o.basePort
	next := func() string { port++; return fmt.Sprintf("127.0.0.1:%d", port-1) }
	upstreamAddr, sinkAddr := next(), next()
	var helpers []*proc
	defer func() {
		for _, p := range helpers {
			p.stop()
		}
	}()
	if _, _, err := startHelpers(&helpers, dir, self, upstreamAddr, sinkAddr); err != nil {
		return err
	}

	run := instrRun{Date: time.Now().UTC(), Machine: machine(), Requests: o.requests, Rounds: o.rounds}
	for _, c := range instrConfigs {
		if o.only != "" && !strings.Contains(","+o.only+",", ","+c.name+",") {
			continue
		}
		for _, b := range builds {
			m := &instrMeasure{dir: dir, valgrind: valgrind, control: control, fortio: fortio, o: o,
				name: c.name + b.suffix, bin: b.bin, upstream: upstreamAddr, addr: next(), admin: next()}
			if c.driver != "" {
				m.driver, m.config = c.driver, c.config(sinkAddr)
			}
			r, err := m.run(ctx)
			if err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
			r.Desc = c.desc
			if b.suffix != "" {
				r.Desc += " (baseline build)"
			}
			run.Configs = append(run.Configs, r)
		}
	}
	b, err := json.MarshalIndent(run, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	host, _ := os.Hostname()
	path := filepath.Join(o.out, run.Date.Format("2006-01-02T150405Z")+"-"+host+"-instructions.json")
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return err
	}
	if err := run.render(o.readme); err != nil {
		return err
	}
	fmt.Printf("\nbench: results written to %s\n", path)
	return nil
}

// render prints the run's table and, when readme is set, writes it there
// between the bench-instructions markers.
func (r *instrRun) render(readme string) error {
	return printTable(r.table(), readme, "bench-instructions", "instruction")
}

// printTable prints a table and, when readme is set, writes it there
// between the markers <!-- mark:begin --> and <!-- mark:end -->, saying so
// as "what table rewritten": what -instructions and -syscalls do after a
// run, and -render again from its JSON.
func printTable(table, readme, mark, what string) error {
	fmt.Println()
	fmt.Print(table)
	if readme == "" {
		return nil
	}
	if err := replaceBetween(readme, "<!-- "+mark+":begin -->", "<!-- "+mark+":end -->", table); err != nil {
		return err
	}
	fmt.Printf("bench: %s's %s table rewritten\n", readme, what)
	return nil
}

// instrMeasure is one configuration's run under callgrind.
type instrMeasure struct {
	dir, valgrind, control, fortio string
	o                              options
	name, bin                      string
	upstream, addr, admin          string
	driver, config                 string // "" when tracing is off
}

func (m *instrMeasure) out(who string) string {
	return filepath.Join(m.dir, m.name+"-"+who+".callgrind")
}

// instrGODEBUG is the GODEBUG of every process run under callgrind (see
// instrMeasure.run).
const instrGODEBUG = "asyncpreemptoff=1,cpu.rdtscp=off"

func (m *instrMeasure) run(ctx context.Context) (*instrResult, error) {
	// GODEBUG=asyncpreemptoff=1: callgrind (3.19) fails an assertion on
	// the signals Go preempts goroutines with. cpu.rdtscp=off: on a CPU
	// whose CPUID says RDTSCP (AMD EPYC here), Go's cputicks uses it and
	// valgrind 3.19 does not decode it (SIGILL in the driver, and then the
	// host's callgrind fails an assertion on the SIGCHLD).
	cg := func(who string) []string {
		return []string{m.valgrind, "--tool=callgrind", "--dump-instr=no", "--cache-sim=no", "--branch-sim=no",
			"--callgrind-out-file=" + m.out(who) + ".%p",
			"--log-file=" + filepath.Join(m.dir, m.name+"-"+who+".valgrind.log")}
	}
	tracing := ""
	if m.driver != "" {
		plugins := filepath.Join(m.dir, m.name+"-plugins")
		if err := os.MkdirAll(plugins, 0o755); err != nil {
			return nil, err
		}
		var script strings.Builder
		script.WriteString("#!/bin/sh\nGODEBUG=" + instrGODEBUG + " exec")
		for _, a := range append(cg("driver"), filepath.Join(m.bin, "tracehop-driver-"+m.driver)) {
			script.WriteString(" '" + strings.ReplaceAll(a, "'", `'\''`) + "'")
		}
		script.WriteString(` "$@"` + "\n")
		if err := os.WriteFile(filepath.Join(plugins, "tracehop-driver-"+m.driver), []byte(script.String()), 0o755); err != nil {
			return nil, err
		}
		tracing = tracingYAML(plugins, m.driver, "", "", m.config)
	}
	cfg := filepath.Join(m.dir, m.name+".yaml")
	if err := os.WriteFile(cfg, []byte(tracehopYAML(m.admin, m.addr, "", m.upstream, tracing)), 0o644); err != nil {
		return nil, err
	}
	argv := append(cg("tracehop"), filepath.Join(m.bin, "tracehop"), "run", "-c", cfg, "-access-log=false", "-log-level", "warn")
	if err := addrFree(m.addr); err != nil {
		return nil, err
	}
	p, err := start(m.dir, m.name, []string{"GOMAXPROCS=1", "GODEBUG=" + instrGODEBUG}, argv...)
	if err != nil {
		return nil, err
	}
	defer p.stop()
	if err := p.waitListening(m.addr, 120*time.Second); err != nil {
		return nil, err
	}
	if err := waitReady(ctx, "http://"+m.admin+"/ready"); err != nil {
		return nil, fmt.Errorf("%w (log: %s)", err, p.log)
	}
	pids, err := m.pids(p.pid())
	if err != nil {
		return nil, err
	}
	fmt.Printf("bench: %-16s under callgrind (pids %v): warm-up, idle, %d rounds of %d requests\n", m.name, pids, m.o.rounds, m.o.requests)
	url := "http://" + m.addr + "/"
	want := m.exported() // spans the driver has acknowledged so far
	if err := runFortioN(ctx, m.fortio, url, m.o.requests/2); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	// The idle window must not see the warm-up's last batch.
	want += int64(m.o.requests / 2)
	if err := m.waitExported(want); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	// Idle: what each process runs per second with no request.
	r := &instrResult{Name: m.name}
	counts, err := m.window(pids, func() error { time.Sleep(2 * time.Second); return nil })
	if err != nil {
		return nil, err
	}
	idle := make([]float64, len(pids))
	idleSched := make([]float64, len(pids))
	for i, c := range counts {
		idle[i], idleSched[i] = float64(c.total)/c.secs, float64(c.sched)/c.secs
		r.Idle += idle[i]
	}
	// settle is how long a round waits after its last request for the
	// last batch to reach the driver: inside the window, where nothing may
	// ask tracehop how far it got. It grows when a round was too short,
	// and that round is run again. (The check comes after the dumps, so a
	// batch acknowledged between the driver's dump and the check passes:
	// with settle five times the exporter's 200 ms batch delay, that
	// would take a batch delayed by most of a second.)
	settle := time.Second
	for round := 1; round <= m.o.rounds; {
		counts, err := m.window(pids, func() error {
			if err := runFortioN(ctx, m.fortio, url, m.o.requests); err != nil {
				return err
			}
			time.Sleep(settle)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("round %d: %w", round, err)
		}
		if m.driver != "" {
			want += int64(m.o.requests)
			if got := m.exported(); got != want {
				if settle >= 16*time.Second {
					return nil, fmt.Errorf("round %d: the driver acknowledged %d spans of %d within %s of the last request (logs in %s)", round, got-want+int64(m.o.requests), m.o.requests, settle, m.dir)
				}
				settle *= 2
				fmt.Printf("bench: %-16s round %d: the last batch reached the driver after the window closed; again, waiting %s\n", m.name, round, settle)
				if err := m.waitExported(want); err != nil {
					return nil, fmt.Errorf("round %d: %w", round, err)
				}
				continue
			}
		}
		per := func(i int) float64 {
			return (float64(counts[i].total) - idle[i]*counts[i].secs) / float64(m.o.requests)
		}
		sched := 0.0
		for i, c := range counts {
			sched += (float64(c.sched) - idleSched[i]*c.secs) / float64(m.o.requests)
		}
		r.Host, r.Sched = append(r.Host, per(0)), append(r.Sched, sched)
		line := fmt.Sprintf("bench: %-16s round %d: instructions per request: tracehop %6.0f", m.name, round, per(0))
		if len(pids) > 1 {
			r.Driver = append(r.Driver, per(1))
			line += fmt.Sprintf(", driver %6.0f", per(1))
		}
		fmt.Printf("%s, of which Go's scheduler %5.0f\n", line, sched)
		if round == m.o.rounds {
			if err := m.writeTop(counts, pids); err != nil {
				return nil, err
			}
		}
		round++
	}
	return r, nil
}

// pids finds the processes under callgrind: tracehop (pid) and, when
// tracing, its driver, which may take a while to start under valgrind.
func (m *instrMeasure) pids(pid int) ([]int, error) {
	want := 1
	if m.driver != "" {
		want = 2
	}
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		out, err := exec.Command(m.control).Output() // "PID 123: cmdline" per callgrind process
		if err != nil {
			return nil, fmt.Errorf("callgrind_control: %w", err)
		}
		mine := tree(pid)
		var host, driver int
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(strings.TrimPrefix(line, "PID "))
			if len(f) < 2 {
				continue
			}
			n, err := strconv.Atoi(strings.TrimSuffix(f[0], ":"))
			if err != nil || !slices.Contains(mine, n) {
				continue
			}
			if strings.Contains(f[1], "tracehop-driver-") {
				driver = n
			} else {
				host = n
			}
		}
		if host != 0 && (want == 1 || driver != 0) {
			if want == 1 {
				return []int{host}, nil
			}
			return []int{host, driver}, nil
		}
	}
	what := "tracehop"
	if want == 2 {
		what = "tracehop and its driver"
	}
	return nil, fmt.Errorf("callgrind_control does not list %s after 60 s: see the logs in %s", what, m.dir)
}

// window zeroes the counters of pids, runs f, and returns what each
// process ran meanwhile, and for how long it counted (from its zero to its
// dump, each process's own).
func (m *instrMeasure) window(pids []int, f func() error) ([]profile, error) {
	who := func(i int) string { return []string{"tracehop", "driver"}[i] }
	ctl := func(op string, i int) error {
		out, err := exec.Command(m.control, op, strconv.Itoa(pids[i])).CombinedOutput()
		// callgrind_control exits 0 when it finds no such process.
		if err != nil || bytes.Contains(out, []byte("Error")) || bytes.Contains(out, []byte("No active callgrind")) {
			return fmt.Errorf("callgrind_control %s %d (%s): %v: %s (valgrind's log: %s)", op, pids[i], who(i), err,
				bytes.TrimSpace(out), filepath.Join(m.dir, m.name+"-"+who(i)+".valgrind.log"))
		}
		return nil
	}
	zeroed := make([]time.Time, len(pids))
	for i := range pids {
		if err := ctl("-z", i); err != nil {
			return nil, err
		}
		zeroed[i] = time.Now()
	}
	if err := f(); err != nil {
		return nil, err
	}
	out := make([]profile, len(pids))
	before := make([][]string, len(pids))
	for i, pid := range pids {
		before[i], _ = filepath.Glob(fmt.Sprintf("%s.%d.*", m.out(who(i)), pid))
		if err := ctl("-d", i); err != nil {
			return nil, err
		}
		out[i].secs = time.Since(zeroed[i]).Seconds()
	}
	for i, pid := range pids {
		// The dump is a new file, <out>.<pid>.<part>.
		var file string
		for deadline := time.Now().Add(30 * time.Second); file == "" && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			after, _ := filepath.Glob(fmt.Sprintf("%s.%d.*", m.out(who(i)), pid))
			for _, a := range after {
				if !slices.Contains(before[i], a) {
					file = a
				}
			}
		}
		if file == "" {
			return nil, fmt.Errorf("callgrind wrote no dump for %s (pid %d) in 30 s (valgrind's log: %s)", who(i), pid, filepath.Join(m.dir, m.name+"-"+who(i)+".valgrind.log"))
		}
		p, err := readCallgrindFile(file)
		if err != nil {
			return nil, err
		}
		p.secs = out[i].secs
		out[i] = p
	}
	return out, nil
}

// exported is the number of spans tracehop's driver acknowledged.
func (m *instrMeasure) exported() int64 {
	metrics, err := scrape("http://" + m.admin + "/metrics")
	if err != nil {
		return -1
	}
	return int64(metrics[`tracehop_spans_exported_total{driver="`+m.driver+`"}`])
}

// waitExported waits until the driver has acknowledged want spans in all.
func (m *instrMeasure) waitExported(want int64) error {
	if m.driver == "" {
		return nil
	}
	deadline := time.Now().Add(30 * time.Second)
	for got := m.exported(); got < want; got = m.exported() {
		if time.Now().After(deadline) {
			return fmt.Errorf("the driver acknowledged %d spans of %d in 30 s (logs in %s)", got, want, m.dir)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

// writeTop writes the functions that ran the most, per request, of the
// last round.
func (m *instrMeasure) writeTop(counts []profile, pids []int) error {
	for i := range pids {
		who := []string{"tracehop", "driver"}[i]
		path := filepath.Join(m.dir, m.name+"-"+who+".top.txt")
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		fmt.Fprintf(f, "# %s, %s: instructions per request by function (its own), last round\n", m.name, who)
		counts[i].top(f, 60, float64(m.o.requests))
		if err := f.Close(); err != nil {
			return err
		}
	}
	return nil
}

// runFortioN sends n requests, one at a time on one keep-alive connection,
// and fails unless each was answered 200.
func runFortioN(ctx context.Context, fortio, url string, n int) error {
	cmd := exec.CommandContext(ctx, fortio, "load", "-quiet", "-c", "1", "-qps", "0", "-n", strconv.Itoa(n), "-json", "-", url)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("fortio: %w: %s", err, stderr.Bytes())
	}
	r, err := parseFortio(out)
	if err == nil && (r.Errors > 0 || r.Requests != int64(n)) {
		err = fmt.Errorf("fortio: %d requests of %d answered, %d not 200", r.Requests, n, r.Errors)
	}
	return err
}

// table is the README's table of instructions per request.
func (r *instrRun) table() string {
	var b strings.Builder
	by := map[string]*instrResult{}
	for _, c := range r.Configs {
		by[c.Name] = c
	}
	rounds := fmt.Sprintf("%d rounds", r.Rounds)
	if r.Rounds == 1 {
		rounds = "1 round"
	}
	fmt.Fprintf(&b, "Instructions per request under callgrind (`make bench-instr`, %s, %s of %d requests on one keep-alive connection, medians; what the idle processes run taken off). "+
		"Go's scheduler spins more or less with the timing of requests; the last column leaves it out, so that it moves only with the code:\n\n",
		r.Date.Format("2006-01-02"), rounds, r.Requests)
	b.WriteString("| configuration | tracehop | driver | both | of which Go's scheduler | over tracing off, without the scheduler |\n|---|---:|---:|---:|---:|---:|\n")
	for _, c := range r.Configs {
		driver, over := "", ""
		if len(c.Driver) > 0 {
			driver = fmt.Sprintf("%.0f", medianOf(c.Driver))
		}
		off := "tracehop"
		if _, suffix, ok := strings.Cut(c.Name, "@"); ok {
			off += "@" + suffix
		}
		if u, ok := by[off]; ok && c.Name != off {
			over = fmt.Sprintf("+%.0f", c.work()-u.work())
		}
		fmt.Fprintf(&b, "| %s: %s | %.0f | %s | %.0f | %.0f | %s |\n", c.Name, c.Desc, medianOf(c.Host), driver, c.total(), medianOf(c.Sched), over)
	}
	// This build against the baseline, without the scheduler.
	first := true
	for _, c := range r.Configs {
		base, ok := by[c.Name+"@base"]
		if !ok {
			continue
		}
		if first {
			b.WriteString("\n| without the scheduler, both processes | this build | baseline | change |\n|---|---:|---:|---:|\n")
			first = false
		}
		fmt.Fprintf(&b, "| %s | %.0f | %.0f | %+.0f (%+.1f%%) |\n", c.Name, c.work(), base.work(), c.work()-base.work(), 100*(c.work()-base.work())/base.work())
	}
	return b.String()
}

func medianOf(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// replaceBetween rewrites the text between two markers in file.
func replaceBetween(file, begin, end, text string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	s := string(b)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		return fmt.Errorf("%s has no %s ... %s markers", file, begin, end)
	}
	return os.WriteFile(file, []byte(s[:i+len(begin)]+"\n"+text+s[j:]), 0o644)
}
