package proxy_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// chaosLong is true under `make chaos`: faults last as long as the issue
// says (a minute down, a 10-minute soak); CI runs short versions.
var chaosLong = os.Getenv("TRACEHOP_CHAOS") == "long"

func chaosDur(short, long time.Duration) time.Duration {
	if chaosLong {
		return long
	}
	return short
}

// collector is a Zipkin collector stand-in whose behaviour the test flips:
// ok, down (connection refused), slow (answers after 3s), late (stores at
// once, answers 450 ms later), 500, 429. It decodes the real Zipkin v2 JSON
// and counts distinct span ids, and ids stored again (dups).
type collector struct {
	addr string
	mu   sync.Mutex
	ln   net.Listener
	srv  *http.Server
	mode string
	ids  map[string]bool
	hits map[string]int
	dups int
}

func newCollector(t *testing.T) *collector {
	c := &collector{addr: freePort(t), mode: "ok", ids: map[string]bool{}, hits: map[string]int{}}
	c.listen(t)
	t.Cleanup(func() { c.setMode(t, "down") })
	return c
}

func (c *collector) endpoint() string { return "http://" + c.addr + "/api/v2/spans" }

func (c *collector) listen(t *testing.T) {
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ { // the port may linger briefly after a close
		if ln, err = net.Listen("tcp", c.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("collector: re-listen on %s: %v", c.addr, err)
	}
	c.ln = ln
	c.srv = &http.Server{Handler: http.HandlerFunc(c.serve), ReadHeaderTimeout: 5 * time.Second}
	go c.srv.Serve(ln)
}

func (c *collector) setMode(t *testing.T, mode string) {
	c.mu.Lock()
	old := c.mode
	c.mode = mode
	c.mu.Unlock()
	switch {
	case mode == "down" && old != "down":
		c.srv.Close()
	case mode != "down" && old == "down":
		c.listen(t)
	}
}

func (c *collector) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	mode := c.mode
	c.hits[mode]++
	c.mu.Unlock()
	switch mode {
	case "500":
		http.Error(w, "injected", http.StatusInternalServerError)
		return
	case "429":
		http.Error(w, "injected", http.StatusTooManyRequests)
		return
	case "slow":
		time.Sleep(3 * time.Second)
	}
	var spans []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(body, &spans); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	for _, s := range spans {
		if c.ids[s.ID] {
			c.dups++
		}
		c.ids[s.ID] = true
	}
	c.mu.Unlock()
	if mode == "late" {
		time.Sleep(450 * time.Millisecond)
	}
	w.WriteHeader(http.StatusAccepted)
}

func (c *collector) received() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.ids)
}

// duplicates counts spans stored again after their first time.
func (c *collector) duplicates() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dups
}

// traced is one tracehop process (edge listener -> an in-process upstream)
// with the zipkin driver reporting to a collector.
type traced struct {
	proc          *proc
	addr, admin   string
	upstreamCalls atomic.Int64
}

func startTraced(t *testing.T, col *collector, extraTracing string, upstream http.HandlerFunc) *traced {
	t.Helper()
	return startTracedOpts(t, col, tracedOpts{extraTracing: extraTracing, upstream: upstream})
}

// tracedOpts vary startTraced's process.
type tracedOpts struct {
	extraTracing string // more keys of the tracing block
	driverExtra  string // more keys of the driver block, e.g. ", env: {K: V}"
	configExtra  string // more keys of the driver's own config
	args         []string
	upstream     http.HandlerFunc
}

func startTracedOpts(t *testing.T, col *collector, o tracedOpts) *traced {
	t.Helper()
	upstream := o.upstream
	bin := binaries(t, "zipkin")
	tr := &traced{addr: freePort(t), admin: freePort(t)}
	if upstream == nil {
		upstream = func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			fmt.Fprint(w, "ok")
		}
	}
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		tr.upstreamCalls.Add(1)
		upstream(w, r)
	})
	cfg := fmt.Sprintf(`node: {id: chaos, service: chaos}
admin: {address: %q}
listeners:
  - {name: edge, address: %q, direction: ingress, read_header_timeout: 2s,
     routes: [{match: {prefix: /}, cluster: app, timeout: 5s}]}
clusters:
  - {name: app, endpoints: [%q]}
tracing:
  plugin_dir: %s
  driver: {name: zipkin, config: {collector_endpoint: %q, timeout: 1s%s}%s}
%s`, tr.admin, tr.addr, up.addr(), bin, col.endpoint(), o.configExtra, o.driverExtra, o.extraTracing)
	path := filepath.Join(t.TempDir(), "tracehop.yaml")
	os.WriteFile(path, []byte(cfg), 0o644)
	args := append([]string{filepath.Join(bin, "tracehop"), "run", "-c", path, "-access-log=false"}, o.args...)
	tr.proc = startProc(t, "tracehop", args...)
	waitReady(t, tr.proc, "http://"+tr.admin+"/ready")
	return tr
}

// metric reads one sample from tracehop's /metrics: name{labels} value.
func (tr *traced) metric(t *testing.T, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + tr.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	total := 0.0
	found := false
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, series+" ") {
			v, _ := strconv.ParseFloat(strings.TrimSpace(line[len(series):]), 64)
			total += v
			found = true
		}
	}
	if !found {
		return math.NaN()
	}
	return total
}

// dropped sums tracehop_spans_dropped_total over every reason.
func (tr *traced) dropped(t *testing.T) float64 {
	n := 0.0
	for _, r := range []string{"queue_full", "retries_exhausted", "rejected", "shutdown"} {
		if v := tr.metric(t, `tracehop_spans_dropped_total{driver="zipkin",reason="`+r+`"}`); !math.IsNaN(v) {
			n += v
		}
	}
	return n
}

// rss reads a process's resident memory from /proc.
func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// load sends GETs at about rate per second until stop is closed and counts
// the outcomes. Each request gets a fresh connection-pooled client.
type load struct {
	issued     atomic.Int64 // requests started
	ok, failed atomic.Int64
	firstErr   atomic.Value
	issuing    chan struct{} // closed once no more requests will start
	done       chan struct{} // closed once every request has finished
}

func startLoad(url string, rate int, stop <-chan struct{}) *load {
	l := &load{issuing: make(chan struct{}), done: make(chan struct{})}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	go func() {
		defer close(l.done)
		var wg sync.WaitGroup
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for {
			select {
			case <-stop:
				close(l.issuing)
				wg.Wait()
				return
			case <-tick.C:
				l.issued.Add(1)
				wg.Go(func() {
					resp, err := client.Get(url)
					if err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != 200 {
							err = fmt.Errorf("status %d", resp.StatusCode)
						}
					}
					if err != nil {
						l.failed.Add(1)
						l.firstErr.CompareAndSwap(nil, err.Error())
						return
					}
					l.ok.Add(1)
				})
			}
		}
	}()
	return l
}

// driverPid finds the tracehop-driver-NAME child of pid.
func driverPid(t *testing.T, parent int, name string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			if err != nil {
				continue
			}
			s := string(stat)
			open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
			if open < 0 || close < 0 {
				continue
			}
			comm := s[open+1 : close]
			fields := strings.Fields(s[close+2:])
			if len(fields) > 1 && strings.HasPrefix("tracehop-driver-"+name, comm) && fields[1] == strconv.Itoa(parent) {
				return pid
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no tracehop-driver-%s child of %d", name, parent)
	return 0
}

// result is one row of the README's reliability table.
type result struct {
	Fault    string `json:"fault"`
	Measured string `json:"measured"`
	Bound    string `json:"bound"`
}

// report records a row: printed in the test log, and appended as JSON to
// $TRACEHOP_RELIABILITY_OUT when set (make chaos renders the table from it).
func report(t *testing.T, r result) {
	t.Logf("RELIABILITY | %s | %s | %s", r.Fault, r.Measured, r.Bound)
	if out := os.Getenv("TRACEHOP_RELIABILITY_OUT"); out != "" {
		f, err := os.OpenFile(out, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err == nil {
			json.NewEncoder(f).Encode(r)
			f.Close()
		}
	}
}
