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
	// sched is the part of total in Go's scheduler looking for work
	// (schedFuncs): the idle loop, its polls of the network, its locks and
	// timers, the spinning. How long it spins depends on when requests
	// arrive, so it moves from one round to the next (by up to a tenth of an
	// untraced request) while the rest stays within about 1%. Parking and
	// resuming a goroutine, system calls, clock reads and the timers a
	// request sets are not in it: they move with the code.
	sched int64
	// secs is how long the process counted, zero to dump (the harness sets
	// it: the file does not say).
	secs float64
}

// schedFuncs are the Go runtime's functions of its search for work, by
// name: those that ran more or less as rounds of the same build took more
// or less time.
var schedFuncs = map[string]bool{"internal/runtime/syscall/linux.EpollWait": true}

func init() {
	for _, f := range strings.Fields(`findRunnable stealWork runqgrab runqsteal globrunqget globrunqgetbatch
		netpoll netpollready netpollBreak lock2 unlock2 procyield procyieldAsm osyield usleep
		pidleget pidlegetSpinning pidleput checkTimersNoP (*timers).check (*timers).adjust
		sysmon retake wakep startm stopm mPark notesleep notewakeup futexsleep futexwakeup futex
		resetspinning releasep releasepNoTrace acquirep handoffp injectglist
		(*limiterEvent).stop (*limiterEvent).start`) {
		schedFuncs["runtime."+f] = true
	}
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
	var fn string
	sched, afterCalls, summary := false, false, int64(-1)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
		case strings.HasPrefix(line, "fl="), strings.HasPrefix(line, "fi="), strings.HasPrefix(line, "fe="):
			file(line[3:]) // read for the numbering only: costs go by function
		case strings.HasPrefix(line, "cfi="), strings.HasPrefix(line, "cfl="):
			file(line[4:])
		case strings.HasPrefix(line, "fn="):
			// callgrind names a function's recursion depth fn'2: one function.
			fn, _, _ = strings.Cut(name(line[3:]), "'")
			sched = schedFuncs[fn]
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
