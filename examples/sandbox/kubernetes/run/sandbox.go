package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tracehop/tracehop/cmd/tracehop/traceview"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	kjson "sigs.k8s.io/json"
	kyaml "sigs.k8s.io/yaml"
)

// Network is the podman network the sandbox's Pods join: one with DNS
// (podman's default network has none), so that a Pod's name resolves as a
// Service's does in a cluster.
const Network = "tracehop-sandbox"

// sandboxPods are the sandbox's Pods, as named in its manifests;
// deployPods are deploy/kubernetes's Deployments, played as Pods.
var (
	sandboxPods = []string{"jaeger", "front-proxy", "service1", "service2"}
	deployPods  = []string{"jaeger", "front-proxy", "shop"}
	deployFiles = []string{"collector.yaml", "front-proxy.yaml", "shop.yaml"}
)

// Config says which manifests to play and where to publish them.
type Config struct {
	Dir    string // the folder with the manifests
	Inject bool   // play sandbox-apps.yaml through `tracehop inject`
	// Deploy plays deploy/kubernetes (Deploy is its folder) instead of the
	// sandbox: Jaeger, the front proxy and the shop, reached at their Pods'
	// addresses (those manifests publish no host ports).
	Deploy    string
	Tracehop  string // the tracehop binary, for Inject
	Propagate string // all, false or request-id
	// FrontPort and JaegerPort are the host ports (on 127.0.0.1) that
	// replace the manifests' hostPorts 8000 and 16686.
	FrontPort, JaegerPort int
	Log                   func(format string, args ...any)
}

// Sandbox is a played sandbox.
type Sandbox struct {
	c    Config
	work string // where the played manifests are: podman kube down reads them
	pods []string
	// front and jaeger are the base URLs of the front proxy and Jaeger's
	// query API; want is the services of each trace the request makes.
	front, jaeger string
	want          [][]string
	// instanceIDs are the service.instance.id resource attributes of each
	// trace's processes, by trace id and service.
	instanceIDs map[string]map[string]string
}

// readInstanceIDs reads the process tags service.instance.id of traces
// from Jaeger (traceview keeps span tags only).
func (sb *Sandbox) readInstanceIDs(ctx context.Context, traces []traceview.Trace) {
	sb.instanceIDs = map[string]map[string]string{}
	for _, t := range traces {
		var body struct {
			Data []struct {
				Processes map[string]struct {
					ServiceName string `json:"serviceName"`
					Tags        []struct {
						Key   string `json:"key"`
						Value any    `json:"value"`
					} `json:"tags"`
				} `json:"processes"`
			} `json:"data"`
		}
		req, _ := http.NewRequestWithContext(ctx, "GET", sb.jaeger+"/api/traces/"+strings.TrimLeft(t.ID, "0"), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			continue
		}
		json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		ids := map[string]string{}
		for _, d := range body.Data {
			for _, p := range d.Processes {
				for _, tag := range p.Tags {
					if tag.Key == "service.instance.id" {
						ids[p.ServiceName] = fmt.Sprint(tag.Value)
					}
				}
			}
		}
		sb.instanceIDs[t.ID] = ids
	}
}

// Play starts the sandbox and waits until every tracehop is ready.
func Play(ctx context.Context, c Config) (*Sandbox, error) {
	if _, err := exec.LookPath("podman"); err != nil {
		return nil, errors.New("podman is not installed: apt-get install -y podman runc, and set runtime = \"runc\" in /etc/containers/containers.conf (see docs/deploying.md; .ci/run does both)")
	}
	for _, img := range []string{"localhost/tracehop:latest", "localhost/tracehop-sandbox-app:latest", "localhost/tracehop-jaeger:latest"} {
		if exec.CommandContext(ctx, "podman", "image", "exists", img).Run() != nil {
			return nil, fmt.Errorf("image %s is missing: make k8s-demo builds it (deploy/image.sh)", img)
		}
	}
	pods := sandboxPods
	if c.Deploy != "" {
		pods = deployPods
	}
	for _, p := range []int{c.FrontPort, c.JaegerPort} {
		if c.Deploy != "" {
			break
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			return nil, fmt.Errorf("host port %d is taken (%v): choose others with -front-port and -jaeger-port", p, err)
		}
		ln.Close()
	}
	for _, p := range pods {
		if exec.CommandContext(ctx, "podman", "pod", "exists", p).Run() == nil {
			return nil, fmt.Errorf("a pod named %s exists already: a sandbox is still up (podman pod rm -f %s, or podman kube down on its manifests)", p, strings.Join(pods, " "))
		}
	}
	var manifest []byte
	var err error
	if c.Deploy != "" {
		for _, f := range deployFiles {
			b, err := os.ReadFile(filepath.Join(c.Deploy, f))
			if err != nil {
				return nil, err
			}
			manifest = append(append(manifest, bytes.TrimSuffix(b, []byte("\n"))...), "\n---\n"...)
		}
	} else if c.Inject {
		c.Log("tracehop inject -f %s", filepath.Join(c.Dir, "sandbox-apps.yaml"))
		cmd := exec.CommandContext(ctx, c.Tracehop, "inject", "-f", filepath.Join(c.Dir, "sandbox-apps.yaml"))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if manifest, err = cmd.Output(); err != nil {
			return nil, fmt.Errorf("tracehop inject: %v\n%s", err, stderr.String())
		}
	} else if manifest, err = os.ReadFile(filepath.Join(c.Dir, "sandbox.yaml")); err != nil {
		return nil, err
	}
	played, err := ForPodman(manifest, map[int32]int32{8000: int32(c.FrontPort), 16686: int32(c.JaegerPort)})
	if err != nil {
		return nil, err
	}
	settings, err := os.ReadFile(filepath.Join(c.Dir, "settings.yaml"))
	if err != nil {
		return nil, err
	}
	settings = bytes.Replace(settings, []byte("propagate: all"), []byte("propagate: "+c.Propagate), 1)

	// kube play runs in a folder of its own: it would build an image from
	// ./NAME/Containerfile if it found one named like an image.
	work, err := os.MkdirTemp("", "tracehop-k8s-demo-")
	if err != nil {
		return nil, err
	}
	sb := &Sandbox{c: c, work: work, pods: pods,
		front:  fmt.Sprintf("http://127.0.0.1:%d", c.FrontPort),
		jaeger: fmt.Sprintf("http://127.0.0.1:%d", c.JaegerPort),
		want:   [][]string{{"front-proxy", "service1", "service1", "service2"}},
	}
	if c.Propagate == "false" {
		sb.want = [][]string{{"front-proxy", "service1"}, {"service1", "service2"}}
	}
	if c.Deploy != "" {
		sb.want = [][]string{{"front-proxy", "shop"}}
	}
	for name, b := range map[string][]byte{"sandbox.yaml": played, "settings.yaml": settings} {
		if err := os.WriteFile(filepath.Join(work, name), b, 0o644); err != nil {
			return nil, err
		}
	}
	if exec.CommandContext(ctx, "podman", "network", "exists", Network).Run() != nil {
		c.Log("podman network create %s (a network with DNS: Pods find each other by name)", Network)
		if out, err := exec.CommandContext(ctx, "podman", "network", "create", Network).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("podman network create %s: %v\n%s", Network, err, out)
		}
	}
	if c.Deploy != "" {
		c.Log("podman kube play --network %s sandbox.yaml (in %s: %s's %s, each Deployment as one Pod)", Network, work, c.Deploy, strings.Join(deployFiles, ", "))
	} else {
		c.Log("podman kube play --network %s --configmap settings.yaml sandbox.yaml (in %s; propagate=%s)", Network, work, c.Propagate)
	}
	if out, err := sb.podman(ctx, "kube", "play", "--network", Network, "--configmap", "settings.yaml", "sandbox.yaml"); err != nil {
		sb.DumpLogs(os.Stderr)
		sb.Down(context.Background())
		return nil, fmt.Errorf("podman kube play: %v\n%s", err, out)
	}
	if err := sb.waitReady(ctx); err != nil {
		sb.DumpLogs(os.Stderr)
		sb.Down(context.Background())
		return nil, err
	}
	return sb, nil
}

func (sb *Sandbox) podman(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "podman", args...)
	cmd.Dir = sb.work
	return cmd.CombinedOutput()
}

// waitReady waits for each tracehop's /ready (at its Pod's address on the
// podman network: the admin ports are not published) and Jaeger's query API.
func (sb *Sandbox) waitReady(ctx context.Context) error {
	urls := map[string]string{}
	for _, p := range sb.pods {
		ip, err := sb.podIP(ctx, p)
		if err != nil {
			return err
		}
		urls[p] = "http://" + net.JoinHostPort(ip, "9901") + "/ready"
		if p == "jaeger" {
			urls[p] = sb.jaeger + "/"
			if sb.c.Deploy != "" {
				sb.jaeger = "http://" + net.JoinHostPort(ip, "16686")
				urls[p] = sb.jaeger + "/"
			}
		}
		if p == "front-proxy" && sb.c.Deploy != "" {
			sb.front = "http://" + net.JoinHostPort(ip, "8000")
		}
	}
	deadline := time.Now().Add(90 * time.Second)
	for _, p := range sb.pods {
		sb.c.Log("waiting for %s: %s", p, urls[p])
		for {
			if resp, err := http.Get(urls[p]); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("%s did not answer 200 on %s within 90s: see its logs above (podman logs %s-<container>)", p, urls[p], p)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	return nil
}

func (sb *Sandbox) podIP(ctx context.Context, pod string) (string, error) {
	infra, err := sb.podman(ctx, "pod", "inspect", pod, "--format", "{{.InfraContainerID}}")
	if err != nil {
		return "", fmt.Errorf("podman pod inspect %s: %v: %s", pod, err, infra)
	}
	out, err := sb.podman(ctx, "inspect", strings.TrimSpace(string(infra)), "--format", `{{(index .NetworkSettings.Networks "`+Network+`").IPAddress}}`)
	ip := strings.TrimSpace(string(out))
	if err != nil || net.ParseIP(ip) == nil {
		return "", fmt.Errorf("the address of pod %s on network %s: %v: %s", pod, Network, err, out)
	}
	return ip, nil
}

// Check sends the seed's request through the front proxy and waits for
// its trace in Jaeger: one trace of 4 spans over 3 services, or with
// propagate=false two traces of 2 spans (the application dropped the
// context between service1's ingress and egress).
func (sb *Sandbox) Check(ctx context.Context) ([]traceview.Trace, error) {
	url := sb.front + "/trace/1"
	sb.c.Log("curl %s", url)
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "service 1") {
		return nil, fmt.Errorf("GET %s: %d %q", url, resp.StatusCode, body)
	}
	fmt.Printf("    %s", body)
	jaeger := sb.jaeger
	sb.c.Log("waiting for the spans in Jaeger (%s/api/traces?service=front-proxy)", jaeger)
	var last error
	deadline := time.Now().Add(45 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(time.Second)
		var traces []traceview.Trace
		for _, svc := range []string{"front-proxy", sb.want[len(sb.want)-1][len(sb.want[len(sb.want)-1])-1]} {
			spans, err := traceview.FetchJaeger(ctx, jaeger, svc, "", 20)
			if err != nil {
				last = err
				continue
			}
			for _, t := range traceview.Group(spans) {
				if !containsTrace(traces, t.ID) {
					traces = append(traces, t)
				}
			}
		}
		sb.readInstanceIDs(ctx, traces)
		if last = sb.judge(traces); last == nil {
			return traces, nil
		}
	}
	return nil, fmt.Errorf("after 45s: %v", last)
}

func containsTrace(ts []traceview.Trace, id string) bool {
	for _, t := range ts {
		if t.ID == id {
			return true
		}
	}
	return false
}

// judge says what is wrong with the traces found, or nil.
func (sb *Sandbox) judge(traces []traceview.Trace) error {
	want := sb.want
	var got [][]string
	for _, t := range traces {
		var services []string
		ids := map[string]bool{}
		for _, s := range t.Spans {
			services = append(services, s.Service)
			ids[s.SpanID] = true
			// node.id is "${POD_NAME}", from the downward API; the Pods
			// are named like their services. The zipkin driver writes it
			// as the span tag node_id, the otlp driver as that and as the
			// resource attribute service.instance.id.
			tag, resource := s.Tags["node_id"], sb.instanceIDs[t.ID][s.Service]
			if tag == "" && resource == "" || tag != "" && tag != s.Service || resource != "" && resource != s.Service {
				return fmt.Errorf("a %s span has node_id %q and service.instance.id %q, want the Pod's name %q (from POD_NAME)", s.Service, tag, resource, s.Service)
			}
		}
		sort.Strings(services)
		roots := 0
		for _, s := range t.Spans {
			if s.ParentID == "" || !ids[s.ParentID] {
				roots++
			}
		}
		if roots != 1 {
			return fmt.Errorf("trace %s has %d roots (spans whose parent is not in it), want 1", t.ID, roots)
		}
		got = append(got, services)
	}
	sort.Slice(got, func(i, j int) bool { return strings.Join(got[i], ",") < strings.Join(got[j], ",") })
	if fmt.Sprint(got) != fmt.Sprint(want) {
		return fmt.Errorf("want traces with the spans of %v, Jaeger has %v", want, got)
	}
	return nil
}

// Summary describes traces that passed the check.
func (sb *Sandbox) Summary(traces []traceview.Trace) string {
	var parts []string
	for _, t := range traces {
		services := map[string]bool{}
		for _, s := range t.Spans {
			services[s.Service] = true
		}
		parts = append(parts, fmt.Sprintf("trace %s: %d spans over %d services", t.ID, len(t.Spans), len(services)))
	}
	what := "propagate=" + sb.c.Propagate
	if sb.c.Deploy != "" {
		what = sb.c.Deploy
	}
	return fmt.Sprintf("%s: %d trace(s) in Jaeger as expected (%s)", what, len(traces), strings.Join(parts, "; "))
}

// DumpLogs writes the last lines of every container's log, for a failure.
func (sb *Sandbox) DumpLogs(w io.Writer) {
	out, _ := exec.Command("podman", "ps", "-a", "--format", "{{.Names}} {{.Status}}").Output()
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		name, status, _ := strings.Cut(line, " ")
		for _, p := range sb.pods {
			if strings.HasPrefix(name, p+"-") {
				logs, _ := exec.Command("podman", "logs", "--tail", "15", name).CombinedOutput()
				fmt.Fprintf(w, "--- podman logs %s (%s)\n%s", name, status, logs)
			}
		}
	}
}

// Down removes the sandbox's Pods (podman kube down) and the played files.
func (sb *Sandbox) Down(ctx context.Context) error {
	sb.c.Log("podman kube down sandbox.yaml")
	out, err := sb.podman(ctx, "kube", "down", "sandbox.yaml")
	if played, rerr := os.ReadFile(filepath.Join(sb.work, "sandbox.yaml")); rerr == nil {
		removeConfigMapVolumes(played, sb.c.Log)
	}
	os.RemoveAll(sb.work)
	if err != nil {
		return fmt.Errorf("podman kube down: %v\n%s", err, out)
	}
	return nil
}

// removeConfigMapVolumes removes the volumes podman 4.3 makes of the
// ConfigMaps a Pod mounts (one per ConfigMap, named after it), which
// podman kube down leaves behind.
func removeConfigMapVolumes(manifest []byte, log func(string, ...any)) {
	for _, doc := range strings.Split(string(manifest), "\n---\n") {
		if !strings.Contains(doc, "\nkind: ConfigMap\n") && !strings.HasPrefix(doc, "kind: ConfigMap\n") {
			continue
		}
		var cm corev1.ConfigMap
		if err := kyaml.Unmarshal([]byte(doc), &cm); err != nil || cm.Name == "" {
			continue
		}
		if exec.Command("podman", "volume", "exists", cm.Name).Run() == nil {
			if out, err := exec.Command("podman", "volume", "rm", "-f", cm.Name).CombinedOutput(); err != nil {
				log("podman volume rm %s: %v: %s", cm.Name, err, out)
			}
		}
	}
}

// ForPodman adapts Kubernetes manifests to podman 4.3's kube play, which
// publishes every containerPort on the host (a cluster publishes only
// hostPorts): it drops the ports that have no hostPort, so that Pods do not
// fight over the host's 9901 and 8100, turns the probes' named ports into
// numbers, and moves the hostPorts as hostPorts says. A Deployment becomes
// one Pod named as the Deployment (podman resolves Pods by name, and
// ignores Services); a Namespace is left out. Other documents are copied as
// they are.
func ForPodman(manifest []byte, hostPorts map[int32]int32) ([]byte, error) {
	docs := strings.Split(string(manifest), "\n---\n")
	var out []string
	for i, doc := range docs {
		isPod, isDeployment := strings.Contains(doc, "\nkind: Pod\n"), strings.Contains(doc, "\nkind: Deployment\n")
		if strings.Contains(doc, "\nkind: Namespace\n") || strings.HasPrefix(doc, "apiVersion: v1\nkind: Namespace\n") {
			continue // podman has none
		}
		if !isPod && !isDeployment {
			out = append(out, doc)
			continue
		}
		js, err := kyaml.YAMLToJSONStrict([]byte(doc))
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		var pod corev1.Pod
		if isDeployment {
			// One Pod named as the Deployment: podman 4.3 would name it
			// NAME-pod-0, which no Service name resolves to.
			var d appsv1.Deployment
			if strict, err := kjson.UnmarshalStrict(js, &d); err != nil || len(strict) > 0 {
				return nil, fmt.Errorf("document %d: %v %v", i+1, err, strict)
			}
			pod = corev1.Pod{ObjectMeta: d.Spec.Template.ObjectMeta, Spec: d.Spec.Template.Spec}
			pod.APIVersion, pod.Kind, pod.Name = "v1", "Pod", d.Name
		} else if strict, err := kjson.UnmarshalStrict(js, &pod); err != nil || len(strict) > 0 {
			return nil, fmt.Errorf("document %d: %v %v", i+1, err, strict)
		}
		for ci := range pod.Spec.Containers {
			c := &pod.Spec.Containers[ci]
			named := map[string]int32{}
			var kept []corev1.ContainerPort
			for _, p := range c.Ports {
				named[p.Name] = p.ContainerPort
				if p.HostPort != 0 {
					if to, ok := hostPorts[p.HostPort]; ok {
						p.HostPort = to
					}
					kept = append(kept, p)
				}
			}
			c.Ports = kept
			for _, pr := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe, c.StartupProbe} {
				if pr != nil && pr.HTTPGet != nil && pr.HTTPGet.Port.Type == intstr.String {
					pr.HTTPGet.Port = intstr.FromInt32(named[pr.HTTPGet.Port.StrVal])
				}
			}
		}
		b, err := kyaml.Marshal(&pod)
		if err != nil {
			return nil, err
		}
		out = append(out, string(b))
	}
	return []byte(strings.Join(out, "\n---\n")), nil
}
