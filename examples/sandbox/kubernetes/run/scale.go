package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tracehop/tracehop/internal/inject"
	corev1 "k8s.io/api/core/v1"
	kjson "sigs.k8s.io/json"
	kyaml "sigs.k8s.io/yaml"
)

// ScaleConfig is a simulation of N application Pods, each with an injected
// sidecar, all reporting to one Jaeger: docs/deploying.md's measurement.
type ScaleConfig struct {
	Dir      string // examples/sandbox/kubernetes: Jaeger's ConfigMap and Pod come from sandbox-apps.yaml
	Pods     int
	Rate     int           // requests per second to each Pod
	Duration time.Duration // of the load
	// CollectorDown stops Jaeger's container for this long, from a quarter
	// into the load: the sidecars queue, retry and (past the queue) drop.
	CollectorDown time.Duration
	Log           func(format string, args ...any)
}

// scaleSidecarConfig is every simulated sidecar's config: ingress to the
// app, spans to Jaeger, named after its Pod.
const scaleSidecarConfig = `apiVersion: v1
kind: ConfigMap
metadata:
  name: scale-tracehop
data:
  tracehop.yaml: |
    node: {id: "${POD_NAME}", service: "${POD_NAME}", zone: kubernetes}
    admin: {address: "0.0.0.0:9901"}
    listeners:
      - name: ingress
        address: "0.0.0.0:8100"
        direction: ingress
        routes: [{match: {prefix: /}, cluster: app}]
    clusters:
      - {name: app, endpoints: ["127.0.0.1:8080"]}
    tracing:
      driver:
        name: zipkin
        config: {collector_endpoint: "http://jaeger:9411/api/v2/spans"}
`

// sidecarSample is a sidecar's processes (tracehop and its driver) at a moment.
type sidecarSample struct {
	cpu      time.Duration // user + system, all processes
	rss, hwm int64         // bytes: now and peak, summed
}

// Scale plays the simulation, loads every Pod, measures and prints a
// Markdown table, then takes it down.
func Scale(ctx context.Context, c ScaleConfig) error {
	apps, err := os.ReadFile(filepath.Join(c.Dir, "sandbox-apps.yaml"))
	if err != nil {
		return err
	}
	var docs []string
	for _, d := range strings.Split(string(apps), "\n---\n") {
		if strings.Contains(d, "name: jaeger-config") || strings.Contains(d, "\n  name: jaeger\n") {
			docs = append(docs, d)
		}
	}
	if len(docs) != 2 {
		return fmt.Errorf("%s: want Jaeger's ConfigMap and Pod, found %d documents", filepath.Join(c.Dir, "sandbox-apps.yaml"), len(docs))
	}
	docs = append(docs, scaleSidecarConfig)
	for i := range c.Pods {
		docs = append(docs, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: scale-%d
spec:
  containers:
    - name: app
      image: localhost/tracehop-sandbox-app:latest
      imagePullPolicy: IfNotPresent
      command: [sandbox-service, -listen, "127.0.0.1:8080", -name, "%d"]
`, i, i))
	}
	opts := inject.DefaultOptions()
	opts.ConfigMap = "scale-tracehop"
	opts.Ports = []inject.Port{{Name: "th-ingress", Number: 8100}}
	injected, _, err := inject.Inject([]byte(strings.Join(docs, "\n---\n")), "scale", opts)
	if err != nil {
		return err
	}
	// Publish each Pod's ingress and admin on 127.0.0.1, so that the load
	// and the scrapes go to the host's loopback.
	out := strings.Split(string(injected), "\n---\n")
	for i, d := range out {
		if !strings.Contains(d, "\nkind: Pod\n") || !strings.Contains(d, "\n  name: scale-") {
			continue
		}
		var pod corev1.Pod
		js, err := kyaml.YAMLToJSONStrict([]byte(d))
		var strict []error
		if err == nil {
			strict, err = kjson.UnmarshalStrict(js, &pod)
		}
		if err != nil || len(strict) > 0 {
			return fmt.Errorf("pod %d: %v %v", i, err, strict)
		}
		n, _ := strconv.Atoi(strings.TrimPrefix(pod.Name, "scale-"))
		for ci := range pod.Spec.Containers {
			for pi := range pod.Spec.Containers[ci].Ports {
				p := &pod.Spec.Containers[ci].Ports[pi]
				switch p.Name {
				case "th-ingress":
					p.HostPort, p.HostIP = int32(21000+n), "127.0.0.1"
				case "tracehop-admin":
					p.HostPort, p.HostIP = int32(22000+n), "127.0.0.1"
				}
			}
		}
		b, err := kyaml.Marshal(&pod)
		if err != nil {
			return err
		}
		out[i] = string(b)
	}
	jaegerPort := int32(23686)
	played, err := ForPodman([]byte(strings.Join(out, "\n---\n")), map[int32]int32{16686: jaegerPort})
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "tracehop-k8s-scale-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if err := os.WriteFile(filepath.Join(work, "scale.yaml"), played, 0o644); err != nil {
		return err
	}
	podman := func(args ...string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, "podman", args...)
		cmd.Dir = work
		return cmd.CombinedOutput()
	}
	if exec.Command("podman", "network", "exists", Network).Run() != nil {
		if out, err := podman("network", "create", Network); err != nil {
			return fmt.Errorf("podman network create: %v: %s", err, out)
		}
	}
	c.Log("podman kube play: Jaeger and %d Pods (app + injected sidecar) in %s", c.Pods, work)
	if out, err := podman("kube", "play", "--network", Network, "scale.yaml"); err != nil {
		podman("kube", "down", "scale.yaml")
		return fmt.Errorf("podman kube play: %v\n%s", err, out)
	}
	defer func() {
		c.Log("podman kube down scale.yaml")
		if out, err := exec.Command("podman", "kube", "down", filepath.Join(work, "scale.yaml")).CombinedOutput(); err != nil {
			c.Log("podman kube down: %v: %s", err, out)
		}
		removeConfigMapVolumes(played, c.Log)
	}()
	deadline := time.Now().Add(time.Minute)
	for i := range c.Pods {
		url := fmt.Sprintf("http://127.0.0.1:%d/ready", 22000+i)
		for !httpOK(url) {
			if time.Now().After(deadline) {
				ps, _ := podman("ps", "-a", "--format", "{{.Names}} {{.Status}} {{.Ports}}")
				logs, _ := podman("logs", "--tail", "20", fmt.Sprintf("scale-%d-tracehop", i))
				return fmt.Errorf("scale-%d never became ready (%s):\n%s\npodman logs scale-%d-tracehop:\n%s", i, url, ps, i, logs)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	c.Log("all %d sidecars ready", c.Pods)
	pids := make([]int, c.Pods)
	for i := range pids {
		out, err := podman("inspect", "--format", "{{.State.Pid}}", fmt.Sprintf("scale-%d-tracehop", i))
		if err != nil {
			return fmt.Errorf("podman inspect scale-%d-tracehop: %v: %s", i, err, out)
		}
		pids[i], _ = strconv.Atoi(strings.TrimSpace(string(out)))
	}
	// Idle first: what a sidecar costs with no traffic (the config file's
	// poll, the driver's batch timer, the runtime).
	idleWindow := 10 * time.Second
	idle := make([]sidecarSample, c.Pods)
	for i, pid := range pids {
		idle[i] = sample(pid)
	}
	c.Log("idle for %s, to measure what a sidecar costs without traffic", idleWindow)
	time.Sleep(idleWindow)
	before := make([]sidecarSample, c.Pods)
	var idleCPU time.Duration
	for i, pid := range pids {
		before[i] = sample(pid)
		idleCPU += before[i].cpu - idle[i].cpu
	}
	idleShare := idleCPU.Seconds() / idleWindow.Seconds() / float64(c.Pods) // cores per sidecar
	c.Log("idle: %.2f%% of a core per sidecar (tracehop + driver), RSS %.1f MiB (scale-0)", 100*idleShare, mib(before[0].rss))
	c.Log("load: %d req/s to each of %d Pods for %s (%d req/s in all)", c.Rate, c.Pods, c.Duration, c.Rate*c.Pods)
	ok := make([]atomic.Int64, c.Pods)
	failed := make([]atomic.Int64, c.Pods)
	start := time.Now()
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	for i := range c.Pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			url := fmt.Sprintf("http://127.0.0.1:%d/trace/1", 21000+i)
			tick := time.NewTicker(time.Second / time.Duration(c.Rate))
			defer tick.Stop()
			var inflight sync.WaitGroup
			for time.Since(start) < c.Duration && ctx.Err() == nil {
				<-tick.C
				inflight.Add(1)
				go func() {
					defer inflight.Done()
					resp, err := client.Get(url)
					if err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
					if err == nil && resp.StatusCode == 200 {
						ok[i].Add(1)
					} else {
						failed[i].Add(1)
					}
				}()
			}
			inflight.Wait()
		}()
	}
	var maxQueue atomic.Int64
	loadDone := make(chan struct{})
	go func() { // scale-0's span queue, every second
		for {
			select {
			case <-loadDone:
				return
			case <-time.After(time.Second):
			}
			if q := scrape("http://127.0.0.1:22000/metrics")["tracehop_queue_spans"]; q > maxQueue.Load() {
				maxQueue.Store(q)
			}
		}
	}()
	if c.CollectorDown > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(c.Duration / 4)
			c.Log("collector down: podman stop jaeger-jaeger (for %s)", c.CollectorDown)
			if out, err := podman("stop", "-t", "1", "jaeger-jaeger"); err != nil {
				c.Log("podman stop: %v: %s", err, out)
			}
			time.Sleep(c.CollectorDown)
			c.Log("collector up again: podman start jaeger-jaeger (its in-memory store starts empty)")
			if out, err := podman("start", "jaeger-jaeger"); err != nil {
				c.Log("podman start: %v: %s", err, out)
			}
		}()
	}
	wg.Wait()
	close(loadDone)
	elapsed := time.Since(start)
	after := make([]sidecarSample, c.Pods)
	for i, pid := range pids {
		after[i] = sample(pid)
	}
	c.Log("load done in %s; scale-0's span queue peaked at %d spans (sampled each second); waiting for the queues to empty, then reading each sidecar's /metrics and Jaeger", elapsed.Round(time.Millisecond), maxQueue.Load())
	time.Sleep(5 * time.Second)
	for wait := time.Now().Add(time.Minute); time.Now().Before(wait); time.Sleep(time.Second) {
		busy := false
		for i := range c.Pods {
			busy = busy || scrape(fmt.Sprintf("http://127.0.0.1:%d/metrics", 22000+i))["tracehop_queue_spans"] > 0
		}
		if !busy {
			break
		}
	}

	fmt.Printf("\n| Pod | requests ok / failed | req/s | sidecar CPU (tracehop + driver) | CPU µs/req | RSS now / peak MiB | spans exported / dropped (/metrics) | traces in Jaeger |\n")
	fmt.Printf("|---|---|---|---|---|---|---|---|\n")
	var sumCPU time.Duration
	var sumOK, sumExported, sumDropped, sumJaeger int64
	var maxHWM int64
	for i := range c.Pods {
		cpu := after[i].cpu - before[i].cpu
		sumCPU += cpu
		n := ok[i].Load()
		sumOK += n
		m := scrape(fmt.Sprintf("http://127.0.0.1:%d/metrics", 22000+i))
		exported, dropped := m["tracehop_spans_exported_total"], m["tracehop_spans_dropped_total"]
		sumExported += exported
		sumDropped += dropped
		inJaeger := jaegerTraces(fmt.Sprintf("http://127.0.0.1:%d", jaegerPort), fmt.Sprintf("scale-%d", i), int(n)+100)
		sumJaeger += int64(inJaeger)
		maxHWM = max(maxHWM, after[i].hwm)
		fmt.Printf("| scale-%d | %d / %d | %.0f | %.1f%% of a core | %.1f | %.1f / %.1f | %d / %d | %d |\n", i, n, failed[i].Load(),
			float64(n)/elapsed.Seconds(), 100*cpu.Seconds()/elapsed.Seconds(), float64(cpu.Microseconds())/float64(max(n, 1)),
			mib(after[i].rss), mib(after[i].hwm), exported, dropped, inJaeger)
	}
	fmt.Printf("| all %d | %d | %.0f | %.1f%% of a core each (mean) | %.1f | peak %.1f | %d / %d | %d |\n\n", c.Pods, sumOK, float64(sumOK)/elapsed.Seconds(),
		100*sumCPU.Seconds()/elapsed.Seconds()/float64(c.Pods), float64(sumCPU.Microseconds())/float64(max(sumOK, 1)), mib(maxHWM), sumExported, sumDropped, sumJaeger)
	perReq := (sumCPU.Seconds() - idleShare*float64(c.Pods)*elapsed.Seconds()) / float64(max(sumOK, 1))
	fmt.Printf("Idle: %.2f%% of a core per sidecar. Under load, above idle: %.0f µs of CPU per request, %.0f millicores per 1,000 req/s.\n",
		100*idleShare, perReq*1e6, perReq*1e6)
	return nil
}

func httpOK(url string) bool {
	resp, err := http.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// sample reads the CPU time and memory of pid and its children (the
// driver processes) from /proc.
func sample(pid int) sidecarSample {
	var s sidecarSample
	for _, p := range append([]int{pid}, children(pid)...) {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p)); err == nil {
			f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
			if len(f) > 12 {
				ut, _ := strconv.ParseInt(f[11], 10, 64)
				st, _ := strconv.ParseInt(f[12], 10, 64)
				s.cpu += time.Duration(ut+st) * time.Second / 100 // USER_HZ
			}
		}
		if f, err := os.Open(fmt.Sprintf("/proc/%d/status", p)); err == nil {
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				k, v, _ := strings.Cut(sc.Text(), ":")
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				switch k {
				case "VmRSS":
					s.rss += kb << 10
				case "VmHWM":
					s.hwm += kb << 10
				}
			}
			f.Close()
		}
	}
	return s
}

func children(pid int) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, p)
		}
	}
	return out
}

// scrape sums each metric family's samples (over their labels).
func scrape(url string) map[string]int64 {
	m := map[string]int64{}
	resp, err := http.Get(url)
	if err != nil {
		return m
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest, _ := strings.Cut(line, " ")
		if i := strings.IndexByte(line, '{'); i >= 0 {
			name = line[:i]
			rest = line[strings.IndexByte(line, '}')+2:]
		}
		v, _ := strconv.ParseFloat(strings.Fields(rest)[0], 64)
		m[name] += int64(v)
	}
	return m
}

// jaegerTraces counts the traces of service in Jaeger.
func jaegerTraces(base, service string, limit int) int {
	resp, err := http.Get(fmt.Sprintf("%s/api/traces?service=%s&limit=%d&lookback=1h", base, service, limit))
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var body struct {
		Data []struct {
			TraceID string `json:"traceID"`
		} `json:"data"`
	}
	if err := jsonDecode(resp.Body, &body); err != nil {
		return -1
	}
	return len(body.Data)
}

func jsonDecode(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }
