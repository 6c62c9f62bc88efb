package proxy_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// idCollector is a Zipkin v2 JSON receiver that records the request id
// tag of every span, to tell which driver each request's span reached.
type idCollector struct {
	addr string
	mu   sync.Mutex
	ids  map[string]int
}

func newIDCollector(t *testing.T) *idCollector {
	c := &idCollector{addr: freePort(t), ids: map[string]int{}}
	srv := &http.Server{Addr: c.addr, ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var spans []struct {
			Tags map[string]string `json:"tags"`
		}
		if err := json.NewDecoder(r.Body).Decode(&spans); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		for _, s := range spans {
			c.ids[s.Tags["guid:x-request-id"]]++
		}
		c.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	})}
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return c
}

// reloadStage is one config of the reload test: what it changes, and the
// driver that receives spans while it is in force ("" for a config that
// must be refused: the driver before it stays).
type reloadStage struct {
	what, yaml, sink string
}

// 20 reloads under 500 req/s through a real tracehop and real drivers:
// routes added and removed, cluster endpoints changed, sampling 100 -> 10
// -> 100, a listener added and removed, the driver switched file -> zipkin
// -> file, a broken config in the middle. No request fails, every sampled
// request's span reaches the driver in force when the request began
// (exactly once), and nothing grows: descriptors, goroutines, driver
// processes.
func TestReliabilityReloadUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("a minute of load through real processes; run without -short")
	}
	bin := binaries(t, "file", "zipkin")
	col := newIDCollector(t)
	var sampledMu sync.Mutex
	sampled := map[string]string{} // request id -> the sampling decision the upstream saw (upstreamSampled)
	record := func(w http.ResponseWriter, r *http.Request) {
		sampledMu.Lock()
		sampled[r.Header.Get("X-Request-Id")] = upstreamSampled(r.Header.Get)
		sampledMu.Unlock()
		fmt.Fprint(w, "ok")
	}
	up1, up2 := newUpstream(t, record), newUpstream(t, record)
	dir := t.TempDir()
	path := filepath.Join(dir, "tracehop.yaml")
	port, admin, extra := freePort(t), freePort(t), freePort(t)
	fileSink := func(n int) string { return filepath.Join(dir, fmt.Sprintf("spans-%d.jsonl", n)) }
	type knobs struct {
		extraRoute, extraListener bool
		endpoint                  string
		sampling                  int
		driver                    string // "zipkin" or a file path
	}
	render := func(k knobs) string {
		routes := "[{match: {prefix: /}, cluster: c1}]"
		if k.extraRoute {
			routes = "[{match: {prefix: /extra}, cluster: c2}, {match: {prefix: /}, cluster: c1}]"
		}
		listeners := fmt.Sprintf("  - {name: edge, address: %s, direction: ingress, routes: %s}\n", port, routes)
		if k.extraListener {
			listeners += fmt.Sprintf("  - {name: extra, address: %s, direction: ingress, routes: %s}\n", extra, routes)
		}
		driver := fmt.Sprintf("{name: file, config: {path: %s}}", k.driver)
		if k.driver == "zipkin" {
			driver = fmt.Sprintf("{name: zipkin, config: {collector_endpoint: 'http://%s/api/v2/spans'}}", col.addr)
		}
		return fmt.Sprintf(`node: {id: reload, service: reload}
admin: {address: %s}
listeners:
%sclusters:
  - {name: c1, endpoints: [%s]}
  - {name: c2, endpoints: [%s]}
tracing:
  plugin_dir: %s
  driver: %s
  sampling: {random: %d}
  queue: {batch_delay: 50ms}
`, admin, listeners, k.endpoint, up2.addr(), bin, driver, k.sampling)
	}
	k := knobs{endpoint: up1.addr(), sampling: 100, driver: fileSink(0)}
	stages := []reloadStage{{"initial", render(k), k.driver}}
	files := 1
	for cycle := range 2 {
		add := func(what string, change func()) {
			change()
			stages = append(stages, reloadStage{what, render(k), k.driver})
		}
		add("route added", func() { k.extraRoute = true })
		add("route removed, endpoints changed", func() {
			k.extraRoute = false
			k.endpoint = map[bool]string{true: up2.addr(), false: up1.addr()}[cycle == 0]
		})
		add("sampling 10", func() { k.sampling = 10 })
		add("sampling 100", func() { k.sampling = 100 })
		add("listener added", func() { k.extraListener = true })
		add("listener removed", func() { k.extraListener = false })
		add("driver zipkin", func() { k.driver = "zipkin" })
		stages = append(stages, reloadStage{"broken config", "listeners: [{name: edge, address: " + port + ", routes: [{cluster: nowhere}]}]\n", ""})
		add("driver file", func() { k.driver = fileSink(files); files++ })
		if cycle == 1 {
			add("route added", func() { k.extraRoute = true })
			add("route removed", func() { k.extraRoute = false })
		}
	}
	reloads := len(stages) - 1
	if err := os.WriteFile(path, []byte(stages[0].yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	tr := &traced{addr: port, admin: admin}
	tr.proc = startProc(t, "tracehop", filepath.Join(bin, "tracehop"), "run", "-c", path, "-access-log=false", "-watch=false", "-drain-timeout=10s")
	waitReady(t, tr.proc, "http://"+admin+"/ready")

	// Load: each request has an id of its own, and the time it began.
	type req struct {
		id    string
		start time.Time
	}
	var (
		reqMu    sync.Mutex
		reqs     []req
		ok, fail atomic.Int64
		firstErr atomic.Value
		wg       sync.WaitGroup
		n        atomic.Int64
	)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	send := func(addr, path string) {
		id := fmt.Sprintf("req-%d", n.Add(1))
		r, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		r.Header.Set("X-Request-Id", id)
		start := time.Now()
		resp, err := client.Do(r)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				err = fmt.Errorf("%s%s: status %d", addr, path, resp.StatusCode)
			}
		}
		if err != nil {
			fail.Add(1)
			firstErr.CompareAndSwap(nil, err.Error())
			return
		}
		ok.Add(1)
		reqMu.Lock()
		reqs = append(reqs, req{id, start})
		reqMu.Unlock()
	}
	stop := make(chan struct{})
	const rate = 500
	extraOn := atomic.Bool{}
	// What tracehop holds before any load: what it holds after, once the
	// load's connections are closed, must not have grown.
	upPorts := []int{up1.Listener.Addr().(*net.TCPAddr).Port, up2.Listener.Addr().(*net.TCPAddr).Port}
	fds0, goroutines0 := countFDs(tr.proc.cmd.Process.Pid, upPorts...), tr.metric(t, "go_goroutines")
	loaderDone := make(chan struct{})
	go func() {
		defer close(loaderDone)
		tick := time.NewTicker(time.Second / rate)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			wg.Go(func() {
				switch {
				case extraOn.Load() && i%10 == 0:
					send(extra, "/x")
				case i%2 == 0:
					send(port, "/extra/x") // the extra route while it exists, else /
				default:
					send(port, "/x")
				}
			})
		}
	}()

	total := chaosDur(20*time.Second, 60*time.Second)
	interval := total / time.Duration(reloads+1)
	type window struct {
		sent, done time.Time
		sink       string // in force from done on
	}
	windows := []window{{done: time.Time{}, sink: stages[0].sink}}
	inForce := stages[0].sink
	attempts := func() float64 {
		return tr.metric(t, `tracehop_config_reloads_total{result="success"}`) + tr.metric(t, `tracehop_config_reloads_total{result="failure"}`)
	}
	for i, st := range stages[1:] {
		time.Sleep(interval)
		before := attempts()
		if st.what == "listener removed" {
			extraOn.Store(false)
			time.Sleep(50 * time.Millisecond) // requests to it finish first
		}
		os.WriteFile(path, []byte(st.yaml), 0o644)
		sent := time.Now()
		tr.proc.cmd.Process.Signal(syscall.SIGHUP)
		for deadline := time.Now().Add(30 * time.Second); attempts() == before; {
			if time.Now().After(deadline) {
				t.Fatalf("reload %d (%s) did not finish", i+1, st.what)
			}
			time.Sleep(5 * time.Millisecond)
		}
		if st.sink != "" {
			inForce = st.sink
		}
		if st.what == "listener added" {
			extraOn.Store(true)
		}
		windows = append(windows, window{sent: sent, done: time.Now(), sink: inForce})
	}
	time.Sleep(interval)
	close(stop)
	<-loaderDone
	wg.Wait()
	client.CloseIdleConnections()
	time.Sleep(time.Second) // the last retirement; tracehop sees the closes
	fds1, goroutines1 := countFDs(tr.proc.cmd.Process.Pid, upPorts...), tr.metric(t, "go_goroutines")
	driverProcs := len(childPids(tr.proc.cmd.Process.Pid))
	failures := tr.metric(t, `tracehop_config_reloads_total{result="failure"}`)
	tr.proc.stop(t) // flushes the drivers in force

	// Where did each span go?
	found := map[string][]string{}
	for i := range files {
		for _, s := range readSpanFile(t, fileSink(i)) {
			id, _ := s.Tag("guid:x-request-id")
			found[id] = append(found[id], fileSink(i))
		}
	}
	col.mu.Lock()
	for id, c := range col.ids {
		for range c {
			found[id] = append(found[id], "zipkin")
		}
	}
	col.mu.Unlock()
	allowed := func(start time.Time) []string {
		// The driver in force when the request began; within a reload,
		// either side of it.
		var out []string
		for i, w := range windows {
			next := time.Now()
			if i+1 < len(windows) {
				next = windows[i+1].sent
			}
			if (i == 0 || !start.Before(w.sent)) && start.Before(next) {
				out = append(out, w.sink)
				if !start.After(w.done) && i > 0 {
					out = append(out, windows[i-1].sink)
				}
			}
		}
		return out
	}
	var lost, wrong, twice, unsampledSpans, sampledReqs int
	var example string
	for _, r := range reqs {
		sampledMu.Lock()
		s := sampled[r.id]
		sampledMu.Unlock()
		got := found[r.id]
		if s != "1" {
			if len(got) > 0 {
				unsampledSpans++
			}
			continue
		}
		sampledReqs++
		switch {
		case len(got) == 0:
			lost++
			example = cmpOr(example, r.id+" lost")
		case len(got) > 1:
			twice++
		default:
			ok := false
			for _, a := range allowed(r.start) {
				ok = ok || a == got[0]
			}
			if !ok {
				wrong++
				example = cmpOr(example, fmt.Sprintf("%s began %s, went to %s, allowed %v", r.id, r.start.Format("15:04:05.000"), got[0], allowed(r.start)))
			}
		}
	}
	if fail.Load() != 0 {
		t.Errorf("%d of %d requests failed across %d reloads (first: %v)", fail.Load(), fail.Load()+ok.Load(), reloads, firstErr.Load())
	}
	if lost+wrong+twice+unsampledSpans > 0 {
		t.Errorf("of %d sampled requests: %d spans lost, %d at a driver not in force when the request began, %d delivered twice; %d spans of unsampled requests (e.g. %s)",
			sampledReqs, lost, wrong, twice, unsampledSpans, example)
	}
	if failures != 2 {
		t.Errorf("%v reloads failed, want the 2 broken configs", failures)
	}
	if fds1 > fds0+8 || goroutines1 > goroutines0+20 || driverProcs != 1 {
		t.Errorf("growth across the reloads: descriptors %d -> %d, goroutines %v -> %v, %d driver processes (want 1)", fds0, fds1, goroutines0, goroutines1, driverProcs)
	}
	report(t, result{
		Fault: fmt.Sprintf("%d config reloads (SIGHUP) under %d req/s for %s: routes, endpoints, sampling, a listener, the driver file -> zipkin -> file, 2 broken configs", reloads, rate, total),
		Measured: fmt.Sprintf("%d/%d requests ok; %d/%d sampled spans at the driver in force when their request began, %d lost, %d twice; %v refused; descriptors %d -> %d, goroutines %v -> %v",
			ok.Load(), ok.Load()+fail.Load(), sampledReqs-lost-wrong-twice, sampledReqs, lost, twice, failures, fds0, fds1, goroutines0, goroutines1),
		Bound: "no failed request; no span lost or misrouted; no growth",
	})
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// countFDs counts pid's open descriptors but its TCP connections to the
// given remote ports: pooled upstream connections stay open (idle up to
// 90 s) by design, and their number follows the load, not the reloads.
func countFDs(pid int, exceptPorts ...int) int {
	remote := map[string]int{} // socket inode -> remote port
	for _, table := range []string{"tcp", "tcp6"} {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 {
				continue
			}
			_, port, _ := strings.Cut(f[2], ":")
			var p int
			fmt.Sscanf(port, "%X", &p)
			remote[f[9]] = p
		}
	}
	entries, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	n := 0
	for _, e := range entries {
		link, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
		if inode, ok := strings.CutPrefix(link, "socket:["); ok {
			if p, ok := remote[strings.TrimSuffix(inode, "]")]; ok && slices.Contains(exceptPorts, p) {
				continue
			}
		}
		n++
	}
	return n
}

// childPids lists the processes whose parent is pid.
func childPids(pid int) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		var child int
		if _, err := fmt.Sscanf(e.Name(), "%d", &child); err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child))
		if err != nil {
			continue
		}
		s := string(stat)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(fields) > 1 && fields[1] == fmt.Sprint(pid) {
			out = append(out, child)
		}
	}
	return out
}
