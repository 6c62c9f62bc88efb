//go:build e2e

package proxy_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// The JavaScript reference driver (drivers/otlpjs), found by name on the
// plugin path as any driver is, delivers the sandbox's trace into the real
// Jaeger v2 over OTLP/HTTP: one trace of 4 spans over 3 services, one
// root, every parent in the trace, the proxy's tags and the driver's
// instrumentation scope on every span.
func TestE2EOtlpjsIntoJaeger(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is not installed: the JavaScript reference driver needs Node.js 20 or later")
	}
	script, err := filepath.Abs("../drivers/otlpjs/tracehop-driver-otlpjs")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(script), "node_modules")); err != nil {
		t.Fatalf("drivers/otlpjs has no node_modules: run make js-deps (make e2e does): %v", err)
	}
	ports := startJaegerPorts(t)
	query := "http://127.0.0.1:" + ports["JAEGER_QUERY_PORT"]
	// On the plugin path beside tracehop, as an installed driver would be.
	bin := binaries(t, "file")
	link := filepath.Join(bin, "tracehop-driver-otlpjs")
	os.Remove(link)
	if err := os.Symlink(script, link); err != nil {
		t.Fatal(err)
	}
	seen := seenOf(t, query, "front-proxy")
	sb := startSandboxWith(t, "all", "file", fmt.Sprintf("  driver: {name: otlpjs, config: {endpoint: \"http://127.0.0.1:%s\"}}\n", ports["JAEGER_OTLP_HTTP_PORT"]))
	get(t, "http://"+sb.frontAddr+"/trace/1")
	sb.stop(t)
	tr := waitNewTrace(t, query, "front-proxy", seen, 4)
	services := map[string]int{}
	ids := map[string]bool{}
	for _, s := range tr.Spans {
		services[tr.Processes[s.ProcessID].ServiceName]++
		ids[s.SpanID] = true
	}
	if len(tr.Spans) != 4 || services["front-proxy"] != 1 || services["service1"] != 2 || services["service2"] != 1 {
		t.Fatalf("want one trace of 4 spans over 3 services, got %d spans: %v", len(tr.Spans), services)
	}
	roots := 0
	for _, s := range tr.Spans {
		parent := ""
		for _, r := range s.References {
			if r.RefType == "CHILD_OF" {
				parent = r.SpanID
			}
		}
		switch {
		case parent == "":
			roots++
		case !ids[parent]:
			t.Errorf("span %s (%s): its parent %s is not in the trace", s.SpanID, s.OperationName, parent)
		}
		tags := map[string]string{}
		for _, tg := range s.Tags {
			tags[tg.Key] = fmt.Sprint(tg.Value)
		}
		if tags["otel.scope.name"] != "tracehop-driver-otlpjs" || tags["http.method"] != "GET" || tags["http.status_code"] == "" {
			t.Errorf("span %s (%s): tags %v; want the proxy's http.method and http.status_code, scope tracehop-driver-otlpjs", s.SpanID, s.OperationName, tags)
		}
	}
	if roots != 1 {
		t.Errorf("%d roots; want 1", roots)
	}
}
