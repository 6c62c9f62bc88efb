//go:build e2e

package proxy_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The end-to-end suite (make e2e): the sandbox with the zipkin driver,
// reporting to a real Jaeger, checked through Jaeger's query API.

// startJaeger runs Jaeger (built by examples/sandbox/jaeger.sh, or
// $JAEGER_BIN) on kernel-chosen loopback ports and returns the Zipkin
// endpoint and the query URL.
func startJaeger(t *testing.T) (zipkin, query string) {
	zipkin, query, _ = startJaegerOTLP(t)
	return zipkin, query
}

// startJaegerOTLP is startJaeger that also returns the OTLP gRPC port.
func startJaegerOTLP(t *testing.T) (zipkin, query, otlpPort string) {
	t.Helper()
	env := startJaegerPorts(t)
	return "http://127.0.0.1:" + env["JAEGER_ZIPKIN_PORT"] + "/api/v2/spans", "http://127.0.0.1:" + env["JAEGER_QUERY_PORT"], env["JAEGER_OTLP_GRPC_PORT"]
}

// startJaegerPorts starts Jaeger and returns its ports by the variable
// that set them (JAEGER_QUERY_PORT, JAEGER_OTLP_HTTP_PORT, ...).
func startJaegerPorts(t *testing.T) map[string]string {
	t.Helper()
	env := jaegerPorts(t)
	runJaeger(t, env)
	return env
}

// jaegerPorts chooses the ports of a Jaeger that runJaeger starts.
func jaegerPorts(t *testing.T) map[string]string {
	env := map[string]string{}
	for _, k := range []string{"JAEGER_QUERY_PORT", "JAEGER_QUERY_GRPC_PORT", "JAEGER_HEALTH_PORT", "JAEGER_OTLP_GRPC_PORT", "JAEGER_OTLP_HTTP_PORT", "JAEGER_ZIPKIN_PORT"} {
		_, p, _ := net.SplitHostPort(freePort(t))
		env[k] = p
	}
	return env
}

// runJaeger starts Jaeger (built by examples/sandbox/jaeger.sh, or
// $JAEGER_BIN) on the ports env names and waits for it.
func runJaeger(t *testing.T, env map[string]string) *proc {
	t.Helper()
	bin := os.Getenv("JAEGER_BIN")
	if bin == "" {
		out, err := exec.Command("../examples/sandbox/jaeger.sh").Output()
		if err != nil {
			t.Fatalf("building Jaeger: %v", err)
		}
		bin = strings.TrimSpace(string(out))
	}
	cfg, _ := filepath.Abs("../examples/sandbox/jaeger.yaml")
	args := []string{"env"}
	for k, v := range env {
		args = append(args, k+"="+v)
	}
	args = append(args, bin, "--config=file:"+cfg)
	p := startProc(t, "jaeger", args...)
	waitHTTP(t, "http://127.0.0.1:"+env["JAEGER_HEALTH_PORT"]+"/status")
	return p
}

// The datadog driver into a real Datadog agent protocol endpoint: an
// OpenTelemetry Collector with the contrib Datadog receiver, forwarding to
// Jaeger; the trace is read back through Jaeger's query API.
func TestE2EDatadogThroughCollectorIntoJaeger(t *testing.T) {
	_, query, otlpPort := startJaegerOTLP(t)
	bin := os.Getenv("OTELCOL_BIN")
	if bin == "" {
		out, err := exec.Command("../examples/sandbox/otelcol.sh").Output()
		if err != nil {
			t.Fatalf("building the collector: %v", err)
		}
		bin = strings.TrimSpace(string(out))
	}
	_, ddPort, _ := net.SplitHostPort(freePort(t))
	cfg, _ := filepath.Abs("../examples/sandbox/otelcol.yaml")
	startProc(t, "otelcol", "env", "DD_RECEIVER_PORT="+ddPort, "JAEGER_OTLP_GRPC_PORT="+otlpPort, bin, "--config="+cfg)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if resp, err := http.Get("http://127.0.0.1:" + ddPort + "/info"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the collector's Datadog receiver never answered /info")
		}
		time.Sleep(50 * time.Millisecond)
	}
	seen := seenOf(t, query, "front-proxy")
	sb := startSandboxWith(t, "all", "datadog", fmt.Sprintf("  driver: {name: datadog, config: {agent_addr: \"127.0.0.1:%s\", env: e2e}}\n", ddPort))
	get(t, "http://"+sb.frontAddr+"/trace/1")
	sb.stop(t)
	tr := waitNewTrace(t, query, "front-proxy", seen, 4)
	services := map[string]int{}
	byID := map[string]string{}
	parents := map[string]string{}
	for _, s := range tr.Spans {
		svc := tr.Processes[s.ProcessID].ServiceName
		services[svc]++
		byID[s.SpanID] = svc
		for _, r := range s.References {
			if r.RefType == "CHILD_OF" {
				parents[s.SpanID] = r.SpanID
			}
		}
	}
	if len(tr.Spans) != 4 || services["front-proxy"] != 1 || services["service1"] != 2 || services["service2"] != 1 {
		t.Fatalf("want one trace of 4 spans over 3 services, got %v", services)
	}
	roots := 0
	for id := range byID {
		p, ok := parents[id]
		switch {
		case !ok:
			roots++
			if byID[id] != "front-proxy" {
				t.Errorf("the root is a %s span", byID[id])
			}
		case byID[p] == "":
			t.Errorf("a %s span's parent %s is not in the trace", byID[id], p)
		}
	}
	if roots != 1 {
		t.Errorf("%d roots", roots)
	}
}

type jaegerTrace struct {
	TraceID string `json:"traceID"`
	Spans   []struct {
		SpanID        string `json:"spanID"`
		OperationName string `json:"operationName"`
		References    []struct {
			RefType string `json:"refType"`
			SpanID  string `json:"spanID"`
		} `json:"references"`
		ProcessID string `json:"processID"`
		Tags      []struct {
			Key   string `json:"key"`
			Value any    `json:"value"`
		} `json:"tags"`
	} `json:"spans"`
	Processes map[string]struct {
		ServiceName string `json:"serviceName"`
		Tags        []struct {
			Key   string `json:"key"`
			Value any    `json:"value"`
		} `json:"tags"`
	} `json:"processes"`
}

func TestE2EZipkinIntoJaeger(t *testing.T) {
	zipkinURL, query := startJaeger(t)
	for _, enc := range []string{"json", "proto", "json_v1"} {
		for _, propagate := range []string{"all", "false"} {
			t.Run(enc+"/propagate="+propagate, func(t *testing.T) {
				// All runs share one Jaeger: each looks for the traces that
				// were not there before its request.
				endpoint := zipkinURL
				if enc == "json_v1" {
					// Zipkin v1, where the seed's Envoy config posts.
					endpoint = strings.Replace(zipkinURL, "/api/v2/", "/api/v1/", 1)
				}
				driver := fmt.Sprintf("  driver: {name: zipkin, config: {collector_endpoint: %q, encoding: %s}}\n", endpoint, enc)
				sb := startSandboxWith(t, propagate, "zipkin", driver)
				seen := seenOf(t, query, "front-proxy")
				seen2 := seenOf(t, query, "service2")
				get(t, "http://"+sb.frontAddr+"/trace/1")
				sb.stop(t)
				want := 4
				if propagate == "false" {
					want = 2
				}
				tr := waitNewTrace(t, query, "front-proxy", seen, want)
				services := map[string]int{}
				byID := map[string]string{}
				for _, s := range tr.Spans {
					svc := tr.Processes[s.ProcessID].ServiceName
					services[svc]++
					byID[s.SpanID] = svc + " " + s.OperationName
				}
				switch propagate {
				case "all":
					if len(tr.Spans) != 4 || services["front-proxy"] != 1 || services["service1"] != 2 || services["service2"] != 1 {
						t.Fatalf("one trace of 4 spans over 3 services expected, got %v", services)
					}
				case "false":
					if len(tr.Spans) != 2 || services["service2"] != 0 {
						t.Fatalf("propagation off: the front proxy's trace must stop at service1, got %v", services)
					}
				}
				roots := 0
				for _, s := range tr.Spans {
					parent := ""
					for _, r := range s.References {
						if r.RefType == "CHILD_OF" {
							parent = r.SpanID
						}
					}
					if parent == "" {
						roots++
						// JSON lowercases names, proto keeps them.
						if got := byID[s.SpanID]; !strings.EqualFold(got, "front-proxy checkAvailability") {
							t.Errorf("the root is %q, want the front proxy's span", got)
						}
					} else if _, ok := byID[parent]; !ok {
						t.Errorf("span %s's parent %s is not in the trace", byID[s.SpanID], parent)
					}
					tags := map[string]string{}
					for _, tg := range s.Tags {
						tags[tg.Key] = fmt.Sprint(tg.Value)
					}
					for _, k := range []string{"guid:x-request-id", "http.method", "http.url", "http.status_code", "component", "node_id", "upstream_cluster"} {
						if tags[k] == "" {
							t.Errorf("%s: Jaeger has no %s tag (tags: %v)", byID[s.SpanID], k, tags)
						}
					}
				}
				if roots != 1 {
					t.Errorf("%d roots", roots)
				}
				if propagate == "false" {
					// service1's outbound call started a trace of its own,
					// with service2's span in it.
					other := waitNewTrace(t, query, "service2", seen2, 2)
					if other.TraceID == tr.TraceID {
						t.Errorf("service2 is in the front proxy's trace")
					}
				}
			})
		}
	}
}

func jaegerTracesNow(t *testing.T, query, service string) []jaegerTrace {
	t.Helper()
	var resp struct{ Data []jaegerTrace }
	r, err := http.Get(fmt.Sprintf("%s/api/traces?service=%s&limit=100&lookback=1h", query, service))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	json.NewDecoder(r.Body).Decode(&resp)
	return resp.Data
}

// waitNewTrace waits for a trace of service that is not in seen to reach
// want spans, and returns it.
func waitNewTrace(t *testing.T, query, service string, seen map[string]bool, want int) jaegerTrace {
	t.Helper()
	var last jaegerTrace
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, tr := range jaegerTracesNow(t, query, service) {
			if !seen[tr.TraceID] {
				last = tr
				if len(tr.Spans) >= want {
					return tr
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("no new trace of %s with %d spans in Jaeger within 30s (last seen: %d spans)", service, want, len(last.Spans))
	return last
}

// seenOf returns the ids of the traces of service Jaeger has now.
func seenOf(t *testing.T, query, service string) map[string]bool {
	seen := map[string]bool{}
	for _, tr := range jaegerTracesNow(t, query, service) {
		seen[tr.TraceID] = true
	}
	return seen
}

// The otlp driver into Jaeger v2's own OTLP receivers, gRPC and HTTP: one
// trace of 4 spans over 3 services per request, with OpenTelemetry's
// attribute names, resource attributes and span names on what Jaeger
// returns.
func TestE2EOTLPIntoJaeger(t *testing.T) {
	ports := startJaegerPorts(t)
	query := "http://127.0.0.1:" + ports["JAEGER_QUERY_PORT"]
	for _, tc := range []struct{ name, config string }{
		{"grpc", fmt.Sprintf("{endpoint: \"127.0.0.1:%s\", tls: {insecure: true}}", ports["JAEGER_OTLP_GRPC_PORT"])},
		{"http", fmt.Sprintf("{protocol: http/protobuf, endpoint: \"http://127.0.0.1:%s/v1/traces\"}", ports["JAEGER_OTLP_HTTP_PORT"])},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seen := seenOf(t, query, "front-proxy")
			sb := startSandboxWith(t, "all", "otlp", "  driver: {name: otlp, config: "+tc.config+"}\n")
			get(t, "http://"+sb.frontAddr+"/trace/1")
			sb.stop(t)
			tr := waitNewTrace(t, query, "front-proxy", seen, 4)
			services := map[string]int{}
			byID := map[string]string{}
			for _, s := range tr.Spans {
				svc := tr.Processes[s.ProcessID].ServiceName
				services[svc]++
				byID[s.SpanID] = svc + " " + s.OperationName
			}
			if len(tr.Spans) != 4 || services["front-proxy"] != 1 || services["service1"] != 2 || services["service2"] != 1 {
				t.Fatalf("want one trace of 4 spans over 3 services, got %v", services)
			}
			for _, p := range tr.Processes {
				tags := map[string]string{}
				for _, tg := range p.Tags {
					tags[tg.Key] = fmt.Sprint(tg.Value)
				}
				if !strings.HasSuffix(tags["service.instance.id"], "-sidecar") && tags["service.instance.id"] != "front-proxy" {
					t.Errorf("%s: resource service.instance.id = %q, want the node id (process tags %v)", p.ServiceName, tags["service.instance.id"], tags)
				}
			}
			roots := 0
			for _, s := range tr.Spans {
				parent := ""
				for _, r := range s.References {
					if r.RefType == "CHILD_OF" {
						parent = r.SpanID
					}
				}
				if parent == "" {
					roots++
					if got := byID[s.SpanID]; got != "front-proxy GET" {
						t.Errorf("the root is %q, want the front proxy's span named as OpenTelemetry names it", got)
					}
				} else if _, ok := byID[parent]; !ok {
					t.Errorf("span %s's parent %s is not in the trace", byID[s.SpanID], parent)
				}
				tags := map[string]string{}
				for _, tg := range s.Tags {
					tags[tg.Key] = fmt.Sprint(tg.Value)
				}
				for _, k := range []string{"http.request.method", "http.response.status_code", "server.address", "server.port",
					"network.protocol.version", "guid:x-request-id", "otel.scope.name"} {
					if tags[k] == "" {
						t.Errorf("%s: Jaeger has no %s attribute (tags: %v)", byID[s.SpanID], k, tags)
					}
				}
				if tags["url.path"] == "" && tags["url.full"] == "" {
					t.Errorf("%s: neither url.path nor url.full (tags: %v)", byID[s.SpanID], tags)
				}
				for _, k := range []string{"http.method", "http.url", "http.status_code"} {
					if _, legacy := tags[k]; legacy {
						t.Errorf("%s: the Envoy name %s is there too; the otlp driver's default is otel names only", byID[s.SpanID], k)
					}
				}
			}
			if roots != 1 {
				t.Errorf("%d roots", roots)
			}
		})
	}
}

// The receiver is down when the sandbox starts and while requests go
// through it, and comes up later: every span of every request arrives,
// over gRPC and HTTP (the pipeline retries; the driver's gRPC reconnect
// backoff is capped so that a receiver that is back is found within
// seconds).
func TestE2EOTLPReceiverDownThenUp(t *testing.T) {
	for _, protocol := range []string{"grpc", "http"} {
		t.Run(protocol, func(t *testing.T) {
			ports := jaegerPorts(t)
			config := fmt.Sprintf("{endpoint: \"127.0.0.1:%s\", tls: {insecure: true}}", ports["JAEGER_OTLP_GRPC_PORT"])
			if protocol == "http" {
				config = fmt.Sprintf("{protocol: http/protobuf, endpoint: \"http://127.0.0.1:%s/v1/traces\"}", ports["JAEGER_OTLP_HTTP_PORT"])
			}
			sb := startSandboxWith(t, "all", "otlp", "  driver: {name: otlp, config: "+config+"}\n")
			const requests = 5
			for range requests {
				get(t, "http://"+sb.frontAddr+"/trace/1")
			}
			time.Sleep(3 * time.Second) // several failed exports and retries
			runJaeger(t, ports)
			query := "http://127.0.0.1:" + ports["JAEGER_QUERY_PORT"]
			deadline := time.Now().Add(30 * time.Second)
			var complete int
			for time.Now().Before(deadline) {
				complete = 0
				for _, tr := range jaegerTracesNow(t, query, "front-proxy") {
					if len(tr.Spans) == 4 {
						complete++
					}
				}
				if complete == requests {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			if complete != requests {
				t.Fatalf("%d of %d traces arrived whole after the receiver came up", complete, requests)
			}
			sb.stop(t)
		})
	}
}
