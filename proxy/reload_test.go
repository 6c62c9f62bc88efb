package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/drivers/file"
	"github.com/tracehop/tracehop/internal/app"
	"github.com/tracehop/tracehop/proxy"
	"github.com/tracehop/tracehop/proxy/config"
)

// reloadable is an in-process tracehop whose config a test replaces, each
// config with a recorder of its own as the tracer's sink.
type reloadable struct {
	srv    *proxy.Server
	tracer *proxy.Tracer
	addr   map[string]string
}

func parseConfig(t *testing.T, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func (r *reloadable) tracerFor(t *testing.T, cfg *config.Config, rec *recorder) *proxy.Tracer {
	t.Helper()
	if cfg.Tracing == nil {
		return nil
	}
	tr, err := proxy.NewTracer(cfg, proxy.TracerOptions{Sink: rec, Capabilities: []core.Capabilities{{Propagation: []string{"b3"}, TraceID128: true}}, Previous: r.tracer})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func startReloadable(t *testing.T, yaml string, rec *recorder) *reloadable {
	t.Helper()
	r := &reloadable{addr: map[string]string{}}
	cfg := parseConfig(t, yaml)
	r.tracer = r.tracerFor(t, cfg, rec)
	r.srv = proxy.NewServer(cfg, proxy.Options{Tracer: r.tracer, RetireAfter: 5 * time.Second})
	addrs, err := r.srv.Start()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		r.addr[a.Name] = a.Address
	}
	admin := serveAdmin(t, cfg, r.srv, r.addr)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r.srv.Shutdown(ctx)
		admin.Close()
	})
	return r
}

func (r *reloadable) apply(t *testing.T, yaml string, rec *recorder) {
	t.Helper()
	cfg := parseConfig(t, yaml)
	tr := r.tracerFor(t, cfg, rec)
	if err := r.srv.Apply(cfg, tr, nil); err != nil {
		t.Fatal(err)
	}
	r.tracer = tr
}

func getBody(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// New requests take the new routes, clusters and sampling at once, on
// connections kept alive across the switch; a request in flight finishes
// on the config it began with, and its span goes to that config's sink.
func TestReloadSwitchesNewRequestsOnly(t *testing.T) {
	up1 := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/slow") {
			time.Sleep(300 * time.Millisecond)
		}
		fmt.Fprint(w, "one")
	})
	up2 := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "two") })
	port := freePort(t)
	cfg := func(routes, sampling string) string {
		return fmt.Sprintf(`node: {id: n, service: svc}
admin: {address: off}
listeners:
  - {name: l, address: %s, direction: ingress, routes: [%s]}
clusters:
  - {name: c1, endpoints: [%s]}
  - {name: c2, endpoints: [%s]}
tracing:
  driver: {name: file}
  sampling: {random: %s}
`, port, routes, up1.addr(), up2.addr(), sampling)
	}
	rec1, rec2, rec3 := &recorder{}, &recorder{}, &recorder{}
	r := startReloadable(t, cfg("{match: {prefix: /a}, cluster: c1}", "100"), rec1)
	base := "http://" + port
	client := &http.Client{} // keeps its connection alive across the reloads
	if code, body := getBody(t, client, base+"/a/x"); code != 200 || body != "one" {
		t.Fatalf("before: %d %q", code, body)
	}
	slowDone := make(chan string)
	go func() {
		code, body := getBody(t, &http.Client{}, base+"/a/slow")
		slowDone <- fmt.Sprint(code, " ", body)
	}()
	time.Sleep(100 * time.Millisecond) // the slow request is at the upstream
	r.apply(t, cfg("{match: {prefix: /b}, cluster: c2}", "100"), rec2)
	if code, body := getBody(t, client, base+"/b/x"); code != 200 || body != "two" {
		t.Errorf("after: /b/x = %d %q, want the new route to c2", code, body)
	}
	if code, _ := getBody(t, client, base+"/a/x"); code != 404 {
		t.Errorf("after: the removed route still answers %d", code)
	}
	if got := <-slowDone; got != "200 one" {
		t.Errorf("the request in flight across the reload got %q", got)
	}
	// rec1: the request before and the one in flight; rec2: the two after.
	if n := len(rec1.wait(t, 2)); n != 2 {
		t.Errorf("the old config's sink has %d spans", n)
	}
	spans := rec2.wait(t, 2)
	if spans[0].Name != "ingress" {
		t.Errorf("unexpected span %+v", spans[0])
	}
	// Once the old config is retired, its route's series leave /metrics.
	for deadline := time.Now().Add(5 * time.Second); strings.Contains(proxy.Metrics(r.srv), `cluster="c1"`); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the removed route's series are still in /metrics after its config was retired")
		}
	}
	if m := proxy.Metrics(r.srv); !strings.Contains(m, `tracehop_requests_total{cluster="c2",code_class="2xx",listener="l",route="route0"} 1`) {
		t.Errorf("the route in force lost its series:\n%s", m)
	}
	r.apply(t, cfg("{match: {prefix: /b}, cluster: c2}", "0"), rec3)
	getBody(t, client, base+"/b/y")
	if up2.header("X-B3-Sampled") != "0" {
		t.Errorf("sampling 0 after the reload, but the upstream saw x-b3-sampled %q", up2.header("X-B3-Sampled"))
	}
	time.Sleep(50 * time.Millisecond)
	if n := len(rec3.all()); n != 0 {
		t.Errorf("sampling 0 recorded %d spans", n)
	}
	if n := len(rec2.all()); n != 2 {
		t.Errorf("a span of the third config went to the second's sink (%d spans)", n)
	}
}

// A listener that keeps its address keeps its port through every reload:
// no connection is refused while others come and go.
func TestReloadListenersComeAndGo(t *testing.T) {
	up := newUpstream(t, nil)
	kept, other, third := freePort(t), freePort(t), freePort(t)
	cfg := func(second, addr string) string {
		return fmt.Sprintf(`admin: {address: off}
listeners:
  - {name: kept, address: %s, direction: ingress, routes: [{cluster: up}]}
  - {name: %s, address: %s, direction: ingress, routes: [{cluster: up}]}
clusters:
  - {name: up, endpoints: [%s]}
`, kept, second, addr, up.addr())
	}
	r := startReloadable(t, cfg("other", other), nil)
	stop := make(chan struct{})
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			client := &http.Client{}
			if i%2 == 1 { // a new connection for every request
				client.Transport = &http.Transport{DisableKeepAlives: true}
			}
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Get("http://" + kept + "/")
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				ok.Add(1)
			}
		})
	}
	for i := range 10 {
		if i%2 == 0 {
			r.apply(t, cfg("third", third), nil)
		} else {
			r.apply(t, cfg("other", other), nil)
		}
		time.Sleep(30 * time.Millisecond)
	}
	r.apply(t, cfg("third", third), nil)
	close(stop)
	wg.Wait()
	if failed.Load() != 0 || ok.Load() == 0 {
		t.Errorf("%d requests failed (first: %v), %d ok across 11 reloads", failed.Load(), firstErr.Load(), ok.Load())
	}
	if code, _ := getBody(t, &http.Client{}, "http://"+third+"/"); code != 200 {
		t.Errorf("the added listener answers %d", code)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", other, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the removed listener's port still accepts")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startApp runs tracehop as `tracehop run` does, with real drivers, from a
// config file the test rewrites.
func startApp(t *testing.T, path, yaml string) *app.App {
	t.Helper()
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	app, err := app.Start(context.Background(), cfg, app.Options{ConfigFile: path, DrainTimeout: 5 * time.Second, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		app.Shutdown(ctx)
	})
	return app
}

func readSpanFile(t *testing.T, path string) []core.Span {
	t.Helper()
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
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

// A reload that fails at any stage (the YAML, validation, a driver that
// cannot start, a driver that refuses its config, an address in use)
// leaves the running config serving; a good one then switches the driver,
// and each span goes to the driver in force when its request began.
func TestReloadFailuresLeaveTheConfigInForce(t *testing.T) {
	bin := binaries(t, "file")
	up := newUpstream(t, nil)
	dir := t.TempDir()
	path := filepath.Join(dir, "tracehop.yaml")
	port, admin := freePort(t), freePort(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := func(listeners, driver string) string {
		return fmt.Sprintf(`node: {id: n, service: svc}
admin: {address: %s}
listeners:
  - {name: l, address: %s, direction: ingress, routes: [{cluster: up}]}
%sclusters:
  - {name: up, endpoints: [%s]}
tracing:
  plugin_dir: %s
  driver: %s
  queue: {batch_delay: 20ms}
`, admin, port, listeners, up.addr(), bin, driver)
	}
	fileA, fileB := filepath.Join(dir, "a.jsonl"), filepath.Join(dir, "b.jsonl")
	app := startApp(t, path, cfg("", fmt.Sprintf("{name: file, config: {path: %s}}", fileA)))
	hash := app.Server.ConfigHash()
	get := func() {
		t.Helper()
		if code, _ := getBody(t, &http.Client{}, "http://"+port+"/"); code != 200 {
			t.Fatalf("status %d", code)
		}
	}
	get()
	for _, bad := range []struct{ stage, yaml, want string }{
		{"parse", "listeners: [", "tracehop.yaml"},
		{"validate", strings.Replace(cfg("", "{name: file}"), "endpoints: ["+up.addr()+"]", "endpoints: []", 1), "clusters[0].endpoints"},
		{"driver start", cfg("", "{name: nosuch}"), "nosuch"},
		{"driver configure", cfg("", "{name: file, config: {pth: x}}"), "pth"},
		{"bind", cfg("  - {name: m, address: "+busy.Addr().String()+", direction: ingress, routes: [{cluster: up}]}\n", "{name: file, config: {path: "+fileA+"}}"), "cannot listen"},
	} {
		os.WriteFile(path, []byte(bad.yaml), 0o644)
		err := app.ReloadFile(context.Background())
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: reload error %v, want one naming %q", bad.stage, err, bad.want)
		}
		if app.Server.ConfigHash() != hash {
			t.Errorf("%s: a failed reload changed the config in force", bad.stage)
		}
		get()
	}
	if n := adminMetric(t, admin, `tracehop_config_reloads_total{result="failure"}`); n != 5 {
		t.Errorf("%v failures counted, want 5", n)
	}
	os.WriteFile(path, []byte(cfg("", fmt.Sprintf("{name: file, config: {path: %s}}", fileB))), 0o644)
	if err := app.ReloadFile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if app.Server.ConfigHash() == hash {
		t.Error("the hash did not change")
	}
	get()
	get()
	// The old driver is retired once its requests are done: its file then
	// holds every span of the requests before the switch.
	deadline := time.Now().Add(10 * time.Second)
	for len(readSpanFile(t, fileA)) < 6 || len(readSpanFile(t, fileB)) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("driver A has %d spans (want 6), B %d (want 2)", len(readSpanFile(t, fileA)), len(readSpanFile(t, fileB)))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if a, b := len(readSpanFile(t, fileA)), len(readSpanFile(t, fileB)); a != 6 || b != 2 {
		t.Errorf("driver A has %d spans (want 6), B %d (want 2)", a, b)
	}
	if n := adminMetric(t, admin, `tracehop_config_reloads_total{result="success"}`); n != 1 {
		t.Errorf("%v successes counted, want 1", n)
	}
	resp, err := http.Get("http://" + admin + "/config")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("X-Tracehop-Config-Hash") != app.Server.ConfigHash() {
		t.Errorf("/config shows hash %q, want %q", resp.Header.Get("X-Tracehop-Config-Hash"), app.Server.ConfigHash())
	}
	// POST /reload does the same.
	resp, err = http.Post("http://"+admin+"/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), app.Server.ConfigHash()) {
		t.Errorf("POST /reload: %d %s", resp.StatusCode, body)
	}
	// The same config again: driver B carries on, its process untouched.
	time.Sleep(500 * time.Millisecond) // the retirement of the replaced snapshot
	get()
	for deadline := time.Now().Add(5 * time.Second); len(readSpanFile(t, fileB)) < 3 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if b := len(readSpanFile(t, fileB)); b != 3 {
		t.Errorf("after reloading the same config, driver B has %d spans, want 3", b)
	}
	t.Log("checks done")
}

// adminMetric reads one series from an admin server's /metrics.
func adminMetric(t *testing.T, admin, series string) float64 {
	t.Helper()
	tr := &traced{admin: admin}
	return tr.metric(t, series)
}

// testLogger sends a server's logs to the test log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// TLS follows reloads like the rest: a listener that keeps its port turns
// HTTPS, and then requires client certificates, for new connections, while
// a connection established before a change keeps what it negotiated.
func TestReloadTLS(t *testing.T) {
	p := newPKI(t)
	up := newUpstream(t, nil)
	port := freePort(t)
	cfg := func(tlsBlock string) string {
		return fmt.Sprintf(`admin: {address: off}
listeners:
  - name: l
    address: %s
    direction: ingress
    routes: [{cluster: up}]
%sclusters:
  - {name: up, endpoints: [%s]}
`, port, tlsBlock, up.addr())
	}
	r := startReloadable(t, cfg(""), nil)
	if code, _ := getBody(t, &http.Client{}, "http://"+port+"/"); code != 200 {
		t.Fatalf("plaintext before: %d", code)
	}
	serverTLS := fmt.Sprintf("    tls: {cert_file: %s, key_file: %s}\n", p.serverCrt, p.srvKey)
	r.apply(t, cfg(serverTLS), nil)
	kept := p.client(t, "", "", false) // connects now, keeps its connection
	if resp, _ := httpsGet(t, kept, "https://"+port+"/", nil); resp.StatusCode != 200 {
		t.Fatalf("HTTPS after the reload: %d", resp.StatusCode)
	}
	mtls := fmt.Sprintf("    tls: {cert_file: %s, key_file: %s, client_ca_file: %s}\n", p.serverCrt, p.srvKey, p.caFile)
	r.apply(t, cfg(mtls), nil)
	if resp, _ := httpsGet(t, kept, "https://"+port+"/", nil); resp.StatusCode != 200 {
		t.Errorf("a connection made before mTLS was required: %d, want it kept", resp.StatusCode)
	}
	if _, err := p.client(t, "", "", false).Get("https://" + port + "/"); err == nil {
		t.Error("a new connection without a client certificate was served after the reload required one")
	}
	if resp, _ := httpsGet(t, p.client(t, p.clientCrt, p.cliKey, false), "https://"+port+"/", nil); resp.StatusCode != 200 {
		t.Errorf("a new connection with a client certificate: %d", resp.StatusCode)
	}
}
