package proxy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/core/propagation"
	"github.com/tracehop/tracehop/core/sampling"
	"github.com/tracehop/tracehop/internal/app"
	"github.com/tracehop/tracehop/proxy/config"
)

// A route may match a method: sampling rules by method and path (here
// POST /cart traced at 0%, the rest at 100%), on both HTTP paths.
func TestRouteMethodMatch(t *testing.T) {
	writes := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "writes") })
	reads := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "reads") })
	p := startProxy(t, fmt.Sprintf(`admin: {address: "127.0.0.1:0"}
listeners:
  - name: l
    address: "127.0.0.1:0"
    direction: ingress
    routes:
      - {name: cart-writes, match: {prefix: /cart, method: POST}, cluster: writes, tracing: {sampling: {random: 0}}}
      - {match: {prefix: /}, cluster: reads}
clusters:
  - {name: writes, endpoints: [%s]}
  - {name: reads, endpoints: [%s]}
`, writes.addr(), reads.addr())+tracingBlock)
	base := "http://" + p.addr["l"]
	for _, slow := range []bool{false, true} {
		hdr := map[string]string{}
		if slow {
			hdr["Connection"] = "x-slow-path" // net/http serves it
		}
		for _, c := range []struct{ method, path, want, sampled string }{
			{"POST", "/cart/1", "writes", "0"},
			{"GET", "/cart/1", "reads", "1"},
			{"PUT", "/cart/1", "reads", "1"},
			{"POST", "/other", "reads", "1"},
		} {
			resp, body := do(t, c.method, base+c.path, hdr)
			up := reads
			if c.want == "writes" {
				up = writes
			}
			if resp.StatusCode != 200 || body != c.want || upstreamSampled(up.header) != c.sampled {
				t.Errorf("slow path %v: %s %s went to %q (%s), sampled %q; want %s, sampled %s",
					slow, c.method, c.path, body, resp.Status, upstreamSampled(up.header), c.want, c.sampled)
			}
		}
	}
}

// Consistent probability sampling through two hops: an edge at 10% and a
// sidecar behind it at 50%, propagating tracecontext. The edge keeps a
// trace exactly when its trace id's randomness (low 56 bits) is at or
// above 10%'s threshold, and says so in tracestate (ot=th:e6666666666666,
// exact: 0.9 * 2^56); the sidecar keeps every trace the edge kept, and no
// other, and its spans carry the edge's threshold (what their traces were
// sampled at: an adjusted count of 10), not its own 50%'s.
func TestConsistentSamplingAcrossHops(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]string{} // traceparent -> tracestate at the upstream
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.Header.Get("Traceparent")] = r.Header.Get("Tracestate")
		mu.Unlock()
	})
	hop := func(name, random, trust, cluster string) *testProxy {
		return startProxy(t, fmt.Sprintf(`node: {id: %[1]s, service: %[1]s}
admin: {address: "127.0.0.1:0"}
listeners:
  - {name: l, address: "127.0.0.1:0", direction: ingress, trust_trace_headers: %[3]s, routes: [{cluster: up}]}
clusters:
  - {name: up, endpoints: [%[4]s]}
tracing:
  driver: {name: file}
  propagation: [tracecontext]
  sampling: {random: %[2]s}
`, name, random, trust, cluster))
	}
	sidecar := hop("sidecar", "50", "true", up.addr())
	edge := hop("edge", "10", "false", sidecar.addr["l"])
	const requests = 600
	for range requests {
		// A client's own traceparent is not trusted at the edge: every
		// request starts a trace there.
		if resp, _ := do(t, "GET", "http://"+edge.addr["l"]+"/", map[string]string{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"}); resp.StatusCode != 200 {
			t.Fatal(resp.Status)
		}
	}
	const th10 = "ot=th:e6666666666666"
	time.Sleep(100 * time.Millisecond) // the fast path records just after it answers
	edgeSpans, sidecarSpans := edge.rec.all(), sidecar.rec.all()
	if n := len(edgeSpans); n < requests/20 || n > requests/5 {
		t.Fatalf("the edge at 10%% kept %d of %d traces", n, requests)
	}
	kept := map[core.TraceID]bool{}
	for _, s := range edgeSpans {
		if s.TraceID.Low&(1<<56-1) < 0xe6666666666666 || s.TraceState != th10 {
			t.Errorf("edge span of trace %s: tracestate %q; its randomness %x is below 10%%'s threshold", s.TraceID, s.TraceState, s.TraceID.Low&(1<<56-1))
		}
		kept[s.TraceID] = true
	}
	if len(sidecarSpans) != len(edgeSpans) {
		t.Errorf("the sidecar at 50%% kept %d traces, the edge %d: traces are not whole", len(sidecarSpans), len(edgeSpans))
	}
	for _, s := range sidecarSpans {
		if !kept[s.TraceID] || s.TraceState != th10 || s.ParentOrigin != core.ParentRemote {
			t.Errorf("sidecar span of trace %s (kept at the edge: %v): tracestate %q, want the edge's %q", s.TraceID, kept[s.TraceID], s.TraceState, th10)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != requests {
		t.Fatalf("the upstream saw %d traces, want %d", len(seen), requests)
	}
	for tp, ts := range seen {
		sampled := strings.HasSuffix(tp, "-03") // sampled and random
		if sampled && ts != th10 || !sampled && (ts != "" || !strings.HasSuffix(tp, "-02")) {
			t.Errorf("upstream got traceparent %s with tracestate %q", tp, ts)
		}
	}
}

// What tracehop does to tracestate's ot=th on a continued trace, at random
// 100% and overall 50% (threshold 8): a parent's threshold passes as it
// came, raised to 8 when lower; one the trace's randomness contradicts, or
// on a forced trace, is erased (its probability is unknown); explicit rv
// counts before the trace id; an unsampled trace's tracestate passes
// untouched; a new trace gets th:8 when it is kept.
func TestThresholdInTracestate(t *testing.T) {
	up := newUpstream(t, nil)
	p := startProxy(t, oneRoute("ingress", "true", up.addr(), "  propagation: [tracecontext]\n  sampling: {random: 100, overall: 50}\n"))
	url := "http://" + p.addr["l"] + "/"
	const high, low = "0af7651916cd43dd00f0000000000001", "0af7651916cd43dd0090000000000001" // randomness f0..., 90...
	for _, c := range []struct {
		name, traceID, flags, tracestate string
		forced                           bool
		sampled                          bool
		want                             string
	}{
		{"kept as it came", high, "03", "ot=th:c,v=1", false, true, "ot=th:c,v=1"},
		{"raised to overall's", high, "03", "ot=th:4,v=1", false, true, "ot=th:8,v=1"},
		{"contradicted by randomness", low, "03", "ot=th:c,v=1", false, true, "v=1"},
		{"forced", high, "03", "ot=th:c", true, true, ""},
		{"rv before the trace id", low, "01", "ot=rv:f0000000000000;th:c", false, true, "ot=rv:f0000000000000;th:c"},
		{"rv contradicting", high, "03", "ot=rv:10000000000000;th:c", false, false, "ot=rv:10000000000000;th:c"},
		{"not sampled", high, "02", "ot=th:c", false, false, "ot=th:c"},
	} {
		hdr := map[string]string{"traceparent": "00-" + c.traceID + "-00f067aa0ba902b7-" + c.flags, "tracestate": c.tracestate}
		if c.forced {
			hdr["x-tracehop-force-trace"] = "1"
		}
		do(t, "GET", url, hdr)
		tp := up.header("Traceparent")
		if got := up.header("Tracestate"); got != c.want || (strings.HasSuffix(tp, "1") || strings.HasSuffix(tp, "3")) != c.sampled {
			t.Errorf("%s: upstream got %s with tracestate %q, want %q (sampled: %v)", c.name, tp, got, c.want, c.sampled)
		}
	}
	// New traces: kept when their randomness is at or above 8 (overall
	// 50%), and then with th:8.
	kept := 0
	for range 200 {
		do(t, "GET", url, nil)
		tp := up.header("Traceparent")
		sampled := strings.HasSuffix(tp, "-03")
		if r := tp[3+16+2 : 3+32]; sampled != (r >= "80000000000000") || sampled != (up.header("Tracestate") == "ot=th:8") {
			t.Errorf("new trace %s (randomness %s): tracestate %q", tp, r, up.header("Tracestate"))
		}
		if sampled {
			kept++
		}
	}
	if kept < 60 || kept > 140 {
		t.Errorf("overall 50%% kept %d of 200 new traces", kept)
	}
}

// adminCall sends an admin request with an optional bearer token and
// returns the status and body.
func adminCall(t *testing.T, method, url, token, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// samplingState reads GET /sampling.
func samplingState(t *testing.T, admin string) map[string]any {
	t.Helper()
	code, body := adminCall(t, "GET", "http://"+admin+"/sampling", "", "")
	var st map[string]any
	if err := json.Unmarshal([]byte(body), &st); code != 200 || err != nil {
		t.Fatalf("GET /sampling: %d %s (%v)", code, body, err)
	}
	return st
}

// startAppLogged is startApp whose log also goes to a buffer the test
// reads.
func startAppLogged(t *testing.T, path, yaml string) (*app.App, *syncLog) {
	t.Helper()
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncLog{t: t}
	a, err := app.Start(context.Background(), cfg, app.Options{ConfigFile: path, DrainTimeout: 5 * time.Second,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		a.Shutdown(ctx)
	})
	return a, logs
}

type syncLog struct {
	t  *testing.T
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Write(p)
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// GET/PUT/DELETE /sampling change the sampling in force without a reload:
// a PUT is checked as the file is (every problem, 422), needs the bearer
// token of admin.token_file (as POST /reload does), shows in /sampling,
// /config and the decision metrics at once, and the next reload puts the
// file's back, saying so in the log.
func TestSamplingAdminAPI(t *testing.T) {
	bin := binaries(t, "file")
	up := newUpstream(t, nil)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "admin-token"), []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "tracehop.yaml")
	port, admin := freePort(t), freePort(t)
	_, logs := startAppLogged(t, path, fmt.Sprintf(`node: {id: n, service: svc}
admin: {address: %s, token_file: admin-token}
listeners:
  - {name: l, address: %s, direction: ingress, routes: [{name: api, match: {prefix: /api}, cluster: up, tracing: {sampling: {random: 0}}}, {cluster: up}]}
clusters:
  - {name: up, endpoints: [%s]}
tracing:
  plugin_dir: %s
  driver: {name: file, config: {path: %s}}
  sampling: {random: 100}
`, admin, port, up.addr(), bin, filepath.Join(dir, "spans.jsonl")))
	base, adminURL := "http://"+port, "http://"+admin
	sampledFlag := func(path string) string {
		t.Helper()
		if code, _ := getBody(t, http.DefaultClient, base+path); code != 200 {
			t.Fatalf("%s: %d", path, code)
		}
		return upstreamSampled(up.header)
	}
	if st := samplingState(t, admin); st["source"] != "file" || fmt.Sprint(st["routes"]) == "" {
		t.Fatalf("GET /sampling: %v", st)
	}
	if sampledFlag("/") != "1" || sampledFlag("/api/x") != "0" {
		t.Fatal("the file's rules are not in force")
	}
	// The token guards what changes state, and only that.
	for _, tok := range []string{"", "wrong"} {
		code, body := adminCall(t, "PUT", adminURL+"/sampling", tok, `{"random": 0}`)
		if code != 401 || !strings.Contains(body, "needs the admin token") {
			t.Errorf("PUT /sampling with token %q: %d %s", tok, code, body)
		}
		if code, _ := adminCall(t, "POST", adminURL+"/reload", tok, ""); code != 401 {
			t.Errorf("POST /reload with token %q: %d", tok, code)
		}
	}
	if code, body := adminCall(t, "PUT", adminURL+"/sampling", "s3cret", `{"random": 150, "overall": 0.001, "max_traces_per_second": 0}`); code != 422 ||
		!strings.Contains(body, "3 problems") || !strings.Contains(body, "sampling.random: must be between 0 and 100, got 150") ||
		!strings.Contains(body, "sampling.overall: is a percentage in steps of 0.01") || !strings.Contains(body, "sampling.max_traces_per_second: must be a number above 0") {
		t.Fatalf("a bad PUT: %d %s", code, body)
	}
	if sampledFlag("/") != "1" {
		t.Fatal("a refused PUT changed the sampling")
	}
	code, body := adminCall(t, "PUT", adminURL+"/sampling", "s3cret", `{"random": 0}`)
	if code != 200 || !strings.Contains(body, `"source": "admin"`) {
		t.Fatalf("PUT /sampling: %d %s", code, body)
	}
	if sampledFlag("/") != "0" {
		t.Fatal("PUT /sampling {random: 0} did not apply at once")
	}
	if _, cfg := getBody(t, http.DefaultClient, adminURL+"/config"); !strings.Contains(cfg, `"SamplingInForce"`) || !strings.Contains(cfg, `"source": "admin"`) {
		t.Errorf("/config does not show the sampling in force:\n%s", cfg)
	}
	_, metrics := getBody(t, http.DefaultClient, adminURL+"/metrics")
	for _, want := range []string{
		`tracehop_sampling_decisions_total{decision="sampled",rule="default"} 2`,
		`tracehop_sampling_decisions_total{decision="not_sampled",rule="default"} 1`,
		`tracehop_sampling_decisions_total{decision="not_sampled",rule="api"} 1`,
		`tracehop_sampling_decisions_total{decision="rate_limited",rule="default"} 0`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// DELETE puts the file's back; a reload supersedes a PUT.
	if code, body := adminCall(t, "DELETE", adminURL+"/sampling", "s3cret", ""); code != 200 || !strings.Contains(body, `"source": "file"`) || sampledFlag("/") != "1" {
		t.Fatalf("DELETE /sampling: %d %s", code, body)
	}
	adminCall(t, "PUT", adminURL+"/sampling", "s3cret", `{"random": 0}`)
	if code, body := adminCall(t, "POST", adminURL+"/reload", "s3cret", ""); code != 200 {
		t.Fatalf("POST /reload: %d %s", code, body)
	}
	if st := samplingState(t, admin); st["source"] != "file" || sampledFlag("/") != "1" {
		t.Errorf("after a reload: source %v", st["source"])
	}
	if !strings.Contains(logs.String(), "superseded by the reloaded config") {
		t.Error("the log does not say the reload superseded PUT /sampling")
	}
}

// The remote source, against an endpoint that answers as Jaeger's remote
// sampling API does (the real Jaeger v2 is in the e2e suite): until its
// first answer the file's rules apply; then its strategy (a default and a
// per-operation one, mapped to the route named by it); when it fails, the
// last strategy stays; a reload keeps it.
func TestRemoteSamplingFollowsTheEndpoint(t *testing.T) {
	bin := binaries(t, "file")
	var mu sync.Mutex
	answer, status, services := "", http.StatusServiceUnavailable, map[string]bool{}
	jaeger := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		services[r.URL.Query().Get("service")+" "+r.URL.Path] = true
		w.WriteHeader(status)
		io.WriteString(w, answer)
	})
	set := func(code int, body string) {
		mu.Lock()
		answer, status = body, code
		mu.Unlock()
	}
	up := newUpstream(t, nil)
	dir := t.TempDir()
	path := filepath.Join(dir, "tracehop.yaml")
	port, admin := freePort(t), freePort(t)
	startAppLogged(t, path, fmt.Sprintf(`node: {id: n, service: shop}
admin: {address: %s}
listeners:
  - {name: l, address: %s, direction: ingress,
     routes: [{match: {prefix: /checkout}, cluster: up, operation: checkout}, {cluster: up}]}
clusters:
  - {name: up, endpoints: [%s]}
tracing:
  plugin_dir: %s
  driver: {name: file, config: {path: %s}}
  sampling: {random: 100, remote: {url: "%s/api/sampling", poll_interval: 50ms}}
`, admin, port, up.addr(), bin, filepath.Join(dir, "spans.jsonl"), jaeger.URL))
	sampled := func(path string) string {
		t.Helper()
		if code, _ := getBody(t, http.DefaultClient, "http://"+port+path); code != 200 {
			t.Fatalf("%s: %d", path, code)
		}
		return upstreamSampled(up.header)
	}
	// within waits for the decisions on / and /checkout to be want.
	within := func(what string, want [2]string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			got := [2]string{sampled("/"), sampled("/checkout/1")}
			if got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: / and /checkout sampled %v, want %v; /sampling: %v", what, got, want, samplingState(t, admin))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	time.Sleep(150 * time.Millisecond) // a few failed polls
	if st := samplingState(t, admin); st["source"] != "file" || st["remote_source"].(map[string]any)["last_error"] == "" {
		t.Fatalf("before any answer: %v", st)
	}
	within("before any answer, the file's rules", [2]string{"1", "1"})
	set(200, `{"strategyType":0,"probabilisticSampling":{"samplingRate":0},"operationSampling":{"defaultSamplingProbability":0,
		"defaultLowerBoundTracesPerSecond":0,"perOperationStrategies":[{"operation":"checkout","probabilisticSampling":{"samplingRate":1}}]}}`)
	within("the strategy", [2]string{"0", "1"})
	st := samplingState(t, admin)
	routes := st["routes"].([]any)
	if st["source"] != "remote" || routes[0].(map[string]any)["source"] != "remote" || routes[0].(map[string]any)["rule"] != "checkout" {
		t.Errorf("/sampling with the strategy: %v", st)
	}
	set(http.StatusInternalServerError, "collector error")
	time.Sleep(200 * time.Millisecond)
	within("the endpoint down: the last strategy", [2]string{"0", "1"})
	if code, body := adminCall(t, "POST", "http://"+admin+"/reload", "", ""); code != 200 {
		t.Fatalf("reload: %d %s", code, body)
	}
	within("after a reload: the last strategy still", [2]string{"0", "1"})
	set(200, `{"strategyType":1,"rateLimitingSampling":{"maxTracesPerSecond":0}}`)
	within("a rate-limiting strategy of 0", [2]string{"0", "0"})
	mu.Lock()
	defer mu.Unlock()
	if len(services) != 1 || !services["shop /api/sampling"] {
		t.Errorf("asked for %v, want the node's service at the configured path", services)
	}
}

// The tracestate an ingress request sends (with the threshold tracehop
// wrote, in its connection's memory) stays intact on an egress request
// linked to it by x-request-id, even when the application answers before
// its call out is done and the client's next request on that connection
// rewrites that memory: the egress span carries its own copy.
func TestLinkedTracestateOutlivesTheIngressRequest(t *testing.T) {
	var wg sync.WaitGroup
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { time.Sleep(200 * time.Millisecond) })
	var egress string
	app := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		wg.Add(1)
		go func() { // forwards only the request id, and is not waited for
			defer wg.Done()
			req, _ := http.NewRequest("GET", "http://"+egress+"/", nil)
			req.Header.Set("X-Request-Id", id)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
		time.Sleep(30 * time.Millisecond) // the call out has begun: linked
	})
	p := startProxy(t, fmt.Sprintf(`admin: {address: "127.0.0.1:0"}
listeners:
  - name: in
    address: "127.0.0.1:0"
    direction: ingress
    routes:
      - {match: {prefix: /a}, cluster: app, tracing: {sampling: {random: 99.99}}}
      - {match: {prefix: /b}, cluster: app, tracing: {sampling: {random: 99.5}}}
  - {name: out, address: "127.0.0.1:0", direction: egress, routes: [{cluster: up}]}
clusters:
  - {name: app, endpoints: [%s]}
  - {name: up, endpoints: [%s]}
tracing:
  driver: {name: file}
  propagation: [tracecontext]
`, app.addr(), up.addr()))
	egress = p.addr["out"]
	th := func(bp uint32) string {
		return "ot=th:" + string(propagation.AppendThreshold(nil, sampling.ThresholdOf(bp)))
	}
	// One kept-alive connection: the fast path's memory is the
	// connection's.
	c := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	want := map[string]string{}
	for i := range 20 {
		path := []string{"/a", "/b"}[i%2]
		id := fmt.Sprint("req-", i)
		req, _ := http.NewRequest("GET", "http://"+p.addr["in"]+path, nil)
		req.Header.Set("X-Request-Id", id)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		want[id] = map[string]string{"/a": th(9999), "/b": th(9950)}[path]
	}
	wg.Wait()
	time.Sleep(100 * time.Millisecond) // the fast path records just after it answers
	checked := 0
	for _, s := range p.rec.all() {
		id, _ := s.Tag("guid:x-request-id")
		if s.Kind != core.KindClient {
			continue
		}
		checked++
		if s.TraceState != want[id] {
			t.Errorf("%s: the egress span's tracestate is %q, want %q (its ingress request's)", id, s.TraceState, want[id])
		}
	}
	if checked < 18 {
		t.Errorf("only %d egress spans of 20", checked)
	}
}

// upstreamSampled is the sampling decision the upstream's last request
// carried: x-b3-sampled where the driver propagates b3 (zipkin), else the
// sampled flag of traceparent (the file driver propagates only that); ""
// when neither came.
func upstreamSampled(header func(string) string) string {
	if v := header("X-B3-Sampled"); v != "" {
		return v
	}
	tp := header("Traceparent")
	if len(tp) != 55 {
		return ""
	}
	flags, err := strconv.ParseUint(tp[53:], 16, 8)
	if err != nil {
		return ""
	}
	return strconv.FormatUint(flags&1, 10)
}
