//go:build e2e

package proxy_test

import (
	"encoding/binary"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tracehop/tracehop/core/propagation"
	"github.com/tracehop/tracehop/sdk/drivertest/otlpreceiver"
)

// The sampling items of issue 27 against their real counterparts: Jaeger
// v2's remote sampling (item 3) and the OpenTelemetry Collector's
// probabilistic sampler in its proportional mode (item 4).

// jaegerBin returns Jaeger v2 as examples/sandbox/jaeger.sh builds it, or
// $JAEGER_BIN.
func jaegerBin(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("JAEGER_BIN"); bin != "" {
		return bin
	}
	out, err := exec.Command("../examples/sandbox/jaeger.sh").Output()
	if err != nil {
		t.Fatalf("building Jaeger: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// startTracehop runs the tracehop binary on a config and waits for /ready
// on its admin address.
func startTracehop(t *testing.T, name, bin, admin, yaml string) *proc {
	t.Helper()
	path := filepath.Join(t.TempDir(), name+".yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, name, filepath.Join(bin, "tracehop"), "run", "-c", path)
	waitReady(t, p, "http://"+admin+"/ready")
	return p
}

// The remote sampling source against the real Jaeger v2: its
// remote_sampling extension serves strategies from a file it reloads
// every second; tracehop polls it every 500ms. A per-operation strategy
// applies to the route whose span name is that operation, the service's
// default to the rest; a change of the file shows in tracehop's decisions
// within the two intervals; with Jaeger gone, the last strategy stays.
func TestE2ESamplingRemoteFromJaeger(t *testing.T) {
	bin := binaries(t, "file")
	dir := t.TempDir()
	strategies := filepath.Join(dir, "strategies.json")
	write := func(def, checkout float64) time.Time {
		t.Helper()
		body := fmt.Sprintf(`{"service_strategies": [{"service": "shop", "type": "probabilistic", "param": %v,
  "operation_strategies": [{"operation": "checkout", "type": "probabilistic", "param": %v}]}],
 "default_strategy": {"type": "probabilistic", "param": 1}}`, def, checkout)
		// Written beside and renamed: Jaeger never reads half a file.
		if err := os.WriteFile(strategies+".tmp", []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(strategies+".tmp", strategies); err != nil {
			t.Fatal(err)
		}
		return time.Now()
	}
	write(0, 1)
	ports := map[string]string{}
	for _, k := range []string{"query", "querygrpc", "health", "sampling", "samplinggrpc", "otlp"} {
		_, ports[k], _ = net.SplitHostPort(freePort(t))
	}
	jcfg := filepath.Join(dir, "jaeger.yaml")
	if err := os.WriteFile(jcfg, []byte(fmt.Sprintf(`service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2, remote_sampling]
  pipelines:
    traces: {receivers: [otlp], processors: [batch], exporters: [jaeger_storage_exporter]}
  telemetry: {metrics: {level: none}, traces: {level: none}, logs: {level: warn}}
extensions:
  jaeger_query:
    storage: {traces: memstore}
    http: {endpoint: "127.0.0.1:%s"}
    grpc: {endpoint: "127.0.0.1:%s"}
  jaeger_storage: {backends: {memstore: {memory: {max_traces: 1000}}}}
  healthcheckv2: {use_v2: true, http: {endpoint: "127.0.0.1:%s"}}
  remote_sampling:
    file: {path: %s, reload_interval: 1s}
    http: {endpoint: "127.0.0.1:%s"}
    grpc: {endpoint: "127.0.0.1:%s"}
receivers:
  otlp: {protocols: {grpc: {endpoint: "127.0.0.1:%s"}}}
processors:
  batch: {}
exporters:
  jaeger_storage_exporter: {trace_storage: memstore}
`, ports["query"], ports["querygrpc"], ports["health"], strategies, ports["sampling"], ports["samplinggrpc"], ports["otlp"])), 0o644); err != nil {
		t.Fatal(err)
	}
	jaeger := startProc(t, "jaeger", jaegerBin(t), "--config=file:"+jcfg)
	waitReady(t, jaeger, "http://127.0.0.1:"+ports["health"]+"/status")

	up := newUpstream(t, nil)
	port, admin := freePort(t), freePort(t)
	startTracehop(t, "shop-sidecar", bin, admin, fmt.Sprintf(`node: {id: shop-1, service: shop}
admin: {address: %s}
listeners:
  - {name: in, address: %s, direction: ingress,
     routes: [{match: {prefix: /checkout}, cluster: up, operation: checkout}, {match: {prefix: /}, cluster: up, operation: browse}]}
clusters:
  - {name: up, endpoints: [%s]}
tracing:
  plugin_dir: %s
  driver: {name: file, config: {path: %s}}
  sampling: {random: 100, remote: {url: "http://127.0.0.1:%s/api/sampling", poll_interval: 500ms}}
`, admin, port, up.addr(), bin, filepath.Join(dir, "spans.jsonl"), ports["sampling"]))

	// decisions sends 20 requests to each route and returns how many of
	// each were sampled.
	decisions := func() [2]int {
		t.Helper()
		var n [2]int
		for i, path := range []string{"/", "/checkout/1"} {
			for range 20 {
				if code, _ := getBody(t, http.DefaultClient, "http://"+port+path); code != 200 {
					t.Fatalf("%s: %d", path, code)
				}
				if upstreamSampled(up.header) == "1" {
					n[i]++
				}
			}
		}
		return n
	}
	follow := func(what string, since time.Time, want [2]int) time.Duration {
		t.Helper()
		deadline := since.Add(15 * time.Second)
		for {
			got := decisions()
			if got == want {
				return time.Since(since)
			}
			if time.Now().After(deadline) {
				_, st := getBody(t, http.DefaultClient, "http://"+admin+"/sampling")
				t.Fatalf("%s: sampled %v of 20 on / and /checkout, want %v; GET /sampling:\n%s", what, got, want, st)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	took := follow("Jaeger's first strategy (default 0, checkout 1)", time.Now(), [2]int{0, 20})
	t.Logf("Jaeger's strategy was in force %v after tracehop answered /ready", took)
	_, st := getBody(t, http.DefaultClient, "http://"+admin+"/sampling")
	for _, want := range []string{`"source": "remote"`, `"rule": "checkout"`, `"operations": {`, `"checkout": 1`} {
		if !strings.Contains(st, want) {
			t.Errorf("GET /sampling lacks %s:\n%s", want, st)
		}
	}
	changed := write(1, 0)
	took = follow("the file changed (default 1, checkout 0)", changed, [2]int{20, 0})
	t.Logf("tracehop followed the changed file within %v (Jaeger reloads every 1s, tracehop polls every 500ms)", took)
	if took > 1500*time.Millisecond+2*time.Second {
		t.Errorf("took %v to follow the change: more than the two intervals allow", took)
	}
	jaeger.stop(t)
	time.Sleep(1500 * time.Millisecond) // three failed polls
	if got := decisions(); got != [2]int{20, 0} {
		t.Errorf("with Jaeger gone, sampled %v: the last strategy did not stay", got)
	}
	_, st = getBody(t, http.DefaultClient, "http://"+admin+"/sampling")
	if !strings.Contains(st, `"source": "remote"`) || !strings.Contains(st, `"last_error": "`) {
		t.Errorf("GET /sampling with Jaeger gone:\n%s", st)
	}
	_, metrics := getBody(t, http.DefaultClient, "http://"+admin+"/metrics")
	for _, want := range []string{`tracehop_sampling_decisions_total{decision="sampled",rule="checkout"}`, `tracehop_sampling_decisions_total{decision="not_sampled",rule="checkout"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// Consistent probability sampling read by the real OpenTelemetry
// Collector. An edge tracehop samples 10% and a sidecar behind it 50%,
// both propagating tracecontext and exporting OTLP through the otlp
// driver's process into a Collector with two pipelines from one receiver:
// "raw" forwards what tracehop sent, "sampled" passes it through the
// probabilistic_sampler processor in proportional mode at 50%. What
// tracehop sent: every trace the edge kept is whole (the sidecar kept it
// too), each span's trace_state says ot=th:e6666666666666 (10%, the edge's
// threshold on both) and its randomness is at or above it. What the
// Collector made of it: it read the 10% and multiplied, so every span it
// kept carries one threshold of about 5% (not 50%: a sampler that ignored
// tracehop's th would keep every span at th unchanged), and it kept
// exactly the spans whose randomness is at or above that threshold, whole
// traces included.
func TestE2ESamplingConsistentThroughCollector(t *testing.T) {
	bin := binaries(t, "otlp")
	raw, sampled := otlpreceiver.Start(t, nil), otlpreceiver.Start(t, nil)
	_, colPort, _ := net.SplitHostPort(freePort(t))
	dir := t.TempDir()
	colCfg := filepath.Join(dir, "otelcol.yaml")
	if err := os.WriteFile(colCfg, []byte(fmt.Sprintf(`receivers:
  otlp: {protocols: {grpc: {endpoint: "127.0.0.1:%s"}}}
processors:
  probabilistic_sampler: {mode: proportional, sampling_percentage: 50}
exporters:
  otlp/raw: {endpoint: "%s", tls: {insecure: true}}
  otlp/sampled: {endpoint: "%s", tls: {insecure: true}}
service:
  telemetry: {metrics: {level: none}, traces: {level: none}}
  pipelines:
    traces/raw: {receivers: [otlp], exporters: [otlp/raw]}
    traces/sampled: {receivers: [otlp], processors: [probabilistic_sampler], exporters: [otlp/sampled]}
`, colPort, raw.GRPCAddr, sampled.GRPCAddr)), 0o644); err != nil {
		t.Fatal(err)
	}
	col := startProc(t, "otelcol", otelcolBin(t), "--config="+colCfg)
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(col.output(), "Everything is ready"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the collector did not start:\n%s", col.output())
		}
	}

	up := newUpstream(t, nil)
	hop := func(name, admin, addr, random, trust, upstream string) *proc {
		return startTracehop(t, name, bin, admin, fmt.Sprintf(`node: {id: %[1]s, service: %[1]s}
admin: {address: %[2]s}
listeners:
  - {name: in, address: %[3]s, direction: ingress, trust_trace_headers: %[5]s, routes: [{cluster: up}]}
clusters:
  - {name: up, endpoints: [%[6]s]}
tracing:
  plugin_dir: %[7]s
  driver: {name: otlp, config: {endpoint: "127.0.0.1:%[8]s", tls: {insecure: true}}}
  propagation: [tracecontext]
  sampling: {random: %[4]s}
  queue: {batch_delay: 50ms}
`, name, admin, addr, random, trust, upstream, bin, colPort))
	}
	sideAddr, sideAdmin, edgeAddr, edgeAdmin := freePort(t), freePort(t), freePort(t), freePort(t)
	sidecar := hop("sidecar", sideAdmin, sideAddr, "50", "true", up.addr())
	edge := hop("edge", edgeAdmin, edgeAddr, "10", "false", sideAddr)
	const requests = 1000
	for range requests {
		if code, _ := getBody(t, http.DefaultClient, "http://"+edgeAddr+"/"); code != 200 {
			t.Fatalf("edge answered %d", code)
		}
	}
	kept := adminMetric(t, edgeAdmin, `tracehop_sampling_decisions_total{decision="sampled",rule="default"}`)
	edge.stop(t)
	sidecar.stop(t) // both flush their queues into the Collector
	if kept < requests/20 || kept > requests/5 {
		t.Fatalf("the edge at 10%% kept %v of %d traces", kept, requests)
	}

	type span struct{ service, traceState string }
	collect := func(r *otlpreceiver.Receiver) map[[16]byte][]span {
		traces := map[[16]byte][]span{}
		for _, req := range r.Requests() {
			for _, rs := range req.ResourceSpans {
				svc := ""
				for _, a := range rs.Resource.Attributes {
					if a.Key == "service.name" {
						svc = a.Value.GetStringValue()
					}
				}
				for _, ss := range rs.ScopeSpans {
					for _, s := range ss.Spans {
						traces[[16]byte(s.TraceId)] = append(traces[[16]byte(s.TraceId)], span{svc, s.TraceState})
					}
				}
			}
		}
		return traces
	}
	spans := func(traces map[[16]byte][]span) int {
		n := 0
		for _, ss := range traces {
			n += len(ss)
		}
		return n
	}
	var sent map[[16]byte][]span
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if sent = collect(raw); spans(sent) >= 2*int(kept) || time.Now().After(deadline) {
			break
		}
	}
	randomness := func(id [16]byte) uint64 { return binary.BigEndian.Uint64(id[8:]) & (1<<56 - 1) }
	if len(sent) != int(kept) {
		t.Fatalf("the Collector got %d traces from tracehop, the edge kept %v", len(sent), kept)
	}
	for id, ss := range sent {
		services := map[string]bool{}
		for _, s := range ss {
			services[s.service] = true
			if s.traceState != "ot=th:e6666666666666" {
				t.Errorf("trace %x, %s: trace_state %q, want the edge's ot=th:e6666666666666", id, s.service, s.traceState)
			}
		}
		if len(ss) != 2 || !services["edge"] || !services["sidecar"] {
			t.Errorf("trace %x is not whole: %v", id, ss)
		}
		if randomness(id) < 0xe6666666666666 {
			t.Errorf("trace %x was kept at 10%% with randomness %x", id, randomness(id))
		}
	}

	// The Collector's half: it exports once its batches are done.
	time.Sleep(2 * time.Second)
	out := collect(sampled)
	var th uint64
	for id, ss := range out {
		for _, s := range ss {
			o := propagation.ParseOTelSampling(s.traceState)
			if !o.HasThreshold {
				t.Fatalf("trace %x left the Collector without a threshold: %q", id, s.traceState)
			}
			if th == 0 {
				th = o.Threshold
			}
			if o.Threshold != th {
				t.Errorf("trace %x: threshold %x, another span's %x", id, o.Threshold, th)
			}
		}
	}
	p := float64(1<<56-th) / (1 << 56)
	t.Logf("tracehop sent %d traces at th:e6666666666666 (10%%); the Collector's 50%% proportional sampler kept %d at threshold %x (%.4f%%)", len(sent), len(out), th, 100*p)
	if math.Abs(p-0.05) > 0.0005 {
		t.Fatalf("the Collector's threshold says %.4f%%, want 5%% (its 50%% of tracehop's 10%%): it did not read tracehop's th", 100*p)
	}
	for id, ss := range sent {
		want := randomness(id) >= th
		if got := out[id]; want != (len(got) > 0) || want && len(got) != len(ss) {
			t.Errorf("trace %x (randomness %x, threshold %x): the Collector kept %d of its %d spans", id, randomness(id), th, len(got), len(ss))
		}
	}
	for id := range out {
		if _, ok := sent[id]; !ok {
			t.Errorf("the Collector passed trace %x, which tracehop never sent", id)
		}
	}
}
