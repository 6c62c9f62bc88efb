// Command run starts the sandbox (Envoy's jaeger-tracing topology as local
// processes: a front proxy, service1 and service2 each behind a tracehop
// sidecar), sends a request through it, draws the resulting trace in the
// terminal and stops everything. With -keep it leaves the sandbox up until
// Ctrl-C. `make demo` and `make sandbox` run it.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/tracehop/tracehop/internal/tlstest"
)

const (
	frontURL  = "http://127.0.0.1:8000/trace/1"
	jaegerURL = "http://127.0.0.1:16686"
)

type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

type sandbox struct {
	bin, logDir string
	procs       []*proc
}

func main() {
	collector := flag.String("collector", "file", "where spans go: file (the file driver; works anywhere), jaeger (the zipkin driver into a local Jaeger), otlp (the otlp driver into Jaeger's OTLP receiver) or datadog (the datadog driver into an OpenTelemetry Collector's Datadog receiver, on to Jaeger)")
	otlpProtocol := flag.String("otlp-protocol", "grpc", "with -collector otlp: grpc or http/protobuf")
	propagate := flag.String("propagate", "all", "what service1 forwards: all trace headers, false (none: the trace splits) or request-id (tracehop links it anyway)")
	encoding := flag.String("encoding", "json", "with -collector jaeger: the zipkin driver's encoding, json or proto")
	keep := flag.Bool("keep", false, "leave the sandbox running until Ctrl-C")
	useTLS := flag.Bool("tls", false, "the front proxy on HTTPS and service1 -> service2 over mutual TLS between the sidecars, with certificates the demo makes (file collector only)")
	bin := flag.String("bin", "bin", "the directory with tracehop, its drivers and sandbox-service")
	work := flag.String("dir", filepath.Join(os.TempDir(), "tracehop-sandbox"), "where spans and logs go")
	flag.Parse()
	if *collector != "file" && *collector != "jaeger" && *collector != "datadog" && *collector != "otlp" {
		fatalf("-collector must be file, jaeger, otlp or datadog, got %q", *collector)
	}
	if *useTLS && *collector != "file" {
		fatalf("-tls works with -collector file only")
	}
	abs, _ := filepath.Abs(*bin)
	sb := &sandbox{bin: abs, logDir: filepath.Join(*work, "logs")}
	os.MkdirAll(sb.logDir, 0o755)
	spans := filepath.Join(*work, "spans.jsonl")
	os.Remove(spans)
	code := 0
	defer func() { sb.stopAll(); os.Exit(code) }()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	driverDir := "examples/sandbox/file"
	env := []string{"SANDBOX_SPANS=" + spans}
	if *collector != "file" {
		driverDir = "examples/sandbox/zipkin"
		env = append(env, "ZIPKIN_ENCODING="+*encoding)
		step("building or finding Jaeger (the first build takes about 10 minutes on 2 cores)")
		out, err := exec.Command("examples/sandbox/jaeger.sh").Output()
		if err != nil {
			fatalf("examples/sandbox/jaeger.sh: %v", err)
		}
		sb.start("jaeger", nil, strings.TrimSpace(string(out)), "--config=file:examples/sandbox/jaeger.yaml")
		sb.waitHTTP(ctx, "http://127.0.0.1:13133/status", "jaeger")
	}
	if *collector == "otlp" {
		driverDir = "examples/sandbox/otlp"
		env = append(env, "OTLP_PROTOCOL="+*otlpProtocol)
		if *otlpProtocol == "http/protobuf" {
			env = append(env, "OTLP_ENDPOINT=http://127.0.0.1:4318/v1/traces")
		}
	}
	if *collector == "datadog" {
		driverDir = "examples/sandbox/datadog"
		step("building or finding the OpenTelemetry Collector with the Datadog receiver (the first build takes about 7 minutes)")
		out, err := exec.Command("examples/sandbox/otelcol.sh").Output()
		if err != nil {
			fatalf("examples/sandbox/otelcol.sh: %v", err)
		}
		sb.start("otelcol", nil, strings.TrimSpace(string(out)), "--config=examples/sandbox/otelcol.yaml")
		sb.waitHTTP(ctx, "http://127.0.0.1:8126/info", "otelcol")
	}
	url := frontURL
	if *useTLS {
		driverDir = "examples/sandbox/tls"
		certs := filepath.Join(*work, "certs")
		ca, err := makeCerts(certs)
		if err != nil {
			fatalf("making the demo's certificates: %v", err)
		}
		step("made a CA and certificates for the front proxy and both sidecars in %s", certs)
		env = append(env, "SANDBOX_CERTS="+certs)
		url = strings.Replace(frontURL, "http://127.0.0.1", "https://localhost", 1)
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
		http.DefaultTransport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: pool}
		frontCA = filepath.Join(certs, "ca.crt")
	}
	step("starting service2, service1 (propagate=%s), their sidecars and the front proxy", *propagate)
	sb.start("service2", nil, filepath.Join(sb.bin, "sandbox-service"), "-listen", "127.0.0.1:8081", "-name", "2")
	sb.start("service1", nil, filepath.Join(sb.bin, "sandbox-service"), "-listen", "127.0.0.1:8080", "-name", "1",
		"-next", "http://127.0.0.1:9100/trace/2", "-propagate", *propagate)
	for _, name := range []string{"service2-sidecar", "service1-sidecar", "front-proxy"} {
		sb.start(name, env, filepath.Join(sb.bin, "tracehop"), "run", "-c", filepath.Join(driverDir, name+".yaml"))
	}
	for name, url := range map[string]string{
		"front-proxy": "http://127.0.0.1:9901/ready", "service1-sidecar": "http://127.0.0.1:9902/ready",
		"service2-sidecar": "http://127.0.0.1:9903/ready", "service1": "http://127.0.0.1:8080/healthz", "service2": "http://127.0.0.1:8081/healthz",
	} {
		sb.waitHTTP(ctx, url, name)
	}
	if *useTLS {
		fmt.Printf("  front proxy  https://localhost:8000  (admin http://127.0.0.1:9901/metrics; CA %s)\n", frontCA)
		fmt.Printf("  service1     sidecar in :8100, out :9100 -> app :8080 (admin :9902); to service2's sidecar over mutual TLS\n")
		fmt.Printf("  service2     sidecar in :8200 (mutual TLS, client_auth: require) -> app :8081 (admin :9903)\n")
	} else {
		fmt.Printf("  front proxy  http://127.0.0.1:8000  (admin http://127.0.0.1:9901/metrics)\n")
		fmt.Printf("  service1     sidecar in :8100, out :9100 -> app :8080 (admin :9902)\n")
		fmt.Printf("  service2     sidecar in :8200 -> app :8081 (admin :9903)\n")
	}
	if *collector != "file" {
		fmt.Printf("  jaeger       %s (query API; the UI is not part of this build)\n", jaegerURL)
	}
	if *collector == "datadog" {
		fmt.Printf("  otelcol      Datadog agent protocol on 127.0.0.1:8126, forwarding to Jaeger\n")
	}
	fmt.Printf("  logs         %s\n", sb.logDir)

	if *keep {
		// The trace in a browser, as the seed's hands-on ends: on
		// 127.0.0.1:16686 where Jaeger's query API does not take it.
		source, viewAddr := []string{"-file", spans}, "127.0.0.1:16686"
		if *collector != "file" {
			source, viewAddr = []string{"-jaeger", jaegerURL, "-service", "front-proxy"}, "127.0.0.1:16687"
		}
		sb.start("trace-view", nil, filepath.Join(sb.bin, "tracehop"), append([]string{"trace", "view", "-http", viewAddr}, source...)...)
		sb.waitHTTP(ctx, "http://"+viewAddr+"/", "trace-view")
		curlArgs := url
		if *useTLS {
			curlArgs = "--cacert " + frontCA + " " + url
		}
		fmt.Printf("\nThe sandbox is up. Try:\n  curl %s\nthen look at the trace in a browser:\n  http://%s/   (reload after a request: spans arrive within 200ms)\nor in the terminal:\n", curlArgs, viewAddr)
		if *collector != "file" {
			fmt.Printf("  ./bin/tracehop trace view -jaeger %s -service front-proxy\n", jaegerURL)
		} else {
			fmt.Printf("  ./bin/tracehop trace view -file %s\n", spans)
		}
		fmt.Println("Ctrl-C stops it.")
		<-ctx.Done()
		step("stopping")
		return
	}

	step("curl %s", url)
	body, err := get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, "  request failed:", err)
		code = 1
		return
	}
	fmt.Print("  " + body)
	wantTraces := 1
	if *propagate == "false" {
		wantTraces = 2
	}
	if *collector == "file" {
		// Stopping the tracehops flushes their queues into the file.
		step("stopping the sidecars, which flushes their spans into %s", spans)
		for _, p := range sb.procs {
			if strings.HasSuffix(p.name, "sidecar") || p.name == "front-proxy" {
				p.stop()
			}
		}
		if err := checkFile(spans, wantTraces); err != nil {
			fmt.Fprintln(os.Stderr, "  unexpected trace:", err)
			code = 1
		}
		step("the trace, from %s:", spans)
		view(sb.bin, "-file", spans, "-n", fmt.Sprint(wantTraces))
	} else {
		step("waiting for the trace in Jaeger")
		id, err := waitJaeger(ctx, wantTraces)
		if err != nil {
			fmt.Fprintln(os.Stderr, "  ", err)
			code = 1
			return
		}
		step("the trace, from Jaeger's query API (%s/api/traces/%s):", jaegerURL, id)
		view(sb.bin, "-jaeger", jaegerURL, "-trace", id)
	}
	if code == 0 {
		fmt.Println("\nEverything this demo started is stopped again. `make sandbox` keeps it running.")
	}
}

func step(format string, args ...any) { fmt.Printf("==> "+format+"\n", args...) }

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "sandbox: "+format+"\n", args...)
	os.Exit(1)
}

func (sb *sandbox) start(name string, env []string, path string, args ...string) {
	logPath := filepath.Join(sb.logDir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		fatalf("%v", err)
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		sb.stopAll()
		fatalf("starting %s (%s): %v; did `make build` run?", name, path, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() { cmd.Wait(); f.Close(); close(p.done) }()
	sb.procs = append(sb.procs, p)
}

func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

func (sb *sandbox) stopAll() {
	for i := len(sb.procs) - 1; i >= 0; i-- {
		sb.procs[i].stop()
	}
}

func (sb *sandbox) waitHTTP(ctx context.Context, url, name string) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		for _, p := range sb.procs {
			select {
			case <-p.done:
				sb.stopAll()
				fatalf("%s exited; its log %s says:\n%s", p.name, p.log, tail(p.log))
			default:
			}
		}
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	sb.stopAll()
	fatalf("%s did not answer %s within 30s", name, url)
}

// frontCA is the demo CA's file, with -tls.
var frontCA string

// makeCerts makes the demo's CA and a certificate each for the front
// proxy (localhost), service1's sidecar (its client certificate, a SPIFFE
// id) and service2's sidecar (service2.sandbox) into dir, and returns the
// CA's PEM. They are made again on each run and never committed.
func makeCerts(dir string) ([]byte, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ca, err := tlstest.NewCA("tracehop sandbox CA")
	if err != nil {
		return nil, err
	}
	if _, err := ca.WriteCA(dir, "ca"); err != nil {
		return nil, err
	}
	for name, leaf := range map[string]tlstest.Leaf{
		"front-proxy": tlstest.Localhost("front-proxy"),
		"service1":    {CommonName: "service1", URIs: []string{"spiffe://sandbox/ns/default/sa/service1"}},
		"service2":    {CommonName: "service2", DNS: []string{"service2.sandbox"}},
	} {
		if _, _, err := ca.WritePair(dir, name, leaf); err != nil {
			return nil, err
		}
	}
	return ca.CertPEM, nil
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-10):], "\n")
}

func get(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", resp.Status, b)
	}
	return string(b), nil
}

type fileSpan struct {
	TraceID  string `json:"traceId"`
	ID       string `json:"id"`
	ParentID string `json:"parentId"`
	Local    struct {
		ServiceName string `json:"serviceName"`
	} `json:"localEndpoint"`
}

// checkFile checks the demo's trace: four spans across three services, in
// one trace (or two when propagation is off), each linked to its parent.
func checkFile(path string, wantTraces int) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	traces := map[string][]fileSpan{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var s fileSpan
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			return err
		}
		traces[s.TraceID] = append(traces[s.TraceID], s)
	}
	if len(traces) != wantTraces {
		return fmt.Errorf("%d traces, want %d", len(traces), wantTraces)
	}
	services := map[string]bool{}
	n := 0
	for _, spans := range traces {
		ids := map[string]bool{}
		for _, s := range spans {
			ids[s.ID] = true
		}
		roots := 0
		for _, s := range spans {
			services[s.Local.ServiceName] = true
			if !ids[s.ParentID] {
				roots++
			}
			n++
		}
		if roots != 1 {
			return fmt.Errorf("trace %s has %d roots, want 1", spans[0].TraceID, roots)
		}
	}
	if n != 4 || len(services) != 3 {
		return fmt.Errorf("%d spans over %d services, want 4 over 3", n, len(services))
	}
	return nil
}

func waitJaeger(ctx context.Context, wantTraces int) (string, error) {
	var resp struct {
		Data []struct {
			TraceID string `json:"traceID"`
			Spans   []any  `json:"spans"`
		} `json:"data"`
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		r, err := http.Get(jaegerURL + "/api/traces?service=front-proxy&limit=1&lookback=1h")
		if err == nil {
			err = json.NewDecoder(r.Body).Decode(&resp)
			r.Body.Close()
			want := 4
			if wantTraces == 2 {
				want = 2
			}
			if err == nil && len(resp.Data) > 0 && len(resp.Data[0].Spans) >= want {
				return resp.Data[0].TraceID, nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return "", errors.New("the trace did not show up in Jaeger within 30s")
}

func view(bin string, args ...string) {
	cmd := exec.Command(filepath.Join(bin, "tracehop"), append([]string{"trace", "view"}, args...)...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.Run()
}
