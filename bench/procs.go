package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is one process the harness started and stops.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
}

func start(dir, name string, env []string, argv ...string) (*proc, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return &proc{name: name, cmd: cmd, log: logPath}, nil
}

// stop ends the process and everything it started (its process group).
func (p *proc) stop() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	pid := p.cmd.Process.Pid
	syscall.Kill(-pid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		syscall.Kill(-pid, syscall.SIGKILL)
		<-done
	}
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// launchInto starts a process as start does, adds it to procs (which the
// caller stops) and waits until it listens on addr.
func launchInto(procs *[]*proc, dir, name, addr string, env []string, argv ...string) (*proc, error) {
	if err := addrFree(addr); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p, err := start(dir, name, env, argv...)
	if err != nil {
		return nil, err
	}
	*procs = append(*procs, p)
	return p, p.waitListening(addr, 20*time.Second)
}

// startHelpers starts this harness's own upstream and counting receiver
// (self is its executable) on their addresses.
func startHelpers(procs *[]*proc, dir, self, upstreamAddr, sinkAddr string) (upstream, sink *proc, err error) {
	if upstream, err = launchInto(procs, dir, "upstream", upstreamAddr, nil, self, "upstream", upstreamAddr); err != nil {
		return nil, nil, err
	}
	sink, err = launchInto(procs, dir, "sink", sinkAddr, []string{"GOMAXPROCS=1"}, self, "sink", sinkAddr)
	return upstream, sink, err
}

// addrFree fails when something already accepts connections on addr: a
// process left from another run would be measured in place of the one
// about to start (its own would fail to bind, after waitListening had
// already been answered by the stranger).
func addrFree(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return nil
	}
	c.Close()
	return fmt.Errorf("something already listens on %s: stop it (ss -ltnp | grep %s shows what), or give -port a free range", addr, addr)
}

// waitListening waits until addr accepts connections, failing early when
// the process exits.
func (p *proc) waitListening(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		if p.cmd.ProcessState != nil || syscall.Kill(p.pid(), 0) != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	tail, _ := os.ReadFile(p.log)
	if len(tail) > 2000 {
		tail = tail[len(tail)-2000:]
	}
	return fmt.Errorf("%s did not listen on %s within %s; its log (%s) ends:\n%s", p.name, addr, timeout, p.log, tail)
}

// clockTick is USER_HZ: /proc counts CPU time in these.
const clockTick = 100

// cpuTimes is a process tree's CPU time, user+system and user alone, by
// command name and in all ("").
type cpuTimes map[string][2]time.Duration

// treeCPU is the CPU time of pid and all its descendants.
func treeCPU(pid int) cpuTimes {
	t := cpuTimes{}
	for _, p := range tree(pid) {
		comm, u, s, ok := procStat(p)
		if ok {
			d := [2]time.Duration{time.Duration(u+s) * time.Second / clockTick, time.Duration(u) * time.Second / clockTick}
			for _, k := range []string{"", comm} {
				t[k] = [2]time.Duration{t[k][0] + d[0], t[k][1] + d[1]}
			}
		}
	}
	return t
}

// procStat reads a process's command name and its utime and stime in
// ticks.
func procStat(pid int) (comm string, utime, stime int64, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", 0, 0, false
	}
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return "", 0, 0, false
	}
	comm = string(b[open+1 : end])
	f := strings.Fields(string(b[end+2:]))
	// After the command: state(3) ppid(4) ... utime(14) stime(15).
	if len(f) < 13 {
		return "", 0, 0, false
	}
	utime, _ = strconv.ParseInt(f[11], 10, 64)
	stime, _ = strconv.ParseInt(f[12], 10, 64)
	return comm, utime, stime, true
}

func parentOf(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return -1
	}
	end := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[end+2:]))
	if len(f) < 2 {
		return -1
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// tree lists pid and its descendants.
func tree(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	children := map[int][]int{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		children[parentOf(p)] = append(children[parentOf(p)], p)
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// statusBytes reads the sizes /proc/PID/status gives in kB, in bytes,
// by name (VmRSS, RssAnon, ...); false when the process is gone.
func statusBytes(pid int) (map[string]int64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return nil, false
	}
	out := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		if v, ok := strings.CutSuffix(strings.TrimSpace(v), " kB"); ok {
			kb, _ := strconv.ParseInt(v, 10, 64)
			out[k] = kb << 10
		}
	}
	return out, true
}

// eachStatus calls f with every process of pid's tree that still runs:
// its pid, command name and status sizes (statusBytes).
func eachStatus(pid int, f func(p int, comm string, st map[string]int64)) {
	for _, p := range tree(pid) {
		comm, _, _, ok := procStat(p)
		if !ok {
			continue
		}
		if st, ok := statusBytes(p); ok {
			f(p, comm, st)
		}
	}
}

// treeRSS is the resident memory of pid and its descendants, now and at
// peak (VmHWM), in bytes, by command name.
func treeRSS(pid int) map[string][2]int64 {
	out := map[string][2]int64{}
	eachStatus(pid, func(_ int, comm string, st map[string]int64) {
		cur := out[comm]
		out[comm] = [2]int64{cur[0] + st["VmRSS"], cur[1] + st["VmHWM"]}
	})
	return out
}

// treeMem is the memory of pid and its descendants with every shared page
// counted once, as a cgroup (a pod's limit) counts it, in bytes: their
// anonymous memory, each executable's file pages once (a supervisor and
// its workers run one executable, their drivers another: RSS counts those
// pages once per process), and each span ring once (a worker's shared
// memory, which its driver maps too). Proportional set sizes would do the
// same for one sidecar alone, but the bench runs every configuration at
// once from the same executables, which would share the pages among all
// of them.
func treeMem(pid int) int64 {
	var anon, shmem int64
	file := map[string]int64{}
	eachStatus(pid, func(p int, comm string, st map[string]int64) {
		exe, _ := os.Readlink("/proc/" + strconv.Itoa(p) + "/exe")
		anon += st["RssAnon"]
		file[exe] = max(file[exe], st["RssFile"])
		if !strings.HasPrefix(comm, "tracehop-driver") { // a driver's ring is its worker's
			shmem += st["RssShmem"]
		}
	})
	total := anon + shmem
	for _, f := range file {
		total += f
	}
	return total
}

// cpuTicks returns the machine's CPU time so far, in clock ticks, and the
// part of it the hypervisor gave to other guests (steal): /proc/stat's
// first line. ok is false where there is no /proc/stat.
func cpuTicks() (total, steal uint64, ok bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, false
	}
	for i, v := range f[1:] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, false
		}
		if i >= 8 { // guest and guest_nice are already in user and nice
			break
		}
		total += n
		if i == 7 {
			steal = n
		}
	}
	return total, steal, true
}

// stealPercent is the share of the machine's CPU time the hypervisor
// stole between two cpuTicks readings, in percent.
func stealPercent(t0, s0, t1, s1 uint64) float64 {
	if t1 <= t0 {
		return 0
	}
	return 100 * float64(s1-s0) / float64(t1-t0)
}
