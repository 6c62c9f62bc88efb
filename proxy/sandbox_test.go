package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tracehop/tracehop/drivers/file"
	"github.com/tracehop/tracehop/sdk"
	"github.com/tracehop/tracehop/sdk/drivertest/lightstepreceiver"
)

var (
	buildMu  sync.Mutex
	binDir   string
	builtPkg = map[string]bool{}
)

var binPackages = map[string]string{
	"tracehop":                  "github.com/tracehop/tracehop/cmd/tracehop",
	"tracehop-driver-file":      "github.com/tracehop/tracehop/cmd/tracehop-driver-file",
	"tracehop-driver-zipkin":    "github.com/tracehop/tracehop/cmd/tracehop-driver-zipkin",
	"tracehop-driver-datadog":   "github.com/tracehop/tracehop/cmd/tracehop-driver-datadog",
	"tracehop-driver-lightstep": "github.com/tracehop/tracehop/cmd/tracehop-driver-lightstep",
	"tracehop-driver-otlp":      "github.com/tracehop/tracehop/cmd/tracehop-driver-otlp",
	"service":                   "github.com/tracehop/tracehop/examples/sandbox/service",
}

// binaries builds tracehop, the sandbox service and the named drivers
// (once per test binary) and returns their directory.
func binaries(t *testing.T, drivers ...string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if binDir == "" {
		dir, err := os.MkdirTemp("", "tracehop-sandbox-bin-")
		if err != nil {
			t.Fatal(err)
		}
		binDir = dir
	}
	gocmd := filepath.Join(runtime.GOROOT(), "bin", "go")
	for _, name := range append([]string{"tracehop", "service"}, drivers...) {
		if name != "tracehop" && name != "service" {
			name = "tracehop-driver-" + name
		}
		if builtPkg[name] {
			continue
		}
		if b, err := exec.Command(gocmd, "build", "-o", filepath.Join(binDir, name), binPackages[name]).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", binPackages[name], err, b)
		}
		builtPkg[name] = true
	}
	return binDir
}

var (
	portsMu sync.Mutex
	ports   = map[int]bool{}
)

// freePort returns a loopback address for a process the test starts. The
// port comes from below the kernel's ephemeral range (32768 and up here),
// so that no outgoing connection can take it between this check and the
// process's bind, and is never handed out twice.
func freePort(t *testing.T) string {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 1000 {
		p := 20000 + rand.IntN(12000)
		if ports[p] {
			continue
		}
		addr := fmt.Sprintf("127.0.0.1:%d", p)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		ln.Close()
		ports[p] = true
		return addr
	}
	t.Fatal("no free port between 20000 and 32000")
	return ""
}

// proc is a process the test started; its output goes to the test log.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan error

	outMu sync.Mutex
	out   strings.Builder
}

// output returns everything the process printed so far.
func (p *proc) output() string {
	p.outMu.Lock()
	defer p.outMu.Unlock()
	return p.out.String()
}

func startProc(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan error, 1)}
	var logMu sync.Mutex
	finished := false
	t.Cleanup(func() {
		logMu.Lock()
		finished = true
		logMu.Unlock()
		p.cmd.Process.Kill()
	})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.outMu.Lock()
			p.out.WriteString(sc.Text() + "\n")
			p.outMu.Unlock()
			logMu.Lock()
			if !finished && testing.Verbose() {
				t.Logf("[%s] %s", name, sc.Text())
			}
			logMu.Unlock()
		}
		p.done <- cmd.Wait()
	}()
	return p
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("%s exited with %v after SIGTERM; want 0", p.name, err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("%s did not exit within 30s of SIGTERM", p.name)
	}
}

func waitHTTP(t *testing.T, url string) {
	t.Helper()
	waitReady(t, nil, url)
}

// waitReady waits for url to answer 200; if p exits first, it fails at once
// with what p printed.
func waitReady(t *testing.T, p *proc, url string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if p != nil {
			select {
			case err := <-p.done:
				t.Fatalf("%s exited (%v) before %s answered:\n%s", p.name, err, url, p.output())
			default:
			}
		}
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never answered 200", url)
}

// sandbox is Envoy's jaeger-tracing topology as local processes:
// front proxy -> service1 sidecar (ingress -> app, app -> egress) ->
// service2 sidecar (ingress -> app).
type sandbox struct {
	front, s1, s2 *proc
	frontAddr     string
	spansFile     string
	// admins are the three tracehops' admin addresses (metrics, ready).
	admins []string
}

func startSandbox(t *testing.T, propagate string) *sandbox {
	return startSandboxWith(t, propagate, "file", "")
}

// startSandboxWith starts the sandbox with the named driver and a tracing
// block of its own (after plugin_dir), or the file driver's when
// driverBlock is "".
func startSandboxWith(t *testing.T, propagate, driver, driverBlock string) *sandbox {
	bin := binaries(t, driver)
	dir := t.TempDir()
	sb := &sandbox{spansFile: filepath.Join(dir, "spans.jsonl")}
	a := map[string]string{}
	for _, k := range []string{"front", "frontAdmin", "s1in", "s1out", "s1admin", "app1", "s2in", "s2admin", "app2"} {
		a[k] = freePort(t)
	}
	sb.frontAddr = a["front"]
	sb.admins = []string{a["frontAdmin"], a["s1admin"], a["s2admin"]}
	if driverBlock == "" {
		// With the tags a user adds from the answer and from baggage.
		driverBlock = fmt.Sprintf("  driver: {name: file, config: {path: %s}}\n", sb.spansFile) +
			"  custom_tags: [{tag: content_type, response_header: {name: content-type, default: none}}]\n" +
			"  baggage_tags: [user.id]\n"
	}
	tracing := fmt.Sprintf("tracing:\n  plugin_dir: %s\n%s", bin, driverBlock)
	write := func(name, body string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(body+tracing), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	// The edge trusts the test client's baggage (baggage: {trust: true}),
	// so that it can be followed through every hop; an edge that does not
	// drops it (TestUntrustedBaggageStopsAtTheEdge).
	front := write("front-proxy.yaml", fmt.Sprintf(`node: {id: front-proxy, service: front-proxy, zone: local}
admin: {address: %s}
listeners:
  - {name: edge, address: %s, direction: ingress, trust_trace_headers: false, baggage: {trust: true},
     routes: [{match: {prefix: /}, cluster: service1, operation: checkAvailability}]}
clusters:
  - {name: service1, endpoints: [%s]}
`, a["frontAdmin"], a["front"], a["s1in"]))
	s1 := write("service1-sidecar.yaml", fmt.Sprintf(`node: {id: service1-sidecar, service: service1, zone: local}
admin: {address: %s}
listeners:
  - {name: ingress, address: %s, direction: ingress, routes: [{match: {prefix: /trace/}, cluster: app}]}
  - {name: egress, address: %s, direction: egress, routes: [{match: {prefix: /trace/}, cluster: service2, operation: checkStock}]}
clusters:
  - {name: app, endpoints: [%s]}
  - {name: service2, endpoints: [%s]}
`, a["s1admin"], a["s1in"], a["s1out"], a["app1"], a["s2in"]))
	s2 := write("service2-sidecar.yaml", fmt.Sprintf(`node: {id: service2-sidecar, service: service2, zone: local}
admin: {address: %s}
listeners:
  - {name: ingress, address: %s, direction: ingress, routes: [{match: {prefix: /trace/}, cluster: app}]}
clusters:
  - {name: app, endpoints: [%s]}
`, a["s2admin"], a["s2in"], a["app2"]))

	startProc(t, "app1", filepath.Join(bin, "service"), "-listen", a["app1"], "-name", "1", "-next", "http://"+a["s1out"]+"/trace/2", "-propagate", propagate)
	startProc(t, "app2", filepath.Join(bin, "service"), "-listen", a["app2"], "-name", "2")
	sb.front = startProc(t, "front-proxy", filepath.Join(bin, "tracehop"), "run", "-c", front)
	sb.s1 = startProc(t, "service1-sidecar", filepath.Join(bin, "tracehop"), "run", "-c", s1)
	sb.s2 = startProc(t, "service2-sidecar", filepath.Join(bin, "tracehop"), "run", "-c", s2)
	for k, p := range map[string]*proc{"frontAdmin": sb.front, "s1admin": sb.s1, "s2admin": sb.s2} {
		waitReady(t, p, "http://"+a[k]+"/ready")
	}
	waitHTTP(t, "http://"+a["app1"]+"/healthz")
	waitHTTP(t, "http://"+a["app2"]+"/healthz")
	return sb
}

// stop stops the tracehops, which flushes their queues.
func (sb *sandbox) stop(t *testing.T) {
	t.Helper()
	for _, p := range []*proc{sb.front, sb.s1, sb.s2} {
		p.stop(t)
	}
}

// spans stops the tracehops and reads what the file driver wrote.
func (sb *sandbox) spans(t *testing.T) []sdk.Span {
	t.Helper()
	sb.stop(t)
	f, err := os.Open(sb.spansFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	spans, err := file.ReadSpans(f)
	if err != nil {
		t.Fatal(err)
	}
	return spans
}

// byRole finds the span of one hop: its service and kind.
func byRole(t *testing.T, spans []sdk.Span, service string, kind sdk.Kind) sdk.Span {
	t.Helper()
	var found []sdk.Span
	for _, s := range spans {
		if s.LocalService == service && s.Kind == kind {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one %s %s span, got %d among %d spans", service, kind, len(found), len(spans))
	}
	return found[0]
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return string(b)
}

func TestSandbox(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 15 processes; run without -short")
	}
	for _, mode := range []string{"all", "false", "request-id"} {
		t.Run("propagate="+mode, func(t *testing.T) {
			t.Parallel()
			sb := startSandbox(t, mode)
			req, _ := http.NewRequest("GET", "http://"+sb.frontAddr+"/trace/1", nil)
			req.Header.Set("Baggage", "user.id=alice,tenant=acme")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(body), "service 1") {
				t.Fatalf("body %q", body)
			}
			spans := sb.spans(t)
			if len(spans) != 4 {
				t.Fatalf("want 4 spans (front, service1 in and out, service2), got %d", len(spans))
			}
			front := byRole(t, spans, "front-proxy", sdk.KindServer)
			s1in := byRole(t, spans, "service1", sdk.KindServer)
			s1out := byRole(t, spans, "service1", sdk.KindClient)
			s2in := byRole(t, spans, "service2", sdk.KindServer)

			if front.ParentID != 0 || s1in.ParentID != front.SpanID || s1in.TraceID != front.TraceID {
				t.Errorf("front-proxy -> service1 not linked: front %+v, service1 %+v", front, s1in)
			}
			if s2in.ParentID != s1out.SpanID || s2in.TraceID != s1out.TraceID {
				t.Errorf("service1 egress -> service2 not linked")
			}
			joined := s1out.TraceID == s1in.TraceID && s1out.ParentID == s1in.SpanID
			switch mode {
			case "all", "request-id":
				if !joined {
					t.Errorf("propagate=%s: service1's egress span is not a child of its ingress span: ingress %s/%s, egress %s parent %s",
						mode, s1in.TraceID, s1in.SpanID, s1out.TraceID, s1out.ParentID)
				}
			case "false":
				if s1out.TraceID == s1in.TraceID || s1out.ParentID != 0 {
					t.Errorf("propagate=false must split the trace: egress span %s parent %s, ingress trace %s", s1out.TraceID, s1out.ParentID, s1in.TraceID)
				}
			}
			// Baggage reaches service2 when the application forwards it, and
			// when it forwards only x-request-id (the sidecar restores it).
			for i, s := range []sdk.Span{front, s1in, s1out, s2in} {
				user, _ := s.Tag("user.id")
				if want := "alice"; (i < 2 || mode != "false") && user != want {
					t.Errorf("propagate=%s: %s %s span: baggage tag user.id %q, want %q", mode, s.LocalService, s.Kind, user, want)
				}
				if ct, _ := s.Tag("content_type"); !strings.HasPrefix(ct, "text/plain") {
					t.Errorf("%s %s span: response-header tag content_type %q, want the answer's text/plain", s.LocalService, s.Kind, ct)
				}
			}
			if user, ok := s2in.Tag("user.id"); mode == "false" && ok {
				t.Errorf("propagate=false: service2 got baggage %q its application never sent", user)
			}
			if user, ok := s1out.Tag("user.id"); mode == "false" && ok {
				t.Errorf("propagate=false: service1's egress span got baggage %q its application never sent", user)
			}
			// Envoy's tags, and one request id along a joined path.
			rid, _ := front.Tag("guid:x-request-id")
			for _, s := range spans {
				for _, k := range []string{"component", "node_id", "zone", "guid:x-request-id", "http.url", "http.method", "http.protocol",
					"user_agent", "peer.address", "request_size", "response_size", "upstream_cluster", "upstream_address", "http.status_code"} {
					if _, ok := s.Tag(k); !ok {
						t.Errorf("%s %s span lacks tag %s", s.LocalService, s.Kind, k)
					}
				}
				if v, _ := s.Tag("http.status_code"); v != "200" || s.Error {
					t.Errorf("%s %s: status %s error %v", s.LocalService, s.Kind, v, s.Error)
				}
				if id, _ := s.Tag("guid:x-request-id"); mode != "false" && id != rid {
					t.Errorf("%s %s: request id %s, want %s all along", s.LocalService, s.Kind, id, rid)
				}
			}
			if front.Name != "checkavailability" || s1out.Name != "checkstock" {
				t.Errorf("span names %q, %q (Zipkin JSON lowercases)", front.Name, s1out.Name)
			}
		})
	}
}

// The sandbox with the lightstep driver, into the collectorpb receiver
// (LightStep has no open-source collector): one correctly parented trace,
// with 64-bit trace ids since LightStep keeps no more.
func TestSandboxLightStep(t *testing.T) {
	if testing.Short() {
		t.Skip("starts several processes; run without -short")
	}
	r, err := lightstepreceiver.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	host, port, _ := net.SplitHostPort(r.GRPCAddr)
	sb := startSandboxWith(t, "all", "lightstep", fmt.Sprintf("  driver: {name: lightstep, config: {access_token: t, collector: {host: %q, port: %s, plaintext: true}}}\n", host, port))
	get(t, "http://"+sb.frontAddr+"/trace/1")
	sb.stop(t)
	spans, _ := r.Spans()
	if len(spans) != 4 {
		t.Fatalf("%d spans arrived, want 4", len(spans))
	}
	front := byRole(t, spans, "front-proxy", sdk.KindServer)
	s1in := byRole(t, spans, "service1", sdk.KindServer)
	s1out := byRole(t, spans, "service1", sdk.KindClient)
	s2in := byRole(t, spans, "service2", sdk.KindServer)
	if s1in.ParentID != front.SpanID || s1out.ParentID != s1in.SpanID || s2in.ParentID != s1out.SpanID {
		t.Errorf("parents: service1 %s (want %s), egress %s (want %s), service2 %s (want %s)",
			s1in.ParentID, front.SpanID, s1out.ParentID, s1in.SpanID, s2in.ParentID, s1out.SpanID)
	}
	for _, s := range spans {
		if s.TraceID != front.TraceID || s.TraceID.High != 0 {
			t.Errorf("%s %s: trace %s, want %s (64-bit)", s.LocalService, s.Kind, s.TraceID, front.TraceID)
		}
	}
}
