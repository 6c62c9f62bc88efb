package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
)

// profile is what one callgrind dump holds: the instructions a process
// ran between a zero and a dump, in all and by function (its own, not the
// functions it called).
type profile struct {
	total  int64
	byFunc map[string]int64
	// sched is the part of total in Go's scheduler (isSched): finding the
	// next goroutine, polling the network, its locks and timers, handing a
	// processor back and forth around system calls. How much of that runs
	// depends on when requests arrive, so it moves from one round to the
	// next (by up to a tenth of an untraced request) while the rest moves
	// little: between two runs of the same binaries, 0.5% untraced and
	// with the file driver, 3% with otlp (whose rounds vary with its
	// garbage collection).
	sched int64
	// secs is how long the process counted, zero to dump (the harness sets
	// it: the file does not say).
	secs float64
}

// schedFiles are the Go runtime's files that hold its scheduler, by the
// end of their path. Chosen by file, not by function: the same build's
// rounds differed in dozens of functions there (the clock the spinning
// reads, status changes, the exit from a system call when the monitor
// took the processor meanwhile), and a list of names left enough of them
// out that two runs of one build differed by 4%.
var schedFiles = []string{
	"runtime/proc.go", "runtime/netpoll.go", "runtime/netpoll_epoll.go",
	"runtime/lock_spinbit.go", "runtime/lock_futex.go", "runtime/time.go",
	"runtime/asm_amd64.s", "runtime/sys_linux_amd64.s", "runtime/os_linux.go",
	"runtime/mgclimit.go", "internal/runtime/syscall/linux/syscall_linux.go",
}

// notSched are functions of those files that do a request's own work, the
// same amount for the same code whenever it runs: hashing and comparing
// for maps, write barriers, stack growth, the system-call instruction.
var notSched = []string{
	"runtime.memhash", "runtime.strhash", "runtime.aeshash", "runtime.memequal",
	"runtime.gcWriteBarrier", "runtime.morestack", "runtime.memmove", "runtime.memclr",
}

func isSched(file, fn string) bool {
	for _, n := range notSched {
		if strings.HasPrefix(fn, n) {
			return false
		}
	}
	for _, f := range schedFiles {
		if strings.HasSuffix(file, "/"+f) {
			return true
		}
	}
	return false
}

// readCallgrind reads a callgrind output file (the format of
// valgrind.org/docs/manual/cl-format.html, with name compression). Only
// self costs are summed: callgrind's inclusive costs follow its shadow call
// stack, which Go's goroutine switches leave wrong, while a self cost is
// just where each instruction lay.
func readCallgrind(r io.Reader) (profile, error) {
	p := profile{byFunc: map[string]int64{}}
	// Names are given once, as "(12) name", and then as "(12)"; functions
	// and files are numbered apart.
	table := func(names map[string]string) func(string) string {
		return func(tok string) string {
			if strings.HasPrefix(tok, "(") {
				id, rest, _ := strings.Cut(tok, ")")
				if rest = strings.TrimSpace(rest); rest != "" {
					names[id] = rest
					return rest
				}
				return names[id]
			}
			return tok
		}
	}
	name, file := table(map[string]string{}), table(map[string]string{})
	var fn, fl string
	sched, afterCalls, summary := false, false, int64(-1)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
		case strings.HasPrefix(line, "fl="):
			fl = file(line[3:])
		case strings.HasPrefix(line, "fi="), strings.HasPrefix(line, "fe="):
			file(line[3:]) // inlined code: still the function's own
		case strings.HasPrefix(line, "cfi="), strings.HasPrefix(line, "cfl="):
			file(line[4:])
		case strings.HasPrefix(line, "fn="):
			// callgrind names a function's recursion depth fn'2: one function.
			fn, _, _ = strings.Cut(name(line[3:]), "'")
			sched = isSched(fl, fn)
		case strings.HasPrefix(line, "cfn="):
			name(line[4:])
		case strings.HasPrefix(line, "calls="):
			afterCalls = true // the next cost line is the call's, inclusive
		case strings.HasPrefix(line, "events:"):
			if ev := strings.Fields(line[len("events:"):]); len(ev) != 1 || ev[0] != "Ir" {
				return p, fmt.Errorf("callgrind counted %v, not instructions alone: remove other events (--cache-sim, --branch-sim, --collect-*) from ~/.valgrindrc and VALGRIND_OPTS", ev)
			}
		case strings.HasPrefix(line, "positions:"):
			if pos := strings.TrimSpace(line[len("positions:"):]); pos != "line" {
				return p, fmt.Errorf("callgrind wrote positions %q, not lines: remove --dump-instr from ~/.valgrindrc and VALGRIND_OPTS", pos)
			}
		case strings.HasPrefix(line, "summary:"), strings.HasPrefix(line, "totals:"):
			_, v, _ := strings.Cut(line, ":")
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return p, fmt.Errorf("callgrind: %q: %w", line, err)
			}
			summary = n
		case line[0] >= '0' && line[0] <= '9' || line[0] == '+' || line[0] == '-' || line[0] == '*':
			if afterCalls {
				afterCalls = false
				continue
			}
			f := strings.Fields(line)
			if len(f) < 2 {
				continue // a position with no event: costs nothing
			}
			n, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return p, fmt.Errorf("callgrind: cost line %q: %w", line, err)
			}
			p.total += n
			p.byFunc[fn] += n
			if sched {
				p.sched += n
			}
		}
	}
	if err := sc.Err(); err != nil {
		return p, err
	}
	if summary >= 0 && summary != p.total {
		return p, fmt.Errorf("callgrind: the file says %d instructions, its cost lines add up to %d", summary, p.total)
	}
	return p, nil
}

func readCallgrindFile(path string) (profile, error) {
	f, err := os.Open(path)
	if err != nil {
		return profile{}, err
	}
	defer f.Close()
	p, err := readCallgrind(f)
	if err != nil {
		return p, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// top writes the n functions that ran the most instructions, per unit
// (per request), beside their share of the total.
func (p profile) top(w io.Writer, n int, per float64) {
	type fc struct {
		name string
		n    int64
	}
	all := make([]fc, 0, len(p.byFunc))
	for k, v := range p.byFunc {
		all = append(all, fc{k, v})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].n > all[j].n || all[i].n == all[j].n && all[i].name < all[j].name })
	fmt.Fprintf(w, "%10.0f  100.0%%  (all)\n", float64(p.total)/per)
	for _, f := range all[:min(n, len(all))] {
		fmt.Fprintf(w, "%10.0f  %5.1f%%  %s\n", float64(f.n)/per, 100*float64(f.n)/float64(max(p.total, 1)), f.name)
	}
}
