package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tracehop/tracehop/internal/app"
	"github.com/tracehop/tracehop/proxy"
	proxyconfig "github.com/tracehop/tracehop/proxy/config"
	"github.com/tracehop/tracehop/sdk/drivertest"
)

func TestWorkersFlagAndAdmin(t *testing.T) {
	var w workersFlag
	for _, bad := range []string{"0", "-1", "two", "257"} {
		if err := w.Set(bad); err == nil {
			t.Errorf("-workers %s was taken", bad)
		}
	}
	if err := w.Set("auto"); err != nil || w.n < 1 || !w.auto {
		t.Errorf("-workers auto: %d, %v", w.n, err)
	}
	for _, c := range []struct {
		addr string
		i    int
		want string
	}{
		{"127.0.0.1:9901", 0, "127.0.0.1:9901"},
		{"127.0.0.1:9901", 3, "127.0.0.1:9904"},
		{"[::1]:9901", 1, "[::1]:9902"},
		{"127.0.0.1:0", 2, "127.0.0.1:0"},
		{"off", 2, "off"},
		{"127.0.0.1:65535", 1, "past 65535"},
	} {
		got, err := app.AdminAddress(c.addr, c.i)
		if err != nil {
			got = err.Error()
		}
		if !strings.Contains(got, c.want) {
			t.Errorf("AdminAddress(%s, %d) = %s, want %s", c.addr, c.i, got, c.want)
		}
	}
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.String("c", "", "")
	fs.Bool("access-log", true, "")
	fs.Duration("drain-timeout", 15*time.Second, "")
	fs.Bool("watch", true, "")
	fs.Var(&workersFlag{n: 1}, "workers", "")
	if err := fs.Parse([]string{"-c", "a b.yaml", "-access-log=false", "-workers", "3", "-drain-timeout", "1m30s", "-watch=true"}); err != nil {
		t.Fatal(err)
	}
	// The supervisor watches the file for them.
	if got, want := strings.Join(workerArgs(fs), " "), "run -access-log=false -c=a b.yaml -drain-timeout=1m30s -watch=false"; got != want {
		t.Errorf("a worker's arguments: %q, want %q", got, want)
	}
}

// -workers auto reads the tightest CPU limit of the cgroup and its
// ancestors, rounded up by autoWorkers.
func TestCgroupCPULimit(t *testing.T) {
	root := t.TempDir()
	write := func(dir, max string) {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, dir, "cpu.max"), []byte(max), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("", "max 100000\n")
	write("kubepods", "250000 100000\n")        // 2.5 CPUs
	write("kubepods/pod1", "max 100000\n")      // no limit of its own
	write("kubepods/pod1/c1", "50000 100000\n") // half a CPU
	write("kubepods/pod2", "max 100000\n")
	for _, c := range []struct {
		cgroup string
		want   float64
		ok     bool
	}{
		{"0::/kubepods/pod1/c1\n", 0.5, true},
		{"0::/kubepods/pod2\n", 2.5, true},
		{"0::/\n", 0, false},
		{"12:cpu,cpuacct:/kubepods\n", 0, false}, // cgroup v1 only: no limit read
		{"", 0, false},
	} {
		got, ok := cgroupCPULimit(c.cgroup, root)
		if got != c.want || ok != c.ok {
			t.Errorf("cgroupCPULimit(%q) = %v, %v; want %v, %v", c.cgroup, got, ok, c.want, c.ok)
		}
	}
	if n := autoWorkers(); n < 1 || n > runtime.NumCPU() {
		t.Errorf("autoWorkers() = %d, want 1 to %d", n, runtime.NumCPU())
	}
}

// Every listener must share its address, and every worker's admin port
// must exist: the supervisor says which key to change before it starts
// anything.
func TestWorkersNeedReusePort(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("-workers is Linux only; checkWorkers' refusal elsewhere is the first line of it")
	}
	cfg := writeConfig(t, `admin: {address: "127.0.0.1:65535"}
listeners:
  - {name: in, address: "127.0.0.1:0", direction: ingress, reuse_port: true, routes: [{match: {prefix: /}, cluster: up}]}
  - name: out
    address: "127.0.0.1:0"
    direction: egress
    routes: [{match: {prefix: /}, cluster: up}]
clusters:
  - {name: up, endpoints: ["127.0.0.1:1"]}
`)
	var stdout, stderr bytes.Buffer
	code := run([]string{"run", "-c", cfg, "-workers", "2"}, &stdout, &stderr)
	if code != exitInvalid {
		t.Fatalf("exit code %d, want %d:\n%s", code, exitInvalid, stderr.String())
	}
	for _, want := range []string{
		`tracehop.yaml:4: listeners[1]: "out" (127.0.0.1:0) needs reuse_port: true, so that the 2 workers can share its address`,
		`tracehop.yaml:1: admin.address: port 65535 + 2 is past 65535: lower it`,
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("the error lacks %q:\n%s", want, stderr.String())
		}
	}
	if strings.Contains(stderr.String(), "listeners[0]") {
		t.Errorf("the listener with reuse_port was named:\n%s", stderr.String())
	}

	// tracehop validate -workers 2 says the same.
	stderr.Reset()
	if code := run([]string{"validate", "-c", cfg, "-workers", "2"}, &stdout, &stderr); code != exitInvalid ||
		!strings.Contains(stderr.String(), `listeners[1]: "out" (127.0.0.1:0) needs reuse_port: true`) {
		t.Errorf("validate -workers 2: exit code %d, want %d with the listener named:\n%s", code, exitInvalid, stderr.String())
	}

	// Worker 1's admin port must not be a listener's, however written
	// (09902 binds port 9902).
	cfg = writeConfig(t, `admin: {address: "127.0.0.1:9901"}
listeners:
  - {name: in, address: "127.0.0.1:09902", direction: ingress, reuse_port: true, routes: [{match: {prefix: /}, cluster: up}]}
clusters:
  - {name: up, endpoints: ["127.0.0.1:1"]}
`)
	stderr.Reset()
	if code := run([]string{"run", "-c", cfg, "-workers", "2"}, &stdout, &stderr); code != exitInvalid ||
		!strings.Contains(stderr.String(), `tracehop.yaml:1: admin.address: worker 0's admin server would be on 127.0.0.1:9902, the port of listeners[0]`) {
		t.Errorf("exit code %d, want %d with the clash named:\n%s", code, exitInvalid, stderr.String())
	}
}

// supervised is a `tracehop run -workers 2` under test: its log, and its
// workers' pids once they serve.
type supervised struct {
	cmd  *exec.Cmd
	logs *syncBuffer
	done chan error
	pids [2]int
}

// startWorkers starts bin run -c cfg -workers 2 in a process group of its
// own and waits until both workers serve, worker i's admin server on
// admin[1+i] (admin[0] is the supervisor's).
func startWorkers(t *testing.T, bin, cfg string, admin [3]string, flags ...string) *supervised {
	t.Helper()
	s := &supervised{logs: &syncBuffer{}, done: make(chan error, 1)}
	s.cmd = exec.Command(bin, append([]string{"run", "-c", cfg, "-workers", "2", "-access-log=false", "-watch=false"}, flags...)...)
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // as a shell starts a job
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() { syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL) }) // the workers are in its group
	s.await(t, "start", regexp.MustCompile(`tracehop is running as a supervisor`))
	for i := range 2 {
		m := s.await(t, fmt.Sprintf("worker %d", i), regexp.MustCompile(fmt.Sprintf(`msg="worker serving" worker=%d pid=(\d+) admin=(\S+)`, i)))
		s.pids[i], _ = strconv.Atoi(m[1])
		if m[2] != admin[1+i] {
			t.Errorf("worker %d's admin server is on %s, want %s", i, m[2], admin[1+i])
		}
	}
	return s
}

// await waits for a log line matching re and returns its submatches.
func (s *supervised) await(t *testing.T, what string, re *regexp.Regexp) []string {
	t.Helper()
	return s.awaitFrom(t, what, re, 0)
}

// mark is where the log ends now: awaitFrom(mark) sees only what follows.
func (s *supervised) mark() int { return len(s.logs.String()) }

// awaitFrom waits for a log line matching re after the first from bytes
// of the log.
func (s *supervised) awaitFrom(t *testing.T, what string, re *regexp.Regexp, from int) []string {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := re.FindStringSubmatch(s.logs.String()[from:]); m != nil {
			return m
		}
	}
	t.Fatalf("%s: no log line matches %s:\n%s", what, re, s.logs.String())
	return nil
}

// exited waits for the supervisor's end.
func (s *supervised) exited(t *testing.T) error {
	t.Helper()
	select {
	case err := <-s.done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("the supervisor did not stop within 30s:\n%s", s.logs.String())
		return nil
	}
}

// stopped waits until every thread of the process pid is stopped (state
// T).
func stopped(t *testing.T, pid int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		stats, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
		all := len(stats) > 0
		for _, st := range stats {
			b, _ := os.ReadFile(st)
			// tid (comm) state ...: comm may hold spaces, not ')'.
			i := bytes.LastIndexByte(b, ')')
			all = all && i > 0 && i+2 < len(b) && b[i+2] == 'T'
		}
		if all {
			return
		}
	}
	t.Fatalf("process %d did not stop", pid)
}

// gone waits until none of pids runs.
func gone(t *testing.T, what string, pids ...int) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		left := 0
		for _, pid := range pids {
			if syscall.Kill(pid, 0) == nil {
				left++
			}
		}
		if left == 0 {
			return
		}
	}
	t.Errorf("%s: a worker of %v still runs", what, pids)
}

// tracehop run -workers 2, from the outside: both workers serve one
// address, SIGHUP reloads both, a killed worker is started again, SIGTERM
// stops everything cleanly, and so does Ctrl-C, which reaches the workers
// too; a killed supervisor takes its workers with it; a worker that cannot
// start fails the start with its exit code.
func TestRunWorkers(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("-workers is Linux only")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "tracehop")
	if err := drivertest.BuildDriver("github.com/tracehop/tracehop/cmd/tracehop", bin); err != nil {
		t.Fatal(err)
	}
	if err := drivertest.BuildDriver("github.com/tracehop/tracehop/cmd/tracehop-driver-file", filepath.Join(dir, "tracehop-driver-file")); err != nil {
		t.Fatal(err)
	}
	slowIn := make(chan struct{}, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			slowIn <- struct{}{}
			time.Sleep(700 * time.Millisecond)
		}
		io.WriteString(w, "ok")
	}))
	defer up.Close()
	addr := freeAddr(t)
	admin := freeAdminRun(t)
	config := func(tracing string) string {
		return writeConfig(t, fmt.Sprintf(`admin: {address: %q}
listeners:
  - {name: in, address: %q, direction: ingress, reuse_port: true, routes: [{match: {prefix: /}, cluster: up}]}
clusters:
  - {name: up, endpoints: [%q]}
%s`, admin[0], addr, strings.TrimPrefix(up.URL, "http://"), tracing))
	}
	cfg := config("")

	t.Run("validate", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		if code := run([]string{"run", "-c", cfg, "-workers", "2", "-worker-timeout", "10ms"}, &stdout, &stderr); code != exitUsage ||
			!strings.Contains(stderr.String(), "-worker-timeout 10ms: want 1s or more") {
			t.Errorf("run -worker-timeout 10ms: exit code %d:\n%s", code, stderr.String())
		}
		stderr.Reset()
		if code := run([]string{"validate", "-c", cfg, "-workers", "2"}, &stdout, &stderr); code != exitOK ||
			!strings.Contains(stdout.String(), "2 workers: every listener shares its address") {
			t.Fatalf("validate -workers 2: exit code %d:\n%s%s", code, stdout.String(), stderr.String())
		}
		ln, err := net.Listen("tcp", admin[2])
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		stderr.Reset()
		if code := run([]string{"validate", "-c", cfg}, &stdout, &stderr); code != exitOK { // one process: the ports after admin's are none of its business
			t.Errorf("validate without -workers, worker 1's admin port taken: exit code %d:\n%s", code, stderr.String())
		}
		stderr.Reset()
		if code := run([]string{"validate", "-c", cfg, "-workers", "2"}, &stdout, &stderr); code != exitFailure ||
			!strings.Contains(stderr.String(), "worker 1's admin server (admin.address's port + 2): cannot listen on "+admin[2]) {
			t.Errorf("validate -workers 2 with worker 1's admin port taken: exit code %d:\n%s", code, stderr.String())
		}
	})

	t.Run("serve, reload, restart, SIGTERM", func(t *testing.T) {
		s := startWorkers(t, bin, cfg, admin)
		// New connections reach both workers.
		client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		for range 64 {
			resp, err := client.Get("http://" + addr + "/")
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		// A request is counted once its response is written: the counts
		// may trail the client by a moment.
		var counts [2]int
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			counts = [2]int{served(t, admin[1], ""), served(t, admin[2], "")}
			if counts[0]+counts[1] == 64 || time.Now().After(deadline) {
				break
			}
		}
		if counts[0]+counts[1] != 64 {
			t.Errorf("the workers served %v requests, want 64 in all", counts)
		}
		for i, n := range counts {
			if n == 0 {
				t.Errorf("worker %d served none of 64 new connections", i)
			}
			// The supervisor's /metrics has each worker's series.
			if m := served(t, admin[0], strconv.Itoa(i)); m != n {
				t.Errorf("the supervisor's /metrics says worker %d served %d, the worker's %d", i, m, n)
			}
		}
		if body := get(t, admin[0], "/ready", 200); !strings.Contains(body, "worker 0 ("+admin[1]+"): ready\nworker 1 ("+admin[2]+"): ready") {
			t.Errorf("the supervisor's /ready: %q", body)
		}
		if body := get(t, admin[2], "/config", 200); !strings.Contains(body, `"AdminListening": "`+admin[2]+`"`) {
			t.Errorf("worker 1's /config does not say where its admin server is: %s", body)
		}
		if body := get(t, admin[0], "/config", 404); !strings.Contains(body, "worker 1: "+admin[2]) {
			t.Errorf("the supervisor's /config does not point to the workers': %q", body)
		}

		// A hung worker (stopped) costs a scrape its own series only,
		// within the scraper's timeout, and fails /ready.
		syscall.Kill(s.pids[1], syscall.SIGSTOP)
		stopped(t, s.pids[1]) // every thread: SIGSTOP is not synchronous
		req, _ := http.NewRequest("GET", "http://"+admin[0]+"/metrics", nil)
		req.Header.Set("X-Prometheus-Scrape-Timeout-Seconds", "1")
		began := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		took := time.Since(began)
		if !strings.Contains(string(body), `tracehop_worker_up{worker="1"} 0`) || !strings.Contains(string(body), `tracehop_worker_up{worker="0"} 1`) ||
			!strings.Contains(string(body), `route="route0",worker="0"}`) || strings.Contains(string(body), `route="route0",worker="1"}`) {
			t.Errorf("with worker 1 hung, the merged /metrics:\n%s", body)
		}
		if took > 3*time.Second {
			t.Errorf("with worker 1 hung, a scrape with a 1 s timeout took %s", took)
		}
		if body := get(t, admin[0], "/ready", 503); !strings.Contains(body, "worker 0 ("+admin[1]+"): ready\nworker 1 ("+admin[2]+"): ") {
			t.Errorf("the supervisor's /ready with worker 1 hung: %q", body)
		}
		syscall.Kill(s.pids[1], syscall.SIGCONT)

		// SIGHUP reloads every worker, each keeping its admin address;
		// both report the file's config hash.
		s.cmd.Process.Signal(syscall.SIGHUP)
		h0 := s.await(t, "reload 0", regexp.MustCompile(`msg="config reloaded" worker=0 config=\S+ hash=(\w+)`))
		h1 := s.await(t, "reload 1", regexp.MustCompile(`msg="config reloaded" worker=1 config=\S+ hash=(\w+)`))
		if h0[1] != h1[1] {
			t.Errorf("the workers' config hashes differ: %s and %s", h0[1], h1[1])
		}
		if strings.Contains(s.logs.String(), "admin.address changes") {
			t.Errorf("a reload took the worker's admin address for a change:\n%s", s.logs.String())
		}

		// A worker that dies is started again, on its admin address.
		syscall.Kill(s.pids[1], syscall.SIGKILL)
		m := s.await(t, "restart", regexp.MustCompile(`msg="worker serving again" worker=1 pid=(\d+)`))
		again, _ := strconv.Atoi(m[1])
		if again == s.pids[1] || again == 0 {
			t.Errorf("worker 1 serves again as pid %d, was %d", again, s.pids[1])
		}
		killed := s.pids[1]
		s.pids[1] = again
		get(t, admin[2], "/ready", 200)
		if body := get(t, admin[0], "/metrics", 200); !strings.Contains(body, `tracehop_worker_restarts_total{worker="1"} 1`) ||
			!strings.Contains(body, `tracehop_worker_up{worker="1"} 1`) || !strings.Contains(body, "tracehop_workers 2") ||
			!strings.Contains(body, "\nprocess_resident_memory_bytes ") || !strings.Contains(body, `process_resident_memory_bytes{worker="1"} `) {
			t.Errorf("the supervisor's /metrics after the restart:\n%s", body)
		}

		s.cmd.Process.Signal(syscall.SIGTERM)
		if err := s.exited(t); err != nil {
			t.Errorf("the supervisor exited with %v, want 0:\n%s", err, s.logs.String())
		}
		gone(t, "after SIGTERM", s.pids[0], s.pids[1], killed)
		for _, want := range []string{`msg=stopped worker=0`, `msg=stopped worker=1`, `msg=stopped workers=2`} {
			if !strings.Contains(s.logs.String(), want) {
				t.Errorf("the log lacks %q:\n%s", want, s.logs.String())
			}
		}
	})

	t.Run("Ctrl-C to the process group", func(t *testing.T) {
		s := startWorkers(t, bin, cfg, admin)
		// A request in flight keeps its worker draining when the
		// supervisor's SIGTERM follows the SIGINT: it must finish.
		slow := make(chan error, 1)
		go func() {
			resp, err := http.Get("http://" + addr + "/slow")
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(b) != "ok" {
					err = fmt.Errorf("%s %q", resp.Status, b)
				}
			}
			slow <- err
		}()
		<-slowIn                                         // in flight
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGINT) // each worker gets it twice
		if err := <-slow; err != nil {
			t.Errorf("the request in flight at Ctrl-C: %v", err)
		}
		if err := s.exited(t); err != nil {
			t.Errorf("the supervisor exited with %v, want 0:\n%s", err, s.logs.String())
		}
		if strings.Contains(s.logs.String(), "did not stop cleanly") || strings.Count(s.logs.String(), "msg=stopped worker=") != 2 {
			t.Errorf("the workers did not both drain and stop:\n%s", s.logs.String())
		}
	})

	t.Run("supervisor killed", func(t *testing.T) {
		s := startWorkers(t, bin, cfg, admin)
		s.cmd.Process.Kill()
		s.exited(t)
		gone(t, "after the supervisor's SIGKILL", s.pids[0], s.pids[1])
	})

	// Traced: each worker's spans reach the file (its driver and the
	// other worker's append to it under a lock), and the exemplars the
	// workers leave on their duration histograms come through the
	// supervisor's /metrics to a scraper asking for OpenMetrics, with
	// the trace ids of spans in the file.
	t.Run("traced: spans and exemplars", func(t *testing.T) {
		spans := filepath.Join(dir, "spans.jsonl")
		traced := config("tracing:\n  plugin_dir: " + dir + "\n  sampling: {random: 100}\n  driver: {name: file, config: {path: " + spans + "}}\n")
		s := startWorkers(t, bin, traced, admin)
		client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		const requests = 32
		for range requests {
			resp, err := client.Get("http://" + addr + "/")
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		req, _ := http.NewRequest("GET", "http://"+admin[0]+"/metrics", nil)
		req.Header.Set("Accept", "application/openmetrics-text; version=1.0.0")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text") {
			t.Errorf("the supervisor answered an OpenMetrics scrape with %q", ct)
		}
		exemplar := regexp.MustCompile(`(?m)^tracehop_request_duration_seconds_bucket\{[^}]*worker="(\d)"[^}]*\} \d+ # \{trace_id="([0-9a-f]{32})"\}`)
		found := exemplar.FindAllStringSubmatch(string(body), -1)
		workers := map[string]bool{}
		for _, m := range found {
			workers[m[1]] = true
		}
		if !workers["0"] || !workers["1"] {
			t.Fatalf("the merged /metrics has exemplars of workers %v, want both:\n%s", workers, body)
		}
		s.cmd.Process.Signal(syscall.SIGTERM) // the workers flush their spans as they stop
		if err := s.exited(t); err != nil {
			t.Fatalf("the supervisor exited with %v, want 0:\n%s", err, s.logs.String())
		}
		b, err := os.ReadFile(spans)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) != requests {
			t.Errorf("the file has %d spans, want %d, one per request", len(lines), requests)
		}
		for i, l := range lines {
			var span struct{ TraceID string }
			if err := json.Unmarshal([]byte(l), &span); err != nil || len(span.TraceID) != 32 {
				t.Fatalf("line %d of the spans file is not a whole span (%v): %q", i+1, err, l)
			}
		}
		for _, m := range found {
			if !bytes.Contains(b, []byte(`"traceId":"`+m[2]+`"`)) {
				t.Errorf("worker %s's exemplar names trace %s, which no span in the file has", m[1], m[2])
			}
		}
	})

	// A SIGHUP while a worker is starting again reaches it once it
	// serves, never before (a SIGHUP before its handler is installed
	// would kill it): it reloads, the same process, restarted once.
	t.Run("SIGHUP while a worker restarts", func(t *testing.T) {
		s := startWorkers(t, bin, cfg, admin)
		// Catch the new worker as it starts, before it serves, and hold
		// it there: three tries, since it may serve first.
		var again, tries, from int
		for held := false; !held; {
			if tries++; tries > 3 {
				t.Fatalf("worker 1, started again, served each time before it could be stopped:\n%s", s.logs.String())
			}
			from = s.mark()
			syscall.Kill(s.pids[1], syscall.SIGKILL)
			again = 0
			for deadline := time.Now().Add(10 * time.Second); again == 0 && time.Now().Before(deadline); time.Sleep(200 * time.Microsecond) {
				for _, pid := range childPIDs(s.cmd.Process.Pid) {
					if pid != s.pids[0] && pid != s.pids[1] {
						syscall.Kill(pid, syscall.SIGSTOP)
						again = pid
					}
				}
			}
			if again == 0 {
				t.Fatalf("worker 1 was not started again:\n%s", s.logs.String())
			}
			stopped(t, again)
			// Held before it served: the supervisor has it as starting
			// (its log may lag behind the ready line it got).
			if resp, err := http.Get("http://" + admin[0] + "/ready"); err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				held = strings.Contains(string(body), "worker 1: starting")
			}
			if !held {
				syscall.Kill(again, syscall.SIGCONT)
				s.awaitFrom(t, "worker 1 serves again", regexp.MustCompile(`msg="worker serving again" worker=1`), from)
				s.pids[1] = again
			}
		}
		s.cmd.Process.Signal(syscall.SIGHUP)
		s.await(t, "worker 0 reloads", regexp.MustCompile(`msg="config reloaded" worker=0`))
		syscall.Kill(again, syscall.SIGCONT)
		m := s.awaitFrom(t, "worker 1 serves again", regexp.MustCompile(`msg="worker serving again" worker=1 pid=(\d+)`), from)
		if m[1] != strconv.Itoa(again) {
			t.Errorf("worker 1 serves again as pid %s, want %d:\n%s", m[1], again, s.logs.String())
		}
		s.awaitFrom(t, "worker 1 reloads", regexp.MustCompile(`msg="config reloaded" worker=1`), from)
		if body := get(t, admin[0], "/metrics", 200); !strings.Contains(body, fmt.Sprintf(`tracehop_worker_restarts_total{worker="1"} %d`, tries)) {
			t.Errorf("worker 1 was restarted more than the %d times it was killed (the SIGHUP killed it?):\n%s\n%s", tries, body, s.logs.String())
		}
		s.cmd.Process.Signal(syscall.SIGTERM)
		if err := s.exited(t); err != nil {
			t.Errorf("the supervisor exited with %v, want 0:\n%s", err, s.logs.String())
		}
	})

	// The workers run one config. The supervisor checks a new one before
	// any worker reloads it: one they could not all run (a listener
	// without reuse_port) or an invalid one is refused for all, and a
	// worker started again after that runs what the others run, not the
	// file. Worker i's admin server stays at the supervisor's admin port
	// + 1 + i when the file's admin.address changes. A worker asked
	// directly (POST /reload) refuses what its supervisor would.
	t.Run("one config for every worker", func(t *testing.T) {
		body := func(adminAddr, extra string) string {
			return fmt.Sprintf(`admin: {address: %q}
listeners:
  - {name: in, address: %q, direction: ingress, reuse_port: true, routes: [{match: {prefix: /}, cluster: up}]}
%sclusters:
  - {name: up, endpoints: [%q]}
`, adminAddr, addr, extra, strings.TrimPrefix(up.URL, "http://"))
		}
		path := writeConfig(t, body(admin[0], ""))
		rewrite := func(content string) {
			t.Helper()
			if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		s := startWorkers(t, bin, path, admin)
		// Validated before a reload, while it runs: its addresses are
		// the running supervisor's and workers'.
		var stdout, stderr bytes.Buffer
		if code := run([]string{"validate", "-c", path, "-workers", "2"}, &stdout, &stderr); code != exitOK ||
			!strings.Contains(stdout.String(), "a tracehop serves admin.address "+admin[0]+": the 1 listener addresses it holds are not checked, the 0 new ones are") {
			t.Errorf("validate -workers 2 while the config runs: exit code %d:\n%s%s", code, stdout.String(), stderr.String())
		}
		// A new listener's address is checked: taken by another program,
		// the reload would fail on it.
		taken, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer taken.Close()
		rewrite(body(admin[0], fmt.Sprintf("  - {name: extra, address: %q, direction: ingress, reuse_port: true, routes: [{match: {prefix: /}, cluster: up}]}\n", taken.Addr())))
		stdout.Reset()
		stderr.Reset()
		if code := run([]string{"validate", "-c", path, "-workers", "2"}, &stdout, &stderr); code != exitFailure ||
			!strings.Contains(stdout.String(), "the 1 new ones are") || !strings.Contains(stderr.String(), taken.Addr().String()) {
			t.Errorf("validate -workers 2 while the config runs, a new listener on a taken address: exit code %d:\n%s%s", code, stdout.String(), stderr.String())
		}
		rewrite(body(admin[0], ""))
		reloads := func() int { return strings.Count(s.logs.String(), `msg="reloading the config"`) }
		refused := func() int {
			return strings.Count(s.logs.String(), `msg="config reload refused: every worker keeps the config it runs"`)
		}

		// A listener the workers cannot share.
		rewrite(body(admin[0], fmt.Sprintf("  - {name: extra, address: %q, direction: ingress, routes: [{match: {prefix: /}, cluster: up}]}\n", freeAddr(t))))
		s.cmd.Process.Signal(syscall.SIGHUP)
		s.await(t, "refused", regexp.MustCompile(`config reload refused: every worker keeps the config it runs" problem=".*listeners\[1\]: .*needs reuse_port: true`))
		// Invalid.
		rewrite(body(admin[0], "") + "  - {name: other, endpoints: [\"127.0.0.1:1\"], nosuchkey: 1}\n")
		s.cmd.Process.Signal(syscall.SIGHUP)
		for deadline := time.Now().Add(10 * time.Second); refused() < 2 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		}
		if refused() < 2 || !strings.Contains(s.logs.String(), "nosuchkey") {
			t.Fatalf("the invalid config was not refused, naming its key:\n%s", s.logs.String())
		}
		if n := reloads(); n != 0 {
			t.Errorf("workers reloaded %d times a config the supervisor refused:\n%s", n, s.logs.String())
		}
		// Worker 0 dies: it comes back on the config the others run.
		syscall.Kill(s.pids[0], syscall.SIGKILL)
		m := s.await(t, "worker 0 again", regexp.MustCompile(`msg="worker serving again" worker=0 pid=(\d+) admin=(\S+)`))
		if m[2] != admin[1] {
			t.Errorf("worker 0 serves again with its admin server on %s, want %s", m[2], admin[1])
		}
		s.pids[0], _ = strconv.Atoi(m[1])
		get(t, admin[0], "/ready", 200)

		// A worker asked directly hands the reload to its supervisor,
		// which checks it for all.
		rewrite(body(admin[0], fmt.Sprintf("  - {name: extra, address: %q, direction: ingress, routes: [{match: {prefix: /}, cluster: up}]}\n", freeAddr(t))))
		resp, err := http.Post("http://"+admin[1]+"/reload", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted || !strings.Contains(string(b), "asked the supervisor (pid "+strconv.Itoa(s.cmd.Process.Pid)+") to reload every worker") {
			t.Errorf("POST /reload on worker 0: %s %s", resp.Status, b)
		}
		for deadline := time.Now().Add(10 * time.Second); refused() < 3 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		}
		if refused() < 3 || reloads() != 0 {
			t.Errorf("worker 0's POST /reload of a listener without reuse_port: the supervisor refused %d configs in all (want 3), the workers reloaded %d times (want 0):\n%s", refused(), reloads(), s.logs.String())
		}

		// A config every worker refuses as it applies it (its driver
		// refuses its config: no check before can tell) is not the one a
		// worker started again gets.
		rewrite(body(admin[0], "") + "tracing:\n  plugin_dir: " + dir + "\n  driver: {name: file, config: {path: /proc/no/such/dir/spans.jsonl}}\n")
		s.cmd.Process.Signal(syscall.SIGHUP)
		s.await(t, "no worker took it", regexp.MustCompile(`msg="no worker took the config`))
		syscall.Kill(s.pids[1], syscall.SIGKILL)
		m = s.await(t, "worker 1 again", regexp.MustCompile(`msg="worker serving again" worker=1 pid=(\d+)`))
		s.pids[1], _ = strconv.Atoi(m[1])
		get(t, admin[0], "/ready", 200)
		if strings.Contains(s.logs.String(), "a worker did not start") || strings.Count(s.logs.String(), "a worker exited: starting it again") != 2 {
			t.Errorf("worker 1 did not come back at once on the config the others run:\n%s", s.logs.String())
		}

		// The file goes wrong while a slow worker has yet to read it: the
		// worker that took the config the supervisor checked stays on
		// it, the slow one is started again with it.
		rewrite(body(admin[0], "") + "# another config than the one running\n")
		syscall.Kill(s.pids[1], syscall.SIGSTOP)
		stopped(t, s.pids[1])
		from := s.mark()
		s.cmd.Process.Signal(syscall.SIGHUP)
		s.awaitFrom(t, "worker 0 reloads", regexp.MustCompile(`msg="config reloaded" worker=0`), from)
		rewrite(body(admin[0], "") + "bogus: [\n")
		syscall.Kill(s.pids[1], syscall.SIGCONT)
		s.awaitFrom(t, "worker 1 refuses", regexp.MustCompile(`msg="config reload refused: the running config stays in force" worker=1`), from)
		s.awaitFrom(t, "worker 1 stopped", regexp.MustCompile(`msg="workers do not run the config the others run: stopping them, to start them again with it, so that every worker runs one config" config=\S+ workers=\[1\]`), from)
		m = s.awaitFrom(t, "worker 1 again", regexp.MustCompile(`msg="worker serving again" worker=1 pid=(\d+)`), from)
		s.pids[1], _ = strconv.Atoi(m[1])
		if body := get(t, admin[0], "/metrics", 200); !strings.Contains(body, `tracehop_workers_config_reloads_total{result="refused"} 3`) ||
			!strings.Contains(body, `tracehop_workers_config_reloads_total{result="failure"} 1`) || !strings.Contains(body, `tracehop_workers_config_reloads_total{result="partial"} 1`) {
			t.Errorf("the supervisor's reload counts:\n%s", body)
		}
		hashes := regexp.MustCompile(`tracehop_config_info\{hash="(\w+)",worker="(\d)"\} 1`).FindAllStringSubmatch(get(t, admin[0], "/metrics", 200), -1)
		if len(hashes) != 2 || hashes[0][1] != hashes[1][1] {
			t.Errorf("after the slow worker came back, the workers run %v, want one config", hashes)
		}

		// A new admin.address: accepted, the admin servers stay.
		rewrite(body(freeAddr(t), ""))
		s.cmd.Process.Signal(syscall.SIGHUP)
		for i := range 2 {
			s.await(t, fmt.Sprintf("worker %d reloads", i), regexp.MustCompile(fmt.Sprintf(`msg="config reloaded" worker=%d`, i)))
		}
		s.await(t, "every worker took it", regexp.MustCompile(`msg="every worker runs the config"`))
		if !strings.Contains(s.logs.String(), "admin.address changes when the supervisor (tracehop run -workers) starts again") {
			t.Errorf("no warning that admin.address changes on the supervisor's restart:\n%s", s.logs.String())
		}
		from = s.mark()
		syscall.Kill(s.pids[1], syscall.SIGKILL)
		m = s.awaitFrom(t, "worker 1 again", regexp.MustCompile(`msg="worker serving again" worker=1 pid=\d+ admin=(\S+)`), from)
		if m[1] != admin[2] {
			t.Errorf("after admin.address changed in the file, worker 1 serves again with its admin server on %s, want %s", m[1], admin[2])
		}
		get(t, admin[0], "/ready", 200)
		s.cmd.Process.Signal(syscall.SIGTERM)
		if err := s.exited(t); err != nil {
			t.Errorf("the supervisor exited with %v, want 0:\n%s", err, s.logs.String())
		}
	})

	// The file watch is the supervisor's: a change reloads every worker
	// once.
	t.Run("file watch", func(t *testing.T) {
		path := config("")
		s := startWorkers(t, bin, path, admin, "-watch=true")
		b, _ := os.ReadFile(path)
		if err := os.WriteFile(path, append(b, "# changed\n"...), 0o644); err != nil {
			t.Fatal(err)
		}
		for i := range 2 {
			s.await(t, fmt.Sprintf("worker %d reloads", i), regexp.MustCompile(fmt.Sprintf(`msg="config reloaded" worker=%d`, i)))
		}
		time.Sleep(2500 * time.Millisecond) // a watch of its own in a worker would reload it again by now
		if n := strings.Count(s.logs.String(), `msg="reloading the config"`); n != 2 {
			t.Errorf("one change of the file: %d reloads, want 2 (one per worker):\n%s", n, s.logs.String())
		}
		// A change reloaded by SIGHUP at once is not reloaded again when
		// the watch sees it.
		if err := os.WriteFile(path, append(b, "# changed again\n"...), 0o644); err != nil {
			t.Fatal(err)
		}
		from := s.mark()
		s.cmd.Process.Signal(syscall.SIGHUP)
		for i := range 2 {
			s.awaitFrom(t, fmt.Sprintf("worker %d reloads again", i), regexp.MustCompile(fmt.Sprintf(`msg="config reloaded" worker=%d`, i)), from)
		}
		time.Sleep(2500 * time.Millisecond) // the watch, a second a look, has seen the change by now
		if n := strings.Count(s.logs.String(), `msg="reloading the config"`); n != 4 {
			t.Errorf("a change, then SIGHUP: %d reloads in all, want 4 (one per worker each time):\n%s", n, s.logs.String())
		}
		s.cmd.Process.Signal(syscall.SIGTERM)
		s.exited(t)
	})

	// A SIGHUP while the workers first start (here: as soon as the
	// supervisor has begun, a traced config so that starting takes a
	// while) waits until every worker serves, then reloads them all: it
	// must not fail the start.
	t.Run("SIGHUP during the first start", func(t *testing.T) {
		traced := config("tracing:\n  plugin_dir: " + dir + "\n  sampling: {random: 100}\n  driver: {name: file, config: {path: " + filepath.Join(t.TempDir(), "spans.jsonl") + "}}\n")
		s := &supervised{logs: &syncBuffer{}, done: make(chan error, 1)}
		s.cmd = exec.Command(bin, "run", "-c", traced, "-workers", "2", "-access-log=false", "-watch=false")
		s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
		s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := s.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { s.done <- s.cmd.Wait() }()
		t.Cleanup(func() { syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL) })
		s.await(t, "start", regexp.MustCompile(`msg="starting workers`))
		s.cmd.Process.Signal(syscall.SIGHUP)
		s.await(t, "running", regexp.MustCompile(`tracehop is running as a supervisor`))
		if strings.Contains(s.logs.String(), "a worker did not start") || strings.Contains(s.logs.String(), `msg="worker serving" worker=1`) &&
			strings.Index(s.logs.String(), `msg="reloading: every worker`) >= 0 && strings.Index(s.logs.String(), `msg="reloading: every worker`) < strings.Index(s.logs.String(), `msg="worker serving" worker=1`) {
			t.Fatalf("a SIGHUP during the first start reloaded before every worker served, or failed the start:\n%s", s.logs.String())
		}
		s.await(t, "the reload", regexp.MustCompile(`msg="every worker runs the config"`))
		get(t, admin[0], "/ready", 200)
		s.cmd.Process.Signal(syscall.SIGTERM)
		if err := s.exited(t); err != nil {
			t.Errorf("the supervisor exited with %v, want 0:\n%s", err, s.logs.String())
		}
	})

	// A storm of edits and SIGHUPs (an operator's script, a config
	// management run) ends with every worker on the file's last content:
	// one round at a time, none of them restarting a worker.
	t.Run("a storm of reloads", func(t *testing.T) {
		// Traced: node.id is the drivers', so each reload starts them
		// again and takes a while, and SIGHUPs overlap reloads.
		spans := filepath.Join(t.TempDir(), "spans.jsonl")
		content := func(k int) string {
			return fmt.Sprintf(`node: {id: storm%d}
admin: {address: %q}
listeners:
  - {name: in, address: %q, direction: ingress, reuse_port: true, routes: [{match: {prefix: /}, cluster: up}]}
clusters:
  - {name: up, endpoints: [%q]}
tracing:
  plugin_dir: %s
  driver: {name: file, config: {path: %s}}
`, k, admin[0], addr, strings.TrimPrefix(up.URL, "http://"), dir, spans)
		}
		path := writeConfig(t, content(0))
		s := startWorkers(t, bin, path, admin)
		for k := 1; k <= 5; k++ {
			if err := os.WriteFile(path, []byte(content(k)), 0o644); err != nil {
				t.Fatal(err)
			}
			s.cmd.Process.Signal(syscall.SIGHUP)
			time.Sleep(40 * time.Millisecond) // shorter than a traced reload
		}
		last, err := proxyconfig.Parse(path, []byte(content(5)))
		if err != nil {
			t.Fatal(err)
		}
		want := proxy.HashConfig(last)
		var body string
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			body = get(t, admin[0], "/metrics", 200)
			if strings.Contains(body, `tracehop_config_info{hash="`+want+`",worker="0"} 1`) && strings.Contains(body, `tracehop_config_info{hash="`+want+`",worker="1"} 1`) {
				break
			}
		}
		if !strings.Contains(body, `tracehop_config_info{hash="`+want+`",worker="0"} 1`) || !strings.Contains(body, `tracehop_config_info{hash="`+want+`",worker="1"} 1`) {
			t.Fatalf("after the storm, the workers do not both run the file's last config (hash %s):\n%s\n%s", want, body, s.logs.String())
		}
		if !strings.Contains(body, `tracehop_worker_restarts_total{worker="0"} 0`) || !strings.Contains(body, `tracehop_worker_restarts_total{worker="1"} 0`) {
			t.Errorf("the storm restarted workers:\n%s\n%s", body, s.logs.String())
		}
		s.cmd.Process.Signal(syscall.SIGTERM)
		if err := s.exited(t); err != nil {
			t.Errorf("the supervisor exited with %v, want 0:\n%s", err, s.logs.String())
		}
	})

	// A worker that stops answering (here: stopped) is killed and started
	// again after -worker-timeout.
	t.Run("a hung worker", func(t *testing.T) {
		s := startWorkers(t, bin, cfg, admin, "-worker-timeout=2s")
		syscall.Kill(s.pids[1], syscall.SIGSTOP)
		began := time.Now()
		m := s.await(t, "worker 1 again", regexp.MustCompile(`msg="worker serving again" worker=1 pid=(\d+)`))
		if took := time.Since(began); took < 2*time.Second {
			t.Errorf("the hung worker was replaced after %s, before -worker-timeout=2s", took)
		}
		if m[1] == strconv.Itoa(s.pids[1]) {
			t.Errorf("worker 1 serves again as the same process %s", m[1])
		}
		if !regexp.MustCompile(`msg="a worker has not answered its admin server's /healthz: killing it [^"]*" worker=1 pid=` + strconv.Itoa(s.pids[1])).MatchString(s.logs.String()) {
			t.Errorf("the log does not say why worker 1 was killed:\n%s", s.logs.String())
		}
		get(t, admin[0], "/ready", 200)
		if regexp.MustCompile(`killing it [^"]*" worker=0`).MatchString(s.logs.String()) {
			t.Errorf("worker 0, which answers, was killed:\n%s", s.logs.String())
		}
		s.cmd.Process.Signal(syscall.SIGTERM)
		if err := s.exited(t); err != nil {
			t.Errorf("the supervisor exited with %v, want 0:\n%s", err, s.logs.String())
		}
	})

	// A worker that keeps dying waits longer and longer before it is
	// started again; a new config in force starts it at once.
	t.Run("a crashing worker starts at once on a new config", func(t *testing.T) {
		own := config("")
		s := startWorkers(t, bin, own, admin)
		pid := s.pids[1]
		for _, in := range []string{"1s", "2s", "4s"} {
			from := s.mark()
			syscall.Kill(pid, syscall.SIGKILL)
			s.awaitFrom(t, "worker 1 waits "+in, regexp.MustCompile(`msg="a worker exited: starting it again" worker=1 [^\n]* in=`+in), from)
			if in == "4s" {
				break
			}
			m := s.awaitFrom(t, "worker 1 again", regexp.MustCompile(`msg="worker serving again" worker=1 pid=(\d+)`), from)
			pid, _ = strconv.Atoi(m[1])
		}
		b, err := os.ReadFile(own)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(own, append(b, "node: {id: fixed}\n"...), 0o644); err != nil {
			t.Fatal(err)
		}
		from := s.mark()
		began := time.Now()
		s.cmd.Process.Signal(syscall.SIGHUP)
		s.awaitFrom(t, "worker 1 started at once", regexp.MustCompile(`msg="the config changed: starting a worker that was waiting out its crashes' backoff now" worker=1`), from)
		s.awaitFrom(t, "worker 1 again", regexp.MustCompile(`msg="worker serving again" worker=1`), from)
		if took := time.Since(began); took >= 3500*time.Millisecond {
			t.Errorf("worker 1 served again %s after the new config, as if it had waited out its 4s backoff", took)
		}
		s.cmd.Process.Signal(syscall.SIGTERM)
		if err := s.exited(t); err != nil {
			t.Errorf("the supervisor exited with %v, want 0:\n%s", err, s.logs.String())
		}
	})

	// Without admin servers nothing asks a worker whether it answers, but a
	// reload does: one that leaves it unanswered for -worker-timeout (here:
	// stopped) is killed and started again with the config the other took,
	// and the reloads after it are not held back.
	t.Run("a worker that does not answer a reload, admin off", func(t *testing.T) {
		body := func(node string) string {
			return fmt.Sprintf(`node: {id: %s}
admin: {address: "off"}
listeners:
  - {name: in, address: %q, direction: ingress, reuse_port: true, routes: [{match: {prefix: /}, cluster: up}]}
clusters:
  - {name: up, endpoints: [%q]}
`, node, addr, strings.TrimPrefix(up.URL, "http://"))
		}
		off := writeConfig(t, body("first"))
		s := startWorkers(t, bin, off, [3]string{"off", "off", "off"}, "-worker-timeout=2s")
		syscall.Kill(s.pids[1], syscall.SIGSTOP)
		stopped(t, s.pids[1])
		if err := os.WriteFile(off, []byte(body("second")), 0o644); err != nil {
			t.Fatal(err)
		}
		from := s.mark()
		began := time.Now()
		s.cmd.Process.Signal(syscall.SIGHUP)
		s.awaitFrom(t, "worker 1 killed", regexp.MustCompile(`msg="a worker has not answered the reload: killing it [^"]*" worker=1 pid=`+strconv.Itoa(s.pids[1])), from)
		if took := time.Since(began); took < 2*time.Second {
			t.Errorf("worker 1 was killed %s after the SIGHUP, before -worker-timeout=2s", took)
		}
		m := s.awaitFrom(t, "worker 1 again", regexp.MustCompile(`msg="worker serving again" worker=1 pid=(\d+)`), from)
		if m[1] == strconv.Itoa(s.pids[1]) {
			t.Errorf("worker 1 serves again as the same process %s", m[1])
		}
		// The next reload is a round of its own, answered by both.
		if err := os.WriteFile(off, []byte(body("third")), 0o644); err != nil {
			t.Fatal(err)
		}
		from = s.mark()
		s.cmd.Process.Signal(syscall.SIGHUP)
		s.awaitFrom(t, "the next reload", regexp.MustCompile(`msg="every worker runs the config"`), from)
		if strings.Contains(s.logs.String()[from:], "do not run the config") {
			t.Errorf("after the restart, the workers ran different configs:\n%s", s.logs.String())
		}
		s.cmd.Process.Signal(syscall.SIGTERM)
		if err := s.exited(t); err != nil {
			t.Errorf("the supervisor exited with %v, want 0:\n%s", err, s.logs.String())
		}
	})

	// A worker that cannot start fails the start with its exit code (3: a
	// driver refused its config, which the supervisor does not check),
	// and the one started is stopped.
	t.Run("a worker cannot start", func(t *testing.T) {
		bad := config("tracing:\n  plugin_dir: " + dir + "\n  driver: {name: file, config: {path: /proc/no/such/dir/spans.jsonl}}\n")
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, "run", "-c", bad, "-workers", "2", "-watch=false").CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != exitInvalid {
			t.Fatalf("with a driver refusing its config: %v, want exit code %d:\n%s", err, exitInvalid, out)
		}
		if want := `msg="a worker did not start: stopping the others" worker=0`; !bytes.Contains(out, []byte(want)) {
			t.Errorf("the output lacks %q:\n%s", want, out)
		}

		// Worker 1's admin port taken (another supervisor of the same
		// config, say): exit 1, the port named as worker 1's.
		ln, err := net.Listen("tcp", admin[2])
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		out, err = exec.CommandContext(ctx, bin, "run", "-c", cfg, "-workers", "2", "-watch=false").CombinedOutput()
		if !errors.As(err, &ee) || ee.ExitCode() != exitFailure {
			t.Fatalf("with worker 1's admin port taken: %v, want exit code %d:\n%s", err, exitFailure, out)
		}
		for _, want := range []string{"this worker's admin server, on admin.address's port + 2: listener", "cannot listen on " + admin[2],
			"each tracehop process needs its own", `msg="a worker did not start: stopping the others" worker=1`} {
			if !bytes.Contains(out, []byte(want)) {
				t.Errorf("the output lacks %q:\n%s", want, out)
			}
		}
	})
}

// childPIDs returns the processes whose parent is ppid, from the children
// lists of its threads (any of which may have forked one).
func childPIDs(ppid int) []int {
	lists, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", ppid))
	var out []int
	for _, l := range lists {
		b, _ := os.ReadFile(l)
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				out = append(out, pid)
			}
		}
	}
	return out
}

// served reads the count of 2xx answers from an admin server's metrics:
// a worker's own, or with worker set, that worker's series in the
// supervisor's.
func served(t *testing.T, admin, worker string) int {
	t.Helper()
	label := ""
	if worker != "" {
		label = `,worker="` + worker + `"`
	}
	re := regexp.MustCompile(`tracehop_requests_total\{cluster="up",code_class="2xx",listener="in",route="route0"` + label + `\} (\d+)`)
	m := re.FindStringSubmatch(get(t, admin, "/metrics", 200))
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// get returns the body of an admin server's path, which must answer code.
func get(t *testing.T, admin, path string, code int) string {
	t.Helper()
	resp, err := http.Get("http://" + admin + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != code {
		t.Errorf("GET %s%s: %s, want %d:\n%s", admin, path, resp.Status, code, b)
	}
	return string(b)
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// freeAdminRun returns three free loopback addresses on consecutive
// ports: the admin servers of a supervisor and of its two workers.
func freeAdminRun(t *testing.T) [3]string {
	t.Helper()
	for range 50 {
		a := freeAddr(t)
		_, port, _ := net.SplitHostPort(a)
		p, _ := strconv.Atoi(port)
		run := [3]string{a}
		free := true
		for i := 1; i < 3 && free; i++ {
			run[i] = net.JoinHostPort("127.0.0.1", strconv.Itoa(p+i))
			ln, err := net.Listen("tcp", run[i])
			if free = err == nil; free {
				ln.Close()
			}
		}
		if free {
			return run
		}
	}
	t.Fatal("no three consecutive free ports")
	return [3]string{}
}

// A worker's reload gives up after its supervisor's -worker-timeout, and
// never after more than a minute; a process that is no worker gets the
// minute.
func TestWorkerReloadTimeout(t *testing.T) {
	for _, c := range []struct {
		env  string
		want time.Duration
	}{{"", time.Minute}, {"2s", 2 * time.Second}, {"30s", 30 * time.Second}, {"5m", time.Minute}, {"0s", time.Minute}, {"soon", time.Minute}} {
		t.Setenv(envWorkerReload, c.env)
		if got := workerReloadTimeout(); got != c.want {
			t.Errorf("%s=%q: %s, want %s", envWorkerReload, c.env, got, c.want)
		}
	}
}
