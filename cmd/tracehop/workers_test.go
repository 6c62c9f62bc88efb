package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tracehop/tracehop/sdk/drivertest"
)

func TestWorkersFlagAndAdmin(t *testing.T) {
	var w workersFlag
	for _, bad := range []string{"0", "-1", "two", "257"} {
		if err := w.Set(bad); err == nil {
			t.Errorf("-workers %s was taken", bad)
		}
	}
	if err := w.Set("auto"); err != nil || w.n != runtime.GOMAXPROCS(0) {
		t.Errorf("-workers auto: %d, %v; want GOMAXPROCS's %d", w.n, err, runtime.GOMAXPROCS(0))
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
		got, err := workerAdmin(c.addr, c.i)
		if err != nil {
			got = err.Error()
		}
		if !strings.Contains(got, c.want) {
			t.Errorf("workerAdmin(%s, %d) = %s, want %s", c.addr, c.i, got, c.want)
		}
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
		`tracehop.yaml:4: listeners[1] ("out", 127.0.0.1:0): set reuse_port: true, so that the 2 workers can share its address`,
		`tracehop.yaml:1: admin.address 127.0.0.1:65535: worker 1's admin server would be on port 65536, past 65535`,
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("the error lacks %q:\n%s", want, stderr.String())
		}
	}
	if strings.Contains(stderr.String(), "listeners[0]") {
		t.Errorf("the listener with reuse_port was named:\n%s", stderr.String())
	}
}

// tracehop run -workers 2, from the outside: both workers serve one
// address, SIGHUP reloads both, a killed worker is started again, SIGTERM
// stops everything; a worker that cannot start fails the start.
func TestRunWorkers(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("-workers is Linux only")
	}
	bin := filepath.Join(t.TempDir(), "tracehop")
	if err := drivertest.BuildDriver("github.com/tracehop/tracehop/cmd/tracehop", bin); err != nil {
		t.Fatal(err)
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()
	addr := freeAddr(t)
	admin := freeAdminPair(t)
	cfg := writeConfig(t, fmt.Sprintf(`admin: {address: %q}
listeners:
  - {name: in, address: %q, direction: ingress, reuse_port: true, routes: [{match: {prefix: /}, cluster: up}]}
clusters:
  - {name: up, endpoints: [%q]}
`, admin[0], addr, strings.TrimPrefix(up.URL, "http://")))

	var logs syncBuffer
	cmd := exec.Command(bin, "run", "-c", cfg, "-workers", "2", "-access-log=false", "-watch=false")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		<-done
	}()
	await := func(what string, re *regexp.Regexp) []string {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if m := re.FindStringSubmatch(logs.String()); m != nil {
				return m
			}
		}
		t.Fatalf("%s: no log line matches %s:\n%s", what, re, logs.String())
		return nil
	}
	await("start", regexp.MustCompile(`tracehop is running as a supervisor`))
	pids := map[string]int{}
	for _, w := range []string{"0", "1"} {
		m := await("worker "+w, regexp.MustCompile(`msg="worker serving" worker=`+w+` pid=(\d+) admin=(\S+)`))
		pids[w], _ = strconv.Atoi(m[1])
		if want := admin[w[0]-'0']; m[2] != want {
			t.Errorf("worker %s's admin server is on %s, want %s", w, m[2], want)
		}
	}

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
	total := 0
	for i, a := range admin {
		n := served(t, a)
		if n == 0 {
			t.Errorf("worker %d served none of 64 new connections", i)
		}
		total += n
	}
	if total != 64 {
		t.Errorf("the workers served %d requests, want 64", total)
	}

	// SIGHUP reloads every worker.
	cmd.Process.Signal(syscall.SIGHUP)
	await("reload 0", regexp.MustCompile(`msg="config reloaded" worker=0`))
	await("reload 1", regexp.MustCompile(`msg="config reloaded" worker=1`))

	// A worker that dies is started again, on its admin address.
	syscall.Kill(pids["1"], syscall.SIGKILL)
	m := await("restart", regexp.MustCompile(`msg="worker serving again" worker=1 pid=(\d+)`))
	if again, _ := strconv.Atoi(m[1]); again == pids["1"] || again == 0 {
		t.Errorf("worker 1 serves again as pid %s, was %d", m[1], pids["1"])
	}
	pids["1again"], _ = strconv.Atoi(m[1])
	if resp, err := http.Get("http://" + admin[1] + "/ready"); err != nil || resp.StatusCode != 200 {
		t.Errorf("the restarted worker's /ready: %v %v", resp, err)
	}

	// SIGTERM stops the workers and then the supervisor, cleanly.
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		done <- err
		if err != nil {
			t.Errorf("the supervisor exited with %v, want 0:\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the supervisor did not stop within 30s of SIGTERM:\n%s", logs.String())
	}
	for name, pid := range pids {
		if syscall.Kill(pid, 0) == nil {
			t.Errorf("worker %s (pid %d) still runs after its supervisor stopped", name, pid)
		}
	}
	if !strings.Contains(logs.String(), `msg=stopped workers=2`) {
		t.Errorf("no final stop line:\n%s", logs.String())
	}

	// A worker that cannot start fails the start with its exit code, and
	// the ones started are stopped: here the address is held without
	// reuse_port.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	out, err := exec.Command(bin, "run", "-c", cfg, "-workers", "2", "-watch=false").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitFailure {
		t.Fatalf("with the address taken: %v, want exit code %d:\n%s", err, exitFailure, out)
	}
	for _, want := range []string{"another process holds it without reuse_port", `msg="a worker did not start: stopping the others" worker=0`} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("the output lacks %q:\n%s", want, out)
		}
	}
}

// served reads a worker's count of 2xx answers from its metrics.
func served(t *testing.T, admin string) int {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`tracehop_requests_total\{cluster="up",code_class="2xx"[^}]*\} (\d+)`).FindSubmatch(b)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
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

// freeAdminPair returns two free loopback addresses on consecutive ports,
// the admin addresses of two workers.
func freeAdminPair(t *testing.T) [2]string {
	t.Helper()
	for range 50 {
		a := freeAddr(t)
		_, port, _ := net.SplitHostPort(a)
		p, _ := strconv.Atoi(port)
		b := net.JoinHostPort("127.0.0.1", strconv.Itoa(p+1))
		if ln, err := net.Listen("tcp", b); err == nil {
			ln.Close()
			return [2]string{a, b}
		}
	}
	t.Fatal("no two consecutive free ports")
	return [2]string{}
}
