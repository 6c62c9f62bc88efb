package proxy_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/websocket"
	"google.golang.org/grpc"
	grpccodes "google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/internal/app"
	"github.com/tracehop/tracehop/proxy"
	"github.com/tracehop/tracehop/proxy/config"
)

// recorder is an in-memory span sink.
type recorder struct {
	mu    sync.Mutex
	spans []core.Span
}

func (r *recorder) Enqueue(s core.Span) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.spans = append(r.spans, s.Clone()) // the proxy reuses the span's memory
}

func (r *recorder) all() []core.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]core.Span(nil), r.spans...)
}

// wait returns the spans recorded once there are n of them, and fails the
// test if there are not exactly n. The fast path records a span just after
// the response is written, so it may come a moment after the client has the
// response.
func (r *recorder) wait(t *testing.T, n int) []core.Span {
	t.Helper()
	s := r.all()
	for deadline := time.Now().Add(10 * time.Second); len(s) < n && time.Now().Before(deadline); s = r.all() {
		time.Sleep(time.Millisecond)
	}
	if len(s) != n {
		t.Fatalf("want %d spans, got %d: %+v", n, len(s), s)
	}
	return s
}

// take is wait, and then forgets the spans, for a test that sends
// request after request.
func (r *recorder) take(t *testing.T, n int) []core.Span {
	t.Helper()
	s := r.wait(t, n)
	r.mu.Lock()
	r.spans = r.spans[len(s):]
	r.mu.Unlock()
	return s
}

// one returns the single span recorded.
func (r *recorder) one(t *testing.T) core.Span {
	t.Helper()
	return r.wait(t, 1)[0]
}

// upstream records the headers of the last request it got.
type upstream struct {
	*httptest.Server
	mu   sync.Mutex
	last http.Header
	open atomic.Int64 // connections open
}

func newUpstream(t *testing.T, h http.HandlerFunc) *upstream {
	u := &upstream{}
	if h == nil {
		h = func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "hello") }
	}
	u.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.last = r.Header.Clone()
		u.mu.Unlock()
		h(w, r)
	}))
	u.Server.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			u.open.Add(1)
		case http.StateClosed, http.StateHijacked:
			u.open.Add(-1)
		}
	}
	u.Server.Start()
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) header(k string) string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.last.Get(k)
}

func (u *upstream) addr() string { return strings.TrimPrefix(u.URL, "http://") }

type testProxy struct {
	srv   *proxy.Server
	admin *app.Admin // nil with admin.address: off
	rec   *recorder
	addr  map[string]string // listener name -> address
}

// shutdown stops the server, then its admin server, as tracehop run does.
func (tp *testProxy) shutdown(ctx context.Context) error {
	err := tp.srv.Shutdown(ctx)
	if tp.admin != nil {
		tp.admin.Close()
	}
	return err
}

// startProxy starts an in-process tracehop from a YAML config whose
// listeners use port 0, with spans going to a recorder.
func startProxy(t *testing.T, yaml string) *testProxy {
	t.Helper()
	return startProxyCaps(t, yaml, core.Capabilities{Propagation: []string{"b3", "tracecontext"}, TraceID128: true})
}

// startProxyCaps is startProxy with a driver that declares caps.
func startProxyCaps(t *testing.T, yaml string, caps core.Capabilities) *testProxy {
	t.Helper()
	return startProxyWith(t, yaml, caps, nil)
}

// startProxyWith is startProxyCaps with a hook that may change the server
// before it starts.
func startProxyWith(t testing.TB, yaml string, caps core.Capabilities, setup func(*proxy.Server)) *testProxy {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	tp := &testProxy{rec: &recorder{}, addr: map[string]string{}}
	var tracer *proxy.Tracer
	if cfg.Tracing != nil {
		tracer, err = proxy.NewTracer(cfg, proxy.TracerOptions{Sink: tp.rec, Capabilities: []core.Capabilities{caps}})
		if err != nil {
			t.Fatal(err)
		}
	}
	tp.srv = proxy.NewServer(cfg, proxy.Options{Tracer: tracer})
	if setup != nil {
		setup(tp.srv)
	}
	addrs, err := tp.srv.Start()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		tp.addr[a.Name] = a.Address
	}
	tp.admin = serveAdmin(t, cfg, tp.srv, tp.addr)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		tp.shutdown(ctx)
	})
	return tp
}

// serveAdmin serves s's admin server, as tracehop run does, and records
// its address as addr["admin"].
func serveAdmin(t testing.TB, cfg *config.Config, s *proxy.Server, addr map[string]string) *app.Admin {
	t.Helper()
	admin, err := app.ListenAdmin(cfg.Admin.Address, s, s.Gatherer(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if admin != nil {
		addr["admin"] = admin.Addr()
		admin.Serve()
	}
	return admin
}

const tracingBlock = `tracing:
  driver: {name: file}
`

func oneRoute(direction, trust, cluster string, extra string) string {
	return fmt.Sprintf(`node: {id: node-1, service: svc, zone: z1}
admin: {address: "127.0.0.1:0"}
listeners:
  - {name: l, address: "127.0.0.1:0", direction: %s, trust_trace_headers: %s,
     routes: [{match: {prefix: /}, cluster: up, operation: checkAvailability, timeout: 300ms}]}
clusters:
  - {name: up, endpoints: [%s], connect_timeout: 500ms}
`, direction, trust, cluster) + tracingBlock + extra
}

func do(t *testing.T, method, url string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestSpanTagsAndPropagation(t *testing.T) {
	up := newUpstream(t, nil)
	p := startProxy(t, oneRoute("ingress", "true", up.addr(), ""))
	resp, _ := do(t, "GET", "http://"+p.addr["l"]+"/trace/1?q=1", map[string]string{
		"x-b3-traceid": "0af7651916cd43dd8448eb211c80319c", "x-b3-spanid": "00f067aa0ba902b7", "x-b3-sampled": "1",
		"x-request-id": "req-123", "user-agent": "test-agent", "x-forwarded-for": "10.0.0.1",
	})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	s := p.rec.one(t)
	if s.TraceID.String() != "0af7651916cd43dd8448eb211c80319c" || s.ParentID != 0x00f067aa0ba902b7 || s.Kind != core.KindServer || !s.Sampled {
		t.Fatalf("span %+v does not continue the incoming context", s)
	}
	if s.Name != "checkAvailability" || s.LocalService != "svc" || s.Remote.IP.String() != "127.0.0.1" {
		t.Errorf("name %q service %q remote %+v", s.Name, s.LocalService, s.Remote)
	}
	want := map[string]string{
		"component": "proxy", "node_id": "node-1", "zone": "z1", "guid:x-request-id": "req-123",
		"http.url": "http://" + p.addr["l"] + "/trace/1?q=1", "http.method": "GET", "http.protocol": "HTTP/1.1",
		"user_agent": "test-agent", "peer.address": "127.0.0.1", "request_size": "0", "response_size": "5",
		"upstream_cluster": "up", "upstream_address": up.addr(), "http.status_code": "200",
	}
	for k, v := range want {
		if got, _ := s.Tag(k); got != v {
			t.Errorf("tag %s = %q, want %q", k, got, v)
		}
	}
	// The upstream continues from this span.
	if got := up.header("x-b3-spanid"); got != s.SpanID.String() {
		t.Errorf("upstream x-b3-spanid %q, want the span's id %s", got, s.SpanID)
	}
	if got := up.header("x-b3-parentspanid"); got != "00f067aa0ba902b7" {
		t.Errorf("upstream x-b3-parentspanid %q, want this span's parent", got)
	}
	if got := up.header("traceparent"); got != "00-0af7651916cd43dd8448eb211c80319c-"+s.SpanID.String()+"-01" {
		t.Errorf("upstream traceparent %q", got)
	}
	if up.header("x-request-id") != "req-123" || !strings.HasPrefix(up.header("x-forwarded-for"), "10.0.0.1, 127.0.0.1") {
		t.Errorf("upstream x-request-id %q, x-forwarded-for %q", up.header("x-request-id"), up.header("x-forwarded-for"))
	}
}

func TestEdgeDoesNotTrustClients(t *testing.T) {
	up := newUpstream(t, nil)
	p := startProxy(t, oneRoute("ingress", "false", up.addr(), ""))
	do(t, "GET", "http://"+p.addr["l"]+"/", map[string]string{
		"x-b3-traceid": "0af7651916cd43dd8448eb211c80319c", "x-b3-spanid": "00f067aa0ba902b7", "x-b3-sampled": "0",
		"traceparent": "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-00", "x-datadog-trace-id": "5",
		"x-request-id": "attacker-chosen", "x-tracehop-force-trace": "1", "x-client-trace-id": "x",
	})
	s := p.rec.one(t) // sampled although the client said x-b3-sampled: 0
	if s.ParentID != 0 || s.TraceID.String() == "0af7651916cd43dd8448eb211c80319c" {
		t.Fatalf("an untrusted client joined a trace: %+v", s)
	}
	if id, _ := s.Tag("guid:x-request-id"); id == "attacker-chosen" || len(id) != 36 {
		t.Errorf("request id %q: want a fresh UUID", id)
	}
	for _, k := range []string{"x-tracehop-force-trace", "x-client-trace-id", "x-datadog-trace-id"} {
		if up.header(k) != "" {
			t.Errorf("the untrusted header %s reached the upstream", k)
		}
	}
	if strings.Contains(up.header("traceparent"), "0af7651916cd43dd") {
		t.Errorf("the client's traceparent reached the upstream: %s", up.header("traceparent"))
	}
}

func TestSamplingDecisions(t *testing.T) {
	up := newUpstream(t, nil)
	p := startProxy(t, oneRoute("ingress", "true", up.addr(), "  sampling: {random: 0}\n"))
	url := "http://" + p.addr["l"] + "/"
	do(t, "GET", url, nil)
	unsampled := up.header("x-b3-traceid")
	// Not sampled still propagates context, with sampled=0.
	if up.header("x-b3-sampled") != "0" || len(up.header("x-b3-traceid")) != 32 {
		t.Errorf("unsampled request propagated x-b3-sampled=%q traceid=%q", up.header("x-b3-sampled"), up.header("x-b3-traceid"))
	}
	do(t, "GET", url, map[string]string{"x-tracehop-force-trace": "1"})
	do(t, "GET", url, map[string]string{"b3": "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"})
	do(t, "GET", url, map[string]string{"x-client-trace-id": "abc"})
	spans := p.rec.wait(t, 3) // force-trace, an incoming sampled flag and x-client-trace-id
	for _, s := range spans {
		if s.TraceID.String() == unsampled {
			t.Fatalf("random: 0 exported the unsampled request's span %+v", s)
		}
	}
	if id, _ := spans[2].Tag("guid:x-client-trace-id"); id != "abc" {
		t.Errorf("guid:x-client-trace-id = %q", id)
	}
}

// sampling.max_traces_per_second caps the traces a tracehop starts, with
// random sampling at 100%; requests whose parent was sampled still are,
// so traces started upstream stay whole; /metrics counts what was capped.
func TestMaxTracesPerSecond(t *testing.T) {
	up := newUpstream(t, nil)
	p := startProxy(t, oneRoute("ingress", "true", up.addr(), "  sampling: {random: 100, max_traces_per_second: 3}\n"))
	url := "http://" + p.addr["l"] + "/"
	start := time.Now()
	for range 40 {
		do(t, "GET", url, nil)
	}
	most := 3 + int(time.Since(start).Seconds()*3) + 1
	for range 5 {
		do(t, "GET", url, map[string]string{"b3": "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"})
	}
	time.Sleep(100 * time.Millisecond) // the fast path records just after it answers
	started, continued := 0, 0
	for _, s := range p.rec.all() {
		if s.TraceID.String() == "80f198ee56343ba864fe8b2a57d3eff7" {
			continued++
		} else {
			started++
		}
	}
	if started < 3 || started > most || continued != 5 {
		t.Fatalf("%d new traces sampled of 40 (want 3 to %d), %d of 5 continued", started, most, continued)
	}
	resp, body := do(t, "GET", "http://"+p.addr["admin"]+"/metrics", nil)
	if want := fmt.Sprintf("tracehop_traces_rate_limited_total %d", 40-started); resp.StatusCode != 200 || !strings.Contains(body, want) {
		t.Errorf("/metrics lacks %q", want)
	}
}

// The request-duration histogram carries a sampled request's trace id as
// an OpenMetrics exemplar, for scrapers that ask for OpenMetrics; the
// plain text format is unchanged.
func TestExemplarsLinkLatencyToTraces(t *testing.T) {
	up := newUpstream(t, nil)
	p := startProxy(t, oneRoute("ingress", "true", up.addr(), ""))
	do(t, "GET", "http://"+p.addr["l"]+"/", nil)
	traceID := p.rec.one(t).TraceID.String()
	metrics := "http://" + p.addr["admin"] + "/metrics"
	req, _ := http.NewRequest("GET", metrics, nil)
	req.Header.Set("Accept", "application/openmetrics-text; version=1.0.0; charset=utf-8")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := `# {trace_id="` + traceID + `"}`
	if !strings.Contains(string(body), want) || !strings.Contains(string(body), "tracehop_request_duration_seconds_bucket") {
		t.Errorf("OpenMetrics lacks the exemplar %s:\n%s", want, body)
	}
	if _, plain := do(t, "GET", metrics, nil); strings.Contains(plain, "trace_id") || !strings.Contains(plain, "tracehop_request_duration_seconds_bucket") {
		t.Errorf("the plain text format changed")
	}
}

// A route may turn tracing off (no span, no propagation headers, still a
// request id), sample by its own percentages, and add custom tags.
func TestPerRouteTracing(t *testing.T) {
	up := newUpstream(t, nil)
	cfg := fmt.Sprintf(`node: {id: node-1, service: svc}
admin: {address: "127.0.0.1:0"}
listeners:
  - name: l
    address: "127.0.0.1:0"
    direction: ingress
    routes:
      - {match: {path: /healthz}, cluster: up, tracing: {enabled: false}}
      - {match: {prefix: /api}, cluster: up, operation: api,
         tracing: {sampling: {random: 0}, custom_tags: [{tag: tier, literal: gold}]}}
      - {match: {prefix: /}, cluster: up}
clusters:
  - {name: up, endpoints: [%s]}
tracing:
  driver: {name: file}
  custom_tags: [{tag: env, literal: test}]
`, up.addr())
	p := startProxy(t, cfg)
	base := "http://" + p.addr["l"]
	for _, slow := range []bool{false, true} {
		// the fast path serves plain requests; a Connection option sends
		// one to net/http
		hdr := map[string]string{}
		if slow {
			hdr["Connection"] = "x-slow-path"
		}
		if resp, _ := do(t, "GET", base+"/healthz", hdr); resp.StatusCode != 200 {
			t.Fatal(resp.Status)
		}
		if up.header("X-Request-Id") == "" || up.header("X-B3-Traceid") != "" || up.header("Traceparent") != "" {
			t.Errorf("slow path %v: a route without tracing sent request id %q, b3 %q, traceparent %q",
				slow, up.header("X-Request-Id"), up.header("X-B3-Traceid"), up.header("Traceparent"))
		}
		do(t, "GET", base+"/api/x", hdr)
		if up.header("X-B3-Sampled") != "0" {
			t.Errorf("slow path %v: the route's random: 0 sampled: x-b3-sampled %q", slow, up.header("X-B3-Sampled"))
		}
	}
	forced := map[string]string{"x-tracehop-force-trace": "1"}
	do(t, "GET", base+"/api/y", forced)
	do(t, "GET", base+"/other", nil)
	spans := p.rec.wait(t, 2)
	byName := map[string]core.Span{}
	for _, s := range spans {
		byName[s.Name] = s
	}
	api, other := byName["api"], byName["ingress"]
	if tier, _ := api.Tag("tier"); tier != "gold" {
		t.Errorf("the route's custom tag is missing: %+v", api.Tags)
	}
	if env, _ := api.Tag("env"); env != "test" {
		t.Errorf("the tracing block's custom tag is missing on the route's span: %+v", api.Tags)
	}
	if _, ok := other.Tag("tier"); ok || other.Name == "" {
		t.Errorf("another route's span got the route's tag: %+v", other)
	}
}

func TestMalformedTraceHeadersStartANewTrace(t *testing.T) {
	up := newUpstream(t, nil)
	p := startProxy(t, oneRoute("ingress", "true", up.addr(), "  propagation: [b3, b3single, tracecontext, datadog, ot-tracer]\n"))
	bad := []map[string]string{
		{"x-b3-traceid": "not-hex", "x-b3-spanid": "zz"},
		{"b3": strings.Repeat("f", 2000)},
		{"traceparent": "00-xyz-abc-01"},
		{"x-datadog-trace-id": "-1", "x-datadog-parent-id": "ab"},
		{"ot-tracer-traceid": "", "ot-tracer-spanid": "0"},
		{"x-request-id": strings.Repeat("r", 500)},
	}
	for i, h := range bad {
		resp, _ := do(t, "GET", "http://"+p.addr["l"]+"/", h)
		if resp.StatusCode != 200 {
			t.Errorf("case %d: status %d, want 200", i, resp.StatusCode)
		}
	}
	for _, s := range p.rec.wait(t, len(bad)) {
		if s.ParentID != 0 || s.TraceID.IsZero() {
			t.Errorf("a malformed header produced span %+v; want a new root", s)
		}
	}
}

// unanswered returns an address whose listener's accept queue is full:
// Linux drops a new connection's SYN there, so a connect hangs until its
// timeout.
func unanswered(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil { // a queue of one
		t.Fatal(err)
	}
	sa, _ := syscall.Getsockname(fd)
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	for range 4 { // fill it; those past it hang and are given up
		if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
			t.Cleanup(func() { c.Close() })
		}
	}
	if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
		c.Close()
		t.Fatal("a connect past a full accept queue was answered: this test needs Linux, which drops its SYN")
	}
	return addr
}

func TestUpstreamFailures(t *testing.T) {
	closed := freePort(t) // nothing listens there
	hang := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	reset := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		conn, _, _ := http.NewResponseController(w).Hijack()
		conn.Close()
	})
	cases := []struct {
		name, cluster string
		status        int
		body          string
	}{
		{"refused", closed, 503, "upstream connect error"},
		{"timeout", hang.addr(), 504, "upstream request timeout"},
		{"reset", reset.addr(), 502, "upstream error"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := startProxy(t, oneRoute("egress", "true", c.cluster, ""))
			resp, body := do(t, "GET", "http://"+p.addr["l"]+"/x", nil)
			if resp.StatusCode != c.status || !strings.Contains(body, c.body) || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
				t.Fatalf("got %d %q, want %d %q", resp.StatusCode, body, c.status, c.body)
			}
			s := p.rec.one(t)
			msg, _ := s.Tag("error.message")
			if !s.Error || !strings.Contains(msg, c.body) || s.Kind != core.KindClient {
				t.Fatalf("span error=%v message=%q kind=%s", s.Error, msg, s.Kind)
			}
			if s.Remote.Service != "up" {
				t.Errorf("client span remote %+v, want service up", s.Remote)
			}
		})
	}
	// The cluster's connect_timeout is a connect error, as Envoy's
	// "upstream connect error ... connection timeout", not the route's
	// timeout.
	t.Run("connect timeout", func(t *testing.T) {
		if runtime.GOOS != "linux" {
			t.Skip("a connect that hangs is made with Linux's full accept queue")
		}
		p := startProxy(t, oneRoute("egress", "true", unanswered(t), ""))
		resp, body := do(t, "GET", "http://"+p.addr["l"]+"/x", nil)
		if resp.StatusCode != 503 || !strings.Contains(body, "upstream connect error") {
			t.Fatalf("got %d %q, want 503 upstream connect error", resp.StatusCode, body)
		}
	})
	t.Run("no route", func(t *testing.T) {
		up := newUpstream(t, nil)
		p := startProxy(t, strings.Replace(oneRoute("ingress", "true", up.addr(), ""), "{prefix: /}", "{path: /only}", 1))
		resp, body := do(t, "GET", "http://"+p.addr["l"]+"/other", nil)
		if resp.StatusCode != 404 || !strings.Contains(body, "no route for /other") {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
		if s := p.rec.one(t); s.Error {
			t.Errorf("a 404 is not an error span")
		}
	})
}

func TestSpawnUpstreamSpanAndCustomTags(t *testing.T) {
	t.Setenv("TRACEHOP_TEST_POD", "pod-7")
	up := newUpstream(t, nil)
	p := startProxy(t, oneRoute("ingress", "true", up.addr(), `  spawn_upstream_span: true
  custom_tags:
    - {tag: env, literal: dev}
    - {tag: pod, environment: {name: TRACEHOP_TEST_POD, default: unknown}}
    - {tag: user, request_header: {name: x-user}}
    - {tag: tenant, request_header: {name: x-tenant, default: none}}
`))
	do(t, "GET", "http://"+p.addr["l"]+"/", map[string]string{"x-user": "zoë"})
	spans := p.rec.wait(t, 2) // the server and the upstream client span
	var server, client core.Span
	for _, s := range spans {
		if s.Kind == core.KindServer {
			server = s
		} else {
			client = s
		}
	}
	if client.ParentID != server.SpanID || client.TraceID != server.TraceID || up.header("x-b3-spanid") != client.SpanID.String() {
		t.Fatalf("the upstream span must be the server span's child and the upstream's parent: server %s client %+v upstream saw %s",
			server.SpanID, client, up.header("x-b3-spanid"))
	}
	for k, v := range map[string]string{"env": "dev", "pod": "pod-7", "user": "zoë", "tenant": "none"} {
		if got, _ := server.Tag(k); got != v {
			t.Errorf("custom tag %s = %q, want %q", k, got, v)
		}
	}
}

func TestH2CDownstreamAndUpstream(t *testing.T) {
	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	upSrv := &http.Server{Protocols: protocols, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.Proto)
	})}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go upSrv.Serve(ln)
	t.Cleanup(func() { upSrv.Close() })
	p := startProxy(t, strings.Replace(oneRoute("ingress", "true", ln.Addr().String(), ""), "connect_timeout: 500ms", "connect_timeout: 500ms, protocol: h2c", 1))
	client := &http.Client{Transport: &http.Transport{Protocols: protocols}}
	resp, err := client.Get("http://" + p.addr["l"] + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Proto != "HTTP/2.0" || string(body) != "HTTP/2.0" {
		t.Fatalf("downstream %s, upstream saw %s; want HTTP/2 on both sides", resp.Proto, body)
	}
	if s := p.rec.one(t); s.Tags == nil {
		t.Fatal("no tags")
	} else if v, _ := s.Tag("http.protocol"); v != "HTTP/2" {
		t.Errorf("http.protocol = %q", v)
	}
}

func TestGRPCUnaryAndStreaming(t *testing.T) {
	hs := health.NewServer()
	hs.SetServingStatus("svc", healthpb.HealthCheckResponse_SERVING)
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	p := startProxy(t, strings.Replace(strings.Replace(oneRoute("ingress", "true", ln.Addr().String(), ""), "connect_timeout: 500ms", "connect_timeout: 500ms, protocol: h2c", 1), "timeout: 300ms", "timeout: 0s", 1))
	conn, err := grpc.NewClient("passthrough:///"+p.addr["l"], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "svc"})
	if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("unary Check through the proxy: %v %v", resp, err)
	}
	if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "unknown"}); err == nil {
		t.Fatal("want NotFound for an unknown service")
	}
	stream, err := client.Watch(ctx, &healthpb.HealthCheckRequest{Service: "svc"})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil || first.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first streamed message: %v %v", first, err)
	}
	hs.SetServingStatus("svc", healthpb.HealthCheckResponse_NOT_SERVING)
	second, err := stream.Recv()
	if err != nil || second.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("second streamed message: %v %v", second, err)
	}
	cancel()
	spans := p.rec.wait(t, 3) // two Checks and the cancelled Watch
	var codes []string
	for _, s := range spans {
		c, _ := s.Tag("grpc.status_code")
		codes = append(codes, c)
	}
	if codes[0] != "0" || codes[1] != "5" || spans[1].Error || spans[0].Error {
		t.Fatalf("grpc.status_code tags %v; want 0 for the Check, 5 for the unknown service (NotFound: the caller's, no error on this SERVER span)", codes)
	}
	// The client cancelled the Watch: the stream broke off on its side.
	if f, _ := spans[2].Tag("response_flags"); f != "DC" || spans[2].Error {
		t.Errorf("cancelled stream: response_flags %q error %v; want DC and no error", f, spans[2].Error)
	}
}

func TestWebSocketUpgrade(t *testing.T) {
	up := newUpstream(t, websocket.Handler(func(ws *websocket.Conn) { io.Copy(ws, ws) }).ServeHTTP)
	p := startProxy(t, strings.Replace(oneRoute("ingress", "true", up.addr(), ""), "timeout: 300ms", "timeout: 5s", 1))
	ws, err := websocket.Dial("ws://"+p.addr["l"]+"/ws", "", "http://localhost/")
	if err != nil {
		t.Fatalf("websocket through the proxy: %v", err)
	}
	for _, msg := range []string{"hello", "zoë ☃"} {
		if _, err := ws.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := ws.Read(buf)
		if err != nil || string(buf[:n]) != msg {
			t.Fatalf("echo %q: got %q, %v", msg, buf[:n], err)
		}
	}
	ws.Close()
	if s := p.rec.one(t); s.Tags == nil {
		t.Fatal("no tags")
	} else if v, _ := s.Tag("http.status_code"); v != "101" {
		t.Errorf("websocket span status %q, want 101", v)
	}
}

// A streamed response must reach the client chunk by chunk: the upstream
// sends its second chunk only after the client has read the first.
func TestStreamedResponseFlushes(t *testing.T) {
	readFirst := make(chan struct{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "chunk1\n")
		w.(http.Flusher).Flush()
		select {
		case <-readFirst:
		case <-time.After(10 * time.Second):
			return // the proxy buffered: the client never saw chunk 1
		}
		fmt.Fprint(w, "chunk2\n")
	})
	p := startProxy(t, oneRoute("ingress", "true", up.addr(), ""))
	resp, err := http.Get("http://" + p.addr["l"] + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 7)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "chunk1\n" {
		t.Fatalf("first chunk: %q %v", buf, err)
	}
	close(readFirst)
	rest, _ := io.ReadAll(resp.Body)
	if string(rest) != "chunk2\n" {
		t.Fatalf("second chunk %q: the proxy held the stream back", rest)
	}
}

func TestAdminEndpoints(t *testing.T) {
	up := newUpstream(t, nil)
	cfg := oneRoute("ingress", "true", up.addr(), "") + `  drivers: []
`
	cfg = strings.Replace(cfg, "  driver: {name: file}\n", `  driver:
    name: zipkin
    config: {collector_endpoint: "http://x", headers: {Authorization: "Bearer s3cret"}, access_token: tok123, timeout: 5s}
    env: {DD_API_KEY: abc}
`, 1)
	p := startProxy(t, cfg)
	do(t, "GET", "http://"+p.addr["l"]+"/", nil)
	admin := "http://" + p.addr["admin"]
	if _, b := do(t, "GET", admin+"/healthz", nil); strings.TrimSpace(b) != "ok" {
		t.Errorf("/healthz %q", b)
	}
	if r, _ := do(t, "GET", admin+"/ready", nil); r.StatusCode != 200 {
		t.Errorf("/ready %d", r.StatusCode)
	}
	// The fast path counts a request just after it has written the
	// response: give it a moment, as recorder.wait does for spans.
	p.rec.one(t)
	var metrics string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		_, metrics = do(t, "GET", admin+"/metrics", nil)
		if strings.Contains(metrics, `code_class="2xx"`) || time.Now().After(deadline) {
			break
		}
	}
	for _, want := range []string{
		`tracehop_requests_total{cluster="up",code_class="2xx",listener="l",route="checkAvailability"} 1`,
		`tracehop_spans_sampled_total 1`, `tracehop_request_duration_seconds_bucket{cluster="up",listener="l",route="checkAvailability"`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	_, cfgDump := do(t, "GET", admin+"/config", nil)
	for _, secret := range []string{"s3cret", "tok123", "abc"} {
		if strings.Contains(cfgDump, secret) {
			t.Errorf("/config shows the secret %q:\n%s", secret, cfgDump)
		}
	}
	if !strings.Contains(cfgDump, "[REDACTED]") || !strings.Contains(cfgDump, "http://x") {
		t.Errorf("/config should redact secrets and keep the rest:\n%s", cfgDump)
	}
}

// SIGTERM-style shutdown lets a request in flight finish.
func TestShutdownDrainsRequestsInFlight(t *testing.T) {
	started := make(chan struct{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		close(started)
		time.Sleep(200 * time.Millisecond)
		fmt.Fprint(w, "done")
	})
	p := startProxy(t, oneRoute("ingress", "true", up.addr(), ""))
	result := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + p.addr["l"] + "/")
		if err != nil {
			result <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		result <- string(b)
	}()
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if got := <-result; got != "done" {
		t.Fatalf("the request in flight got %q", got)
	}
	p.rec.one(t) // its span was not lost
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// An upstream that breaks off mid-body: the client gets a truncated
// response, and the span says so (UR, an error) instead of going missing.
func TestUpstreamResetMidBody(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(200)
		fmt.Fprint(w, "partial")
		w.(http.Flusher).Flush()
		conn, _, _ := http.NewResponseController(w).Hijack()
		conn.Close()
	})
	p := startProxy(t, oneRoute("ingress", "true", up.addr(), ""))
	resp, err := http.Get("http://" + p.addr["l"] + "/")
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Fatal("the client got a whole response from a broken upstream")
	}
	s := p.rec.one(t)
	if f, _ := s.Tag("response_flags"); f != "UR" || !s.Error {
		t.Fatalf("response_flags %q error %v; want UR and an error", f, s.Error)
	}
}

func TestNoTracingBlockStillProxies(t *testing.T) {
	up := newUpstream(t, nil)
	p := startProxy(t, strings.Replace(oneRoute("ingress", "true", up.addr(), ""), tracingBlock, "", 1))
	resp, body := do(t, "GET", "http://"+p.addr["l"]+"/", nil)
	if resp.StatusCode != 200 || body != "hello" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	if len(up.header("x-request-id")) != 36 || up.header("x-b3-traceid") != "" {
		t.Errorf("without tracing: x-request-id %q (want a UUID), x-b3-traceid %q (want none)", up.header("x-request-id"), up.header("x-b3-traceid"))
	}
}

func TestHugeHeaderBlockIsRefused(t *testing.T) {
	up := newUpstream(t, nil)
	p := startProxy(t, oneRoute("ingress", "true", up.addr(), ""))
	resp, _ := do(t, "GET", "http://"+p.addr["l"]+"/", map[string]string{"x-big": strings.Repeat("a", 200<<10)})
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("a 200 KiB header got %d, want 431", resp.StatusCode)
	}
	if resp, _ := do(t, "GET", "http://"+p.addr["l"]+"/", nil); resp.StatusCode != 200 {
		t.Fatalf("the next request got %d", resp.StatusCode)
	}
}

// With a driver that asks for shared spans (Zipkin's model), the ingress
// span joins the client's span (same id, the client's parent, shared flag)
// when B3 says it is a client span; else it is the span's child.
func TestSharedSpans(t *testing.T) {
	up := newUpstream(t, nil)
	p := startProxyCaps(t, oneRoute("ingress", "true", up.addr(), "  propagation: [b3, tracecontext]\n"), core.Capabilities{Propagation: []string{"b3"}, TraceID128: true, SharedSpans: true})
	b3 := map[string]string{
		"x-b3-traceid": "0af7651916cd43dd8448eb211c80319c", "x-b3-spanid": "00f067aa0ba902b7", "x-b3-parentspanid": "1111111111111111", "x-b3-sampled": "1",
		"x-tracehop-client-span": "00f067aa0ba902b7",
	}
	do(t, "GET", "http://"+p.addr["l"]+"/", b3)
	s := p.rec.one(t)
	if !s.Shared || s.SpanID != 0x00f067aa0ba902b7 || s.ParentID != 0x1111111111111111 {
		t.Fatalf("shared span %+v: want id 00f067aa0ba902b7, parent 1111111111111111, shared", s)
	}
	if up.header("x-b3-spanid") != "00f067aa0ba902b7" || up.header("x-b3-parentspanid") != "1111111111111111" {
		t.Errorf("upstream got span %q parent %q", up.header("x-b3-spanid"), up.header("x-b3-parentspanid"))
	}
	if got := up.header("x-tracehop-client-span"); got != "" {
		t.Errorf("the ingress's SERVER span went upstream as a client span (%q)", got)
	}
	// Not said to be a client span, or said of another span: a child.
	b3["x-tracehop-client-span"] = "1111111111111111"
	do(t, "GET", "http://"+p.addr["l"]+"/", b3)
	delete(b3, "x-tracehop-client-span")
	do(t, "GET", "http://"+p.addr["l"]+"/", b3)
	// A context from another format does not say who the client's parent
	// is: no sharing then.
	do(t, "GET", "http://"+p.addr["l"]+"/", map[string]string{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"})
	for _, s := range p.rec.wait(t, 4)[1:] {
		if s.Shared || s.ParentID != 0x00f067aa0ba902b7 {
			t.Errorf("span %+v must be a plain child", s)
		}
	}
}

// Both HTTP paths send X-Forwarded-For and -Proto, and no X-Forwarded-Host:
// the Host is kept, so it would only repeat it (Envoy does not send it).
func TestForwardedHeaders(t *testing.T) {
	up := newUpstream(t, nil)
	p := startProxy(t, oneRoute("ingress", "true", up.addr(), ""))
	for _, path := range []struct {
		name    string
		headers map[string]string
	}{
		{"fast path", nil},
		{"net/http path", map[string]string{"te": "trailers"}}, // TE is handed to net/http
	} {
		do(t, "GET", "http://"+p.addr["l"]+"/", path.headers)
		if up.header("x-forwarded-for") != "127.0.0.1" || up.header("x-forwarded-proto") != "http" || up.header("x-forwarded-host") != "" {
			t.Errorf("%s: x-forwarded-for %q, -proto %q, -host %q; want 127.0.0.1, http and none", path.name,
				up.header("x-forwarded-for"), up.header("x-forwarded-proto"), up.header("x-forwarded-host"))
		}
	}
}

// An upstream that closed tracehop's idle connections (its idle timeout, a
// restart) costs no request an error: the first stale connection found is
// retried on a new one, and the idle ones older than it are dropped.
func TestStaleUpstreamConnectionsAreReplaced(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond) // so that the concurrent requests below need a connection each
		fmt.Fprint(w, "hello")
	})
	p := startProxy(t, oneRoute("ingress", "true", up.addr(), ""))
	url := "http://" + p.addr["l"] + "/"
	const n = 8
	var wg sync.WaitGroup
	for range n { // n idle upstream connections in the pool
		wg.Go(func() {
			resp, err := http.Get(url)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	up.CloseClientConnections()
	time.Sleep(50 * time.Millisecond) // the FINs arrive
	for i := range n {
		if resp, body := do(t, "GET", url, nil); resp.StatusCode != 200 || body != "hello" {
			t.Fatalf("request %d after the upstream closed its connections: %d %q", i, resp.StatusCode, body)
		}
	}
}

// gRPC spans follow OpenTelemetry's RPC conventions (and Envoy's tags): the
// status code and its message (percent-decoded) from trailers and from
// trailers-only answers, the path, and the error by side: every non-OK code
// fails a CLIENT span (egress), only the server's faults a SERVER span
// (ingress). A real gRPC server answers each code to a real client.
func TestGRPCStatusBySide(t *testing.T) {
	const message = "code %d: naïve 100%% sure"
	gs := grpc.NewServer(grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
		method, _ := grpc.MethodFromServerStream(stream)
		var code int
		fmt.Sscanf(method, "/test.Codes/Code%d", &code)
		if code == 0 {
			return stream.SendMsg(&emptypb.Empty{})
		}
		return status.Errorf(grpccodes.Code(code), message, code)
	}))
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	serverFault := map[int]bool{2: true, 4: true, 12: true, 13: true, 14: true, 15: true}
	for _, direction := range []string{"ingress", "egress"} {
		t.Run(direction, func(t *testing.T) {
			cfg := strings.Replace(strings.Replace(oneRoute(direction, "true", ln.Addr().String(), ""), "connect_timeout: 500ms", "connect_timeout: 500ms, protocol: h2c", 1), "timeout: 300ms", "timeout: 0s", 1)
			p := startProxy(t, cfg)
			conn, err := grpc.NewClient("passthrough:///"+p.addr["l"], grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			for code := 0; code <= 16; code++ {
				err := conn.Invoke(context.Background(), fmt.Sprintf("/test.Codes/Code%d", code), &emptypb.Empty{}, &emptypb.Empty{})
				if got := status.Code(err); int(got) != code {
					t.Fatalf("code %d came back as %v (%v)", code, got, err)
				}
			}
			spans := p.rec.wait(t, 17)
			for code, s := range spans {
				c, _ := s.Tag("grpc.status_code")
				path, _ := s.Tag("grpc.path")
				msg, _ := s.Tag("grpc.message")
				if c != strconv.Itoa(code) || path != fmt.Sprintf("/test.Codes/Code%d", code) {
					t.Errorf("span %d: grpc.status_code %q, grpc.path %q", code, c, path)
				}
				if want := fmt.Sprintf(message, code); code != 0 && msg != want {
					t.Errorf("span %d: grpc.message %q, want %q", code, msg, want)
				}
				wantErr := code != 0 && (direction == "egress" || serverFault[code])
				if s.Error != wantErr {
					t.Errorf("%s span with code %d: error %v, want %v", direction, code, s.Error, wantErr)
				}
			}
		})
	}
}
