package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The system calls a proxy makes per request under saturation, counted by
// the kernel's tracepoints through perf stat (-syscalls). strace -c, which
// this table was first made with, stops the process at every call: its
// reads then find their bytes more often than they do at full speed, and
// it undercounted the reads that fail with EAGAIN by a third.

// syscallEvents are the per-call counters perf reads, beside the total
// (raw_syscalls:sys_enter) and the context switches: what the proxies
// compared here use on their request path.
var syscallEvents = []string{
	"read", "write", "writev", "readv", "recvfrom", "sendto", "recvmsg", "sendmsg",
	"epoll_wait", "epoll_pwait", "epoll_ctl", "futex", "nanosleep", "getsockopt", "setsockopt", "getrandom", "clock_gettime", "gettimeofday", "sched_yield", "close", "getpid",
}

// failingReads are the reads that found nothing (EAGAIN, -11): counted on
// the exit tracepoints, filtered by their return value.
var failingReads = []string{"read", "recvfrom"}

// syscallCount is one configuration's system calls per request.
type syscallCount struct {
	Name            string             `json:"name"`
	Requests        int64              `json:"requests"`
	All             float64            `json:"all"`
	ContextSwitches float64            `json:"context_switches"`
	Calls           map[string]float64 `json:"calls"`  // per request, by system call
	EAGAIN          map[string]float64 `json:"eagain"` // failing reads per request
}

// syscallRun is a -syscalls run, saved as JSON beside the other runs.
type syscallRun struct {
	Date     time.Time         `json:"date"`
	Machine  map[string]string `json:"machine"`
	Duration string            `json:"saturated"`
	Configs  []syscallCount    `json:"syscall_configs"`
}

// countSyscalls runs wrk against each target for o.satDur while perf stat
// counts the system calls of the target's processes, and writes the
// table (into the README between its bench-syscalls markers with -readme).
func countSyscalls(ctx context.Context, wrk string, targets []*target, o options) error {
	perf, err := exec.LookPath("perf")
	if err != nil {
		return fmt.Errorf("-syscalls needs perf (Debian: apt-get install linux-perf): %w", err)
	}
	run := syscallRun{Date: time.Now().UTC(), Machine: machine(), Duration: o.satDur.String()}
	for _, t := range targets {
		if t.proc == nil {
			continue // direct: no proxy to count
		}
		if _, err := runWrk(ctx, wrk, t.url(), o.conns, o.warmup); err != nil {
			return fmt.Errorf("%s warm-up: %w", t.Name, err)
		}
		fmt.Printf("bench: %-16s system calls under perf stat, %s saturated\n", t.Name, o.satDur)
		c, err := countOne(ctx, perf, wrk, t, o)
		if err != nil {
			return fmt.Errorf("%s: %w", t.Name, err)
		}
		run.Configs = append(run.Configs, c)
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	host, _ := os.Hostname()
	path := filepath.Join(o.out, run.Date.Format("2006-01-02T150405Z")+"-"+host+"-syscalls.json")
	b, err := json.MarshalIndent(run, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return err
	}
	if err := run.render(o.readme); err != nil {
		return err
	}
	fmt.Printf("\nbench: results written to %s\n", path)
	return nil
}

// render prints the run's table and, given a readme, writes it there
// between its bench-syscalls markers: after a run, and for -render.
func (r *syscallRun) render(readme string) error {
	return printTable(r.table(), readme, "bench-syscalls", "system-call")
}

func countOne(ctx context.Context, perf, wrk string, t *target, o options) (syscallCount, error) {
	c := syscallCount{Name: t.Name}
	var pids []string
	for _, p := range tree(t.proc.pid()) {
		pids = append(pids, strconv.Itoa(p))
	}
	args := []string{"stat", "-x", ",", "-e", "raw_syscalls:sys_enter", "-e", "context-switches"}
	for _, s := range syscallEvents {
		args = append(args, "-e", "syscalls:sys_enter_"+s)
	}
	for _, s := range failingReads {
		args = append(args, "-e", "syscalls:sys_exit_"+s, "--filter", "ret == -11")
	}
	// perf counts for as long as its command runs: wrk's run, so that the
	// counts and wrk's requests cover the same seconds.
	secs := strconv.Itoa(int(o.satDur.Seconds()))
	args = append(args, "-p", strings.Join(pids, ","), "--", wrk, "-t1", "-c"+strconv.Itoa(o.conns), "-d"+secs+"s", t.url())
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, perf, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return c, fmt.Errorf("perf stat: %w: %s", err, stderr.String())
	}
	w, err := parseWrk(stdout.Bytes())
	if err != nil {
		return c, err
	}
	if w.Requests == 0 {
		return c, fmt.Errorf("wrk made no requests")
	}
	c.Requests = w.Requests
	counts, err := parsePerfStat(stderr.Bytes())
	if err != nil {
		return c, err
	}
	per := func(n float64) float64 { return n / float64(w.Requests) }
	c.All = per(counts["raw_syscalls:sys_enter"])
	c.ContextSwitches = per(counts["context-switches"])
	c.Calls, c.EAGAIN = map[string]float64{}, map[string]float64{}
	for _, s := range syscallEvents {
		if n := counts["syscalls:sys_enter_"+s]; n > 0 {
			c.Calls[s] = per(n)
		}
	}
	for _, s := range failingReads {
		if n := counts["syscalls:sys_exit_"+s]; n > 0 {
			c.EAGAIN[s] = per(n)
		}
	}
	return c, nil
}

// parsePerfStat reads perf stat -x, output: "count,unit,event,..." per
// line; counts perf could not take ("<not supported>") are an error, as
// a table without them would be wrong.
func parsePerfStat(out []byte) (map[string]float64, error) {
	m := map[string]float64{}
	for line := range strings.Lines(string(out)) {
		f := strings.Split(strings.TrimSpace(line), ",")
		if len(f) < 3 || f[2] == "" {
			continue
		}
		n, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return nil, fmt.Errorf("perf stat counted no %s (%q): are tracepoints readable here? (root, or kernel.perf_event_paranoid <= 1)", f[2], f[0])
		}
		m[f[2]] = n
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("perf stat printed no counts:\n%s", out)
	}
	return m, nil
}

// table renders the counts per request: every system call, then the
// reads, the failing ones, the writes and the rest by name.
func (r *syscallRun) table() string {
	var b strings.Builder
	b.WriteString("| proxy | all | reads that return data | reads that fail (EAGAIN) | writes | other | context switches |\n|---|---:|---:|---:|---:|---|---:|\n")
	reads := []string{"read", "readv", "recvfrom", "recvmsg"}
	writes := []string{"write", "writev", "sendto", "sendmsg"}
	for _, c := range r.Configs {
		var nRead, nFail, nWrite float64
		var readNames, writeNames, other []string
		for _, s := range reads {
			if v := c.Calls[s]; v >= 0.005 {
				nRead += v - c.EAGAIN[s]
				if v-c.EAGAIN[s] >= 0.005 {
					readNames = append(readNames, "`"+s+"`")
				}
			}
			nFail += c.EAGAIN[s]
		}
		for _, s := range writes {
			if v := c.Calls[s]; v >= 0.005 {
				nWrite += v
				writeNames = append(writeNames, "`"+s+"`")
			}
		}
		var named float64
		for _, v := range c.Calls {
			named += v
		}
		for _, s := range syscallEvents {
			if slices.Contains(reads, s) || slices.Contains(writes, s) {
				continue
			}
			if v := c.Calls[s]; v >= 0.005 {
				other = append(other, fmt.Sprintf("%.2f `%s`", v, s))
			}
		}
		if rest := c.All - named; rest >= 0.005 {
			other = append(other, fmt.Sprintf("%.2f others", rest))
		}
		fmt.Fprintf(&b, "| %s | %.2f | %.2f (%s) | %.2f | %.2f (%s) | %s | %.2f |\n", c.Name, c.All, nRead, strings.Join(readNames, ", "),
			nFail, nWrite, strings.Join(writeNames, ", "), strings.Join(other, ", "), c.ContextSwitches)
	}
	fmt.Fprintf(&b, "\nCounted %s on %s CPUs (%s), Linux %s; %s of wrk -t1 -c50 per proxy, untraced unless named, divided by wrk's requests.\n",
		r.Date.Format("2006-01-02"), r.Machine["cpus"], r.Machine["cpu"], r.Machine["kernel"], r.Duration)
	return b.String()
}
