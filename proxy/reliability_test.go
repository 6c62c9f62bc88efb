package proxy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// waitDelivered waits until every span is either at the collector or
// counted as dropped by tracehop, and returns both counts.
func waitDelivered(t *testing.T, tr *traced, col *collector, want int64) (received int, dropped float64) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		received, dropped = col.received(), tr.dropped(t)
		if int64(received)+int64(dropped) >= want || time.Now().After(deadline) {
			return received, dropped
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// The driver is SIGKILLed again and again under steady load: no request
// fails, the driver is back quickly, and every span arrives (batches the
// dead driver had not acknowledged are re-sent).
func TestReliabilityDriverKilled(t *testing.T) {
	col := newCollector(t)
	tr := startTraced(t, col, "  queue: {batch_delay: 50ms}\n", nil)
	stop := make(chan struct{})
	l := startLoad("http://"+tr.addr+"/kill", 200, stop)
	kills := int(chaosDur(6*time.Second, 60*time.Second) / (2 * time.Second))
	var worst time.Duration
	for range kills {
		time.Sleep(2 * time.Second)
		pid := driverPid(t, tr.proc.cmd.Process.Pid, "zipkin")
		killed := time.Now()
		syscall.Kill(pid, syscall.SIGKILL)
		for {
			if next := driverPid(t, tr.proc.cmd.Process.Pid, "zipkin"); next != pid && tr.metric(t, `tracehop_driver_up{driver="zipkin"}`) == 1 {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		worst = max(worst, time.Since(killed))
	}
	close(stop)
	<-l.done
	received, dropped := waitDelivered(t, tr, col, l.ok.Load())
	restarts := tr.metric(t, `tracehop_driver_restarts_total{driver="zipkin"}`)
	tr.proc.stop(t)
	if l.failed.Load() != 0 {
		t.Errorf("%d requests failed (first: %v)", l.failed.Load(), l.firstErr.Load())
	}
	if int64(received) != l.ok.Load() || dropped != 0 {
		t.Errorf("%d requests, %d spans received, %v dropped: want every span", l.ok.Load(), received, dropped)
	}
	if restarts < float64(kills) {
		t.Errorf("%v restarts for %d kills", restarts, kills)
	}
	report(t, result{
		Fault:    fmt.Sprintf("driver SIGKILLed %d times under 200 req/s", kills),
		Measured: fmt.Sprintf("%d/%d requests ok; %d/%d spans delivered, %v dropped; driver back within %s", l.ok.Load(), l.ok.Load()+l.failed.Load(), received, l.ok.Load(), dropped, worst.Round(time.Millisecond)),
		Bound:    "no failed request; no span lost",
	})
}

// The collector goes away (or turns slow, or answers 500 or 429) and comes
// back: requests are untouched, memory stays bounded by the queue, every
// span is delivered or counted as dropped, and delivery resumes by itself.
func TestReliabilityCollectorFaults(t *testing.T) {
	for _, mode := range []string{"down", "slow", "500", "429"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			col := newCollector(t)
			tr := startTraced(t, col, "  queue: {batch_delay: 50ms}\n", nil)
			stop := make(chan struct{})
			l := startLoad("http://"+tr.addr+"/"+mode, 100, stop)
			time.Sleep(time.Second)
			fault := chaosDur(5*time.Second, time.Minute)
			col.setMode(t, mode)
			var peak int64
			for end := time.Now().Add(fault); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
				peak = max(peak, rss(tr.proc.cmd.Process.Pid))
			}
			before := col.received()
			col.setMode(t, "ok")
			time.Sleep(2 * time.Second)
			close(stop)
			<-l.done
			received, dropped := waitDelivered(t, tr, col, l.ok.Load())
			tr.proc.stop(t)
			if l.failed.Load() != 0 {
				t.Errorf("%d requests failed during the fault (first: %v)", l.failed.Load(), l.firstErr.Load())
			}
			// Nothing unaccounted: every span is delivered or counted as
			// dropped. A slow collector may store a batch after tracehop
			// stopped waiting for it: then it is both (counted
			// pessimistically), never neither.
			if sent := l.ok.Load(); int64(received) > sent || int64(received)+int64(dropped) < sent {
				t.Errorf("%d spans sent: %d delivered + %v counted as dropped", sent, received, dropped)
			}
			if received <= before {
				t.Errorf("delivery did not resume after the fault")
			}
			const limit = 128 << 20
			if peak > limit {
				t.Errorf("tracehop's RSS reached %d MiB during the fault", peak>>20)
			}
			report(t, result{
				Fault:    fmt.Sprintf("collector %s for %s under 100 req/s", map[string]string{"down": "down", "slow": "slow (answers after 3s; driver timeout 1s)", "500": "answering 500", "429": "answering 429"}[mode], fault),
				Measured: fmt.Sprintf("%d/%d requests ok; %d spans delivered, %v dropped (counted); peak RSS %d MiB", l.ok.Load(), l.ok.Load()+l.failed.Load(), received, dropped, peak>>20),
				Bound:    "no failed request; every span delivered or counted as dropped; RSS < 128 MiB (queue of 8192 spans)",
			})
		})
	}
}

// SIGTERM with requests in flight: they complete, every queued span reaches
// the collector, tracehop exits 0.
func TestReliabilityGracefulShutdownUnderLoad(t *testing.T) {
	col := newCollector(t)
	tr := startTraced(t, col, "", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
		fmt.Fprint(w, "ok")
	})
	stop := make(chan struct{})
	l := startLoad("http://"+tr.addr+"/slow", 100, stop)
	time.Sleep(2 * time.Second)
	close(stop) // no new requests; those in flight go on
	<-l.issuing
	// SIGTERM only once every request issued has reached the upstream
	// (which holds each for 300 ms): then each is truly in flight, not
	// still dialling.
	for deadline := time.Now().Add(5 * time.Second); tr.upstreamCalls.Load() < l.issued.Load() && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	inFlight := tr.upstreamCalls.Load() - l.ok.Load()
	tr.proc.stop(t)
	<-l.done
	if l.failed.Load() != 0 {
		t.Errorf("%d requests failed across the shutdown (first: %v)", l.failed.Load(), l.firstErr.Load())
	}
	if int64(col.received()) != l.ok.Load() {
		t.Errorf("%d requests served, %d spans reached the collector", l.ok.Load(), col.received())
	}
	report(t, result{
		Fault:    "SIGTERM under load (300 ms upstream)",
		Measured: fmt.Sprintf("about %d requests in flight at SIGTERM; %d/%d requests ok; %d/%d spans delivered; exit 0", inFlight, l.ok.Load(), l.ok.Load()+l.failed.Load(), col.received(), l.ok.Load()),
		Bound:    "in-flight requests complete; no span lost; exit 0",
	})
}

func rawRequest(t *testing.T, addr, req string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(conn, req)
	status, _ := bufio.NewReader(conn).ReadString('\n')
	return strings.TrimSpace(status)
}

// Request smuggling, slow clients and huge header blocks get the right
// refusal and do not disturb other clients.
func TestReliabilityHostileClients(t *testing.T) {
	col := newCollector(t)
	var mu sync.Mutex
	var seen []string // what the upstream received: method, path, body length
	tr := startTraced(t, col, "", func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		mu.Lock()
		seen = append(seen, fmt.Sprintf("%s %s %d", r.Method, r.URL.Path, n))
		mu.Unlock()
		fmt.Fprint(w, "ok")
	})
	// Content-Length with Transfer-Encoding: as RFC 9112 asks of an
	// intermediary, Transfer-Encoding wins, Content-Length is removed and the
	// request is re-framed before it is forwarded, so tracehop and the
	// upstream cannot disagree on where a request ends. The bytes after the
	// chunked body are the client's own next request, routed and traced.
	cases := []struct{ name, req, want string }{
		{"CL and TE together", "POST /cl-te HTTP/1.1\r\nHost: x\r\nContent-Length: 30\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 200"},
		{"two Content-Lengths", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 30\r\n\r\nhelloGET /smuggled HTTP/1.1\r\n\r\n", "HTTP/1.1 400"},
		{"bad Transfer-Encoding", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", "HTTP/1.1 501"},
		{"huge header block", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 200<<10) + "\r\n\r\n", "HTTP/1.1 431"},
		{"oversized trace header", "GET / HTTP/1.1\r\nHost: x\r\ntraceparent: 00-" + strings.Repeat("f", 4000) + "\r\nConnection: close\r\n\r\n", "HTTP/1.1 200"},
	}
	for _, c := range cases {
		if got := rawRequest(t, tr.addr, c.req); !strings.HasPrefix(got, c.want) {
			t.Errorf("%s: %q, want %s", c.name, got, c.want)
		}
	}
	// Slowloris: connections that dribble their headers are cut at the
	// read-header timeout (2s here) while other clients are served.
	var slow []net.Conn
	for range 100 {
		c, err := net.Dial("tcp", tr.addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n")
		slow = append(slow, c)
	}
	stop := make(chan struct{})
	l := startLoad("http://"+tr.addr+"/normal", 50, stop)
	start := time.Now()
	cut := 0
	for _, c := range slow {
		c.SetDeadline(time.Now().Add(15 * time.Second))
		for {
			if _, err := io.WriteString(c, "X-A: b\r\n"); err != nil {
				cut++
				break
			}
			buf := make([]byte, 1)
			c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			if _, err := c.Read(buf); err != nil && !isTimeout(err) {
				cut++
				break
			}
			if time.Since(start) > 15*time.Second {
				break
			}
		}
		c.Close()
	}
	close(stop)
	<-l.done
	mu.Lock()
	hidden := 0
	for _, s := range seen {
		if strings.HasPrefix(s, "POST /cl-te") && s != "POST /cl-te 0" {
			hidden++ // the POST carried bytes of the next request in its body
		}
	}
	mu.Unlock()
	if cut != len(slow) || l.failed.Load() != 0 || hidden != 0 {
		t.Errorf("slow connections cut: %d/%d; normal requests failed: %d; requests hidden in a body: %d (upstream saw %v)", cut, len(slow), l.failed.Load(), hidden, seen)
	}
	smuggled := hidden
	report(t, result{
		Fault:    "request smuggling (CL+TE, two CLs, bad TE), huge headers, oversized trace header, 100 slowloris connections",
		Measured: fmt.Sprintf("CL+TE re-framed per RFC 9112 (TE wins, CL removed); two CLs 400; bad TE 501; 200 KiB header 431; oversized trace header ignored (200); %d/%d slow connections cut at the 2s read-header timeout while %d/%d normal requests were served; %d requests hidden in another's body", cut, len(slow), l.ok.Load(), l.ok.Load()+l.failed.Load(), smuggled),
		Bound:    "no desync with the upstream; each malformed request refused; other clients unaffected",
	})
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// Secrets in a driver's config never show in tracehop's logs (at debug
// level, with the collector refusing every report), /config or /metrics.
func TestReliabilitySecretsStayHidden(t *testing.T) {
	const secret = "s3cr3t-gateway-token"
	col := newCollector(t)
	col.setMode(t, "500") // every report fails: errors get logged
	tr := startTracedOpts(t, col, tracedOpts{
		configExtra: fmt.Sprintf(", headers: {Authorization: \"Bearer %s\"}", secret),
		driverExtra: fmt.Sprintf(", env: {GATEWAY_TOKEN: %q}", secret),
		args:        []string{"-log-level", "debug", "-access-log=true", "-drain-timeout", "2s"},
	})
	for range 20 {
		if resp, err := http.Get("http://" + tr.addr + "/x"); err == nil {
			resp.Body.Close()
		}
	}
	time.Sleep(1500 * time.Millisecond) // a failed export or two
	cfgDump, metrics := get(t, "http://"+tr.admin+"/config"), get(t, "http://"+tr.admin+"/metrics")
	tr.proc.stop(t)
	logs := tr.proc.output()
	if !strings.Contains(logs, "export failed") {
		t.Errorf("expected the failed exports in the log:\n%s", logs)
	}
	for where, text := range map[string]string{"logs": logs, "/config": cfgDump, "/metrics": metrics} {
		if strings.Contains(text, secret) {
			t.Errorf("the secret shows in %s", where)
		}
	}
	report(t, result{
		Fault:    "secrets in a driver's headers and env; debug logs; every report refused",
		Measured: fmt.Sprintf("secret absent from %d bytes of logs, from /config and /metrics", len(logs)),
		Bound:    "never shown",
	})
}

// Upstream faults leave no goroutine behind once tracehop has shut down.
func TestReliabilityNoLeaksAfterUpstreamFaults(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	closed := freePort(t)
	hang := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	reset := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		conn, _, _ := http.NewResponseController(w).Hijack()
		conn.Close()
	})
	counts := map[int]int{}
	for _, addr := range []string{closed, hang.addr(), reset.addr()} {
		cfg, err := configFor(addr)
		if err != nil {
			t.Fatal(err)
		}
		p := startProxy(t, cfg)
		client := &http.Client{}
		for range 20 {
			resp, err := client.Get("http://" + p.addr["l"] + "/")
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				counts[resp.StatusCode]++
			}
		}
		client.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		p.shutdown(ctx)
		cancel()
	}
	hang.CloseClientConnections()
	hang.Close()
	reset.Close()
	report(t, result{
		Fault:    "upstream refusing, hanging (route timeout 300ms), resetting mid-body; 20 requests each",
		Measured: fmt.Sprintf("statuses %v; no goroutine left after shutdown (goleak)", counts),
		Bound:    "503 / 504 / truncated 200 with an error span; no leak",
	})
}

func configFor(upstream string) (string, error) {
	return oneRoute("ingress", "true", upstream, ""), nil
}

// Mixed traffic with periodic driver kills: memory and goroutines stay flat.
// 20 s in CI; `make chaos` runs it for 10 minutes.
func TestReliabilitySoak(t *testing.T) {
	col := newCollector(t)
	tr := startTraced(t, col, "", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if strings.HasSuffix(r.URL.Path, "/err") {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, "ok")
	})
	total := chaosDur(20*time.Second, 10*time.Minute)
	every := chaosDur(2*time.Second, 10*time.Second)
	killEvery := chaosDur(5*time.Second, 30*time.Second)
	stop := make(chan struct{})
	loads := []*load{
		startLoad("http://"+tr.addr+"/soak/get", 150, stop),
		startLoad("http://"+tr.addr+"/soak/err", 20, stop), // 500s: error spans, counted as failed by the load
	}
	// POSTs with bodies, by hand.
	var posts, postFails int64
	postDone := make(chan struct{})
	go func() {
		defer close(postDone)
		body := strings.Repeat("x", 4096)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			resp, err := http.Post("http://"+tr.addr+"/soak/post", "text/plain", strings.NewReader(body))
			if err != nil || resp.StatusCode != 200 {
				postFails++
			} else {
				posts++
			}
			if err == nil {
				resp.Body.Close()
			}
		}
	}()
	type sample struct {
		at         time.Duration
		rss        int64
		goroutines float64
	}
	var samples []sample
	start := time.Now()
	lastKill := start
	kills := 0
	for time.Since(start) < total {
		time.Sleep(every)
		if time.Since(lastKill) >= killEvery {
			syscall.Kill(driverPid(t, tr.proc.cmd.Process.Pid, "zipkin"), syscall.SIGKILL)
			lastKill = time.Now()
			kills++
		}
		samples = append(samples, sample{time.Since(start).Round(time.Second), rss(tr.proc.cmd.Process.Pid), tr.metric(t, "go_goroutines")})
	}
	close(stop)
	for _, l := range loads {
		<-l.done
	}
	<-postDone
	requests := loads[0].ok.Load() + loads[1].failed.Load() + posts
	tr.proc.stop(t)
	var curve []string
	for _, s := range samples {
		curve = append(curve, fmt.Sprintf("%s:%dMiB/%v", s.at, s.rss>>20, s.goroutines))
	}
	t.Logf("soak curve (time:RSS/goroutines): %s", strings.Join(curve, " "))
	half := len(samples) / 2
	var firstRSS, lastRSS int64
	var firstG, lastG float64
	for i, s := range samples {
		if i < half {
			firstRSS, firstG = max(firstRSS, s.rss), max(firstG, s.goroutines)
		} else {
			lastRSS, lastG = max(lastRSS, s.rss), max(lastG, s.goroutines)
		}
	}
	if float64(lastRSS) > 1.5*float64(firstRSS)+8<<20 || lastG > firstG+50 {
		t.Errorf("growth: RSS %d -> %d MiB, goroutines %v -> %v", firstRSS>>20, lastRSS>>20, firstG, lastG)
	}
	if loads[0].failed.Load() != 0 || postFails != 0 {
		t.Errorf("failed requests: %d GETs, %d POSTs (first: %v)", loads[0].failed.Load(), postFails, loads[0].firstErr.Load())
	}
	report(t, result{
		Fault:    fmt.Sprintf("soak: %s of mixed GET/POST/500 traffic (~190 req/s), driver SIGKILLed every %s", total, killEvery),
		Measured: fmt.Sprintf("%d requests, %d kills; RSS max %d MiB in the first half, %d MiB in the second; goroutines %v then %v", requests, kills, firstRSS>>20, lastRSS>>20, firstG, lastG),
		Bound:    "RSS and goroutines flat (second half ≤ 1.5x the first + 8 MiB; goroutines + 50); no failed request",
	})
}

// TestRenderReliabilityTable writes the README's reliability table from the
// rows the reliability tests reported (make chaos runs it last).
func TestRenderReliabilityTable(t *testing.T) {
	rows, readme := os.Getenv("TRACEHOP_RELIABILITY_OUT"), os.Getenv("TRACEHOP_RENDER_README")
	if rows == "" || readme == "" {
		t.Skip("make chaos sets TRACEHOP_RELIABILITY_OUT and TRACEHOP_RENDER_README")
	}
	f, err := os.Open(rows)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	raw, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- reliability:begin -->\n", "<!-- reliability:end -->"
	s := string(raw)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		t.Fatalf("%s has no %q ... %q markers", readme, begin, end)
	}
	// A run replaces the rows of the faults it measured and keeps the
	// others, so that one test can refresh its own row.
	var order []string
	rowOf := map[string]string{}
	for _, line := range strings.Split(s[i+len(begin):j], "\n") {
		cells := strings.Split(line, " | ")
		if !strings.HasPrefix(line, "| ") || len(cells) < 3 || strings.HasPrefix(line, "| fault or hostile input") {
			continue
		}
		fault := strings.TrimPrefix(cells[0], "| ")
		order = append(order, fault)
		rowOf[fault] = line
	}
	dec := json.NewDecoder(f)
	for {
		var r result
		if err := dec.Decode(&r); err != nil {
			break
		}
		if _, ok := rowOf[r.Fault]; !ok {
			order = append(order, r.Fault)
		}
		rowOf[r.Fault] = fmt.Sprintf("| %s | %s | %s |", r.Fault, r.Measured, r.Bound)
	}
	var b strings.Builder
	b.WriteString("| fault or hostile input | measured | bound |\n|---|---|---|\n")
	for _, fault := range order {
		b.WriteString(rowOf[fault] + "\n")
	}
	s = s[:i+len(begin)] + b.String() + s[j:]
	if err := os.WriteFile(readme, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// tracehop SIGKILLed (the OOM killer, a forced pod deletion) cannot stop
// its driver: the driver notices its host is gone and exits on its own
// instead of living on as an orphan, and removes the socket directory its
// host would have removed.
func TestDriverExitsWhenTracehopIsKilled(t *testing.T) {
	col := newCollector(t)
	tr := startTraced(t, col, "", nil)
	pid := driverPid(t, tr.proc.cmd.Process.Pid, "zipkin")
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		t.Fatal(err)
	}
	var sockDir string
	for _, kv := range strings.Split(string(env), "\x00") {
		if v, ok := strings.CutPrefix(kv, "PLUGIN_UNIX_SOCKET_DIR="); ok {
			sockDir = v
		}
	}
	if _, err := os.Stat(sockDir); sockDir == "" || err != nil {
		t.Fatalf("the driver's socket directory %q: %v", sockDir, err)
	}
	tr.proc.cmd.Process.Kill()
	deadline := time.Now().Add(15 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("driver %d still runs 15 s after its host was killed", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := os.Stat(sockDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the driver's socket directory %s is left after its host was killed (%v)", sockDir, err)
	}
}
