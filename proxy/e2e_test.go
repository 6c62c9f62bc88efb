//go:build e2e

package proxy_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tracehop/tracehop/sdk/drivertest/otlpreceiver"
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
					// The route names it (operation: checkAvailability), and
					// a route's name stays under OpenTelemetry's naming.
					if got := byID[s.SpanID]; got != "front-proxy checkAvailability" {
						t.Errorf("the root is %q, want the front proxy's span, named by its route", got)
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

// otelcolBin returns the Collector that examples/sandbox/otelcol.sh builds,
// or $OTELCOL_BIN.
func otelcolBin(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("OTELCOL_BIN"); bin != "" {
		return bin
	}
	out, err := exec.Command("../examples/sandbox/otelcol.sh").Output()
	if err != nil {
		t.Fatalf("building the collector: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// testPKI writes a CA, a server certificate for 127.0.0.1 and a client
// certificate signed by it into dir: ca.pem, server.pem, server-key.pem,
// client.pem, client-key.pem.
func testPKI(t *testing.T, dir string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tracehop e2e CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	write := func(name string, block *pem.Block) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("ca.pem", &pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	for i, name := range []string{"server", "client"} {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		usage := x509.ExtKeyUsageServerAuth
		if name == "client" {
			usage = x509.ExtKeyUsageClientAuth
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 2)), Subject: pkix.Name{CommonName: name},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, _ := x509.MarshalECPrivateKey(key)
		write(name+".pem", &pem.Block{Type: "CERTIFICATE", Bytes: der})
		write(name+"-key.pem", &pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	}
}

// The otlp driver into the OpenTelemetry Collector's own OTLP receivers:
// plaintext gRPC and HTTP, TLS checked with a CA file, and mTLS (the
// receiver requires the client's certificate). The Collector's debug
// exporter prints what it received; every variant's spans must arrive with
// their resource attributes (service.name per service, service.instance.id
// from node.id, the literal ones from the driver's resource block).
func TestE2EOTLPIntoCollector(t *testing.T) {
	dir := t.TempDir()
	testPKI(t, dir)
	ports := map[string]string{}
	for _, k := range []string{"grpc", "http", "tls", "mtls"} {
		_, ports[k], _ = net.SplitHostPort(freePort(t))
	}
	cfg := fmt.Sprintf(`receivers:
  otlp/plain:
    protocols:
      grpc: {endpoint: "127.0.0.1:%[1]s"}
      http: {endpoint: "127.0.0.1:%[2]s"}
  otlp/tls:
    protocols:
      grpc: {endpoint: "127.0.0.1:%[3]s", tls: {cert_file: %[5]s/server.pem, key_file: %[5]s/server-key.pem}}
  otlp/mtls:
    protocols:
      grpc: {endpoint: "127.0.0.1:%[4]s", tls: {cert_file: %[5]s/server.pem, key_file: %[5]s/server-key.pem, client_ca_file: %[5]s/ca.pem}}
exporters:
  debug: {verbosity: detailed}
service:
  telemetry:
    metrics: {level: none}
    traces: {level: none}
  pipelines:
    traces: {receivers: [otlp/plain, otlp/tls, otlp/mtls], exporters: [debug]}
`, ports["grpc"], ports["http"], ports["tls"], ports["mtls"], dir)
	cfgPath := filepath.Join(dir, "otelcol.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	col := startProc(t, "otelcol", otelcolBin(t), "--config="+cfgPath)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(col.output(), "Everything is ready") {
		if time.Now().After(deadline) {
			t.Fatalf("the collector did not start:\n%s", col.output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, tc := range []struct{ name, config string }{
		{"grpc", fmt.Sprintf(`{endpoint: "127.0.0.1:%s", tls: {insecure: true}`, ports["grpc"])},
		{"http", fmt.Sprintf(`{protocol: http/protobuf, endpoint: "http://127.0.0.1:%s/v1/traces"`, ports["http"])},
		{"tls", fmt.Sprintf(`{endpoint: "127.0.0.1:%s", tls: {ca_file: %s/ca.pem}`, ports["tls"], dir)},
		{"mtls", fmt.Sprintf(`{endpoint: "127.0.0.1:%s", tls: {ca_file: %[2]s/ca.pem, cert_file: %[2]s/client.pem, key_file: %[2]s/client-key.pem}`, ports["mtls"], dir)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			driver := "  driver: {name: otlp, config: " + tc.config + ", resource: {tracehop.e2e.variant: " + tc.name + "}}}\n"
			sb := startSandboxWith(t, "all", "otlp", driver)
			get(t, "http://"+sb.frontAddr+"/trace/1")
			sb.stop(t)
			marker := "-> tracehop.e2e.variant: Str(" + tc.name + ")"
			deadline := time.Now().Add(30 * time.Second)
			for {
				// The debug exporter prints each resource's attributes
				// together, one per line.
				var resources []string
				for _, block := range strings.Split(col.output(), "Resource attributes:") {
					if strings.Contains(block, marker) {
						resources = append(resources, block)
					}
				}
				services := map[string]bool{}
				for _, r := range resources {
					for _, svc := range []string{"front-proxy", "service1", "service2"} {
						if strings.Contains(r, "-> service.name: Str("+svc+")") && strings.Contains(r, "-> service.instance.id: Str(") {
							services[svc] = true
						}
					}
				}
				if len(services) == 3 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the collector's debug exporter shows resources of %v for %s, want all 3 services with service.instance.id", services, tc.name)
				}
				time.Sleep(200 * time.Millisecond)
			}
		})
	}
}

// spanCounters sums a counter of tracehop's metrics over the sandbox's
// three tracehops, by the value of one label (reason, for drops).
func spanCounters(t *testing.T, sb *sandbox, metric string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, admin := range sb.admins {
		for _, line := range strings.Split(get(t, "http://"+admin+"/metrics"), "\n") {
			if !strings.HasPrefix(line, metric+"{") {
				continue
			}
			labels, value, _ := strings.Cut(line[len(metric)+1:], "} ")
			key := labels
			if _, reason, ok := strings.Cut(labels, `reason="`); ok {
				key, _, _ = strings.Cut(reason, `"`)
			}
			var v float64
			fmt.Sscan(value, &v)
			out[key] += v
		}
	}
	return out
}

// Through tracehop and the otlp driver's process into a receiver that
// answers as told (otlpreceiver: the OTLP protos, the real wire format; no real
// back end can be made to throttle or refuse on demand): a 429 with
// Retry-After: 2 holds the batch back at least 2 seconds, and a partial
// success shows in tracehop's drop metrics as rejected.
func TestE2EOTLPThrottleAndPartialSuccess(t *testing.T) {
	r := otlpreceiver.Start(t, nil)
	r.FailNext(otlpreceiver.Fault{Status: 429, RetryAfter: 2 * time.Second, Message: "slow down"},
		otlpreceiver.Fault{Rejected: 1, Message: "1 span too old"})
	sb := startSandboxWith(t, "all", "otlp", "  driver: {name: otlp, config: {protocol: http/protobuf, endpoint: \""+r.HTTPURL+"\"}}\n")
	start := time.Now()
	get(t, "http://"+sb.frontAddr+"/trace/1")
	deadline := time.Now().Add(30 * time.Second)
	var exported, dropped map[string]float64
	for {
		exported = spanCounters(t, sb, "tracehop_spans_exported_total")
		dropped = spanCounters(t, sb, "tracehop_spans_dropped_total")
		total := dropped["rejected"]
		for _, v := range exported {
			total += v
		}
		if total == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30s: exported %v, dropped %v; want the 4 spans accounted for", exported, dropped)
		}
		time.Sleep(100 * time.Millisecond)
	}
	took := time.Since(start)
	sb.stop(t)
	if dropped["rejected"] != 1 {
		t.Errorf("dropped %v; want the 1 span the receiver refused as rejected", dropped)
	}
	if took < 2*time.Second {
		t.Errorf("every span was delivered within %s; the receiver asked for 2s", took)
	}
	if r.Attempts() < 3 {
		t.Errorf("%d attempts; want the throttled one, the partial one and the rest", r.Attempts())
	}
	if !strings.Contains(sb.front.output()+sb.s1.output()+sb.s2.output(), "1 span too old") {
		t.Error("the receiver's partial-success message is not in any tracehop's log")
	}
}
