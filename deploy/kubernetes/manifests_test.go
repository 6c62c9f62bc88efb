// The Kubernetes manifests (this folder's and the sandbox's), checked as a
// cluster and tracehop would read them.
package kubernetes_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/tracehop/tracehop/proxy/config"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	kjson "sigs.k8s.io/json"
	kyaml "sigs.k8s.io/yaml"
)

// set is one folder's objects, which refer to each other.
type set struct {
	configMaps map[string]corev1.ConfigMap
	workloads  map[string]corev1.PodTemplateSpec // "Kind/name"
	services   []corev1.Service
	// statefulSets are kept whole: their serviceName and replicas matter.
	statefulSets []appsv1.StatefulSet
}

// load decodes every document of files strictly into its API type.
func load(t *testing.T, files ...string) set {
	t.Helper()
	s := set{configMaps: map[string]corev1.ConfigMap{}, workloads: map[string]corev1.PodTemplateSpec{}}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range strings.Split(string(b), "\n---\n") {
			var meta struct{ Kind string }
			if err := kyaml.Unmarshal([]byte(doc), &meta); err != nil {
				t.Fatalf("%s: document %d: %v", f, i+1, err)
			}
			var obj any
			switch meta.Kind {
			case "ConfigMap":
				obj = &corev1.ConfigMap{}
			case "Deployment":
				obj = &appsv1.Deployment{}
			case "StatefulSet":
				obj = &appsv1.StatefulSet{}
			case "Pod":
				obj = &corev1.Pod{}
			case "Service":
				obj = &corev1.Service{}
			case "Namespace":
				obj = &corev1.Namespace{}
			default:
				t.Fatalf("%s: document %d: kind %q: add it to this test", f, i+1, meta.Kind)
			}
			js, err := kyaml.YAMLToJSONStrict([]byte(doc))
			if err != nil {
				t.Fatalf("%s: document %d: %v", f, i+1, err)
			}
			strict, err := kjson.UnmarshalStrict(js, obj)
			if err != nil || len(strict) > 0 {
				t.Fatalf("%s: document %d (%s): %v %v", f, i+1, meta.Kind, err, strict)
			}
			switch o := obj.(type) {
			case *corev1.ConfigMap:
				s.configMaps[o.Name] = *o
			case *appsv1.Deployment:
				if !labels.SelectorFromSet(o.Spec.Selector.MatchLabels).Matches(labels.Set(o.Spec.Template.Labels)) {
					t.Errorf("%s: Deployment %s: its selector does not match its template's labels", f, o.Name)
				}
				s.workloads["Deployment/"+o.Name] = o.Spec.Template
			case *appsv1.StatefulSet:
				if !labels.SelectorFromSet(o.Spec.Selector.MatchLabels).Matches(labels.Set(o.Spec.Template.Labels)) {
					t.Errorf("%s: StatefulSet %s: its selector does not match its template's labels", f, o.Name)
				}
				s.workloads["StatefulSet/"+o.Name] = o.Spec.Template
				s.statefulSets = append(s.statefulSets, *o)
			case *corev1.Pod:
				s.workloads["Pod/"+o.Name] = corev1.PodTemplateSpec{ObjectMeta: o.ObjectMeta, Spec: o.Spec}
			case *corev1.Service:
				s.services = append(s.services, *o)
			}
		}
	}
	return s
}

func TestManifests(t *testing.T) {
	sandbox := "../../examples/sandbox/kubernetes/"
	for name, files := range map[string][]string{
		"deploy/kubernetes":               {"namespace.yaml", "collector.yaml", "front-proxy.yaml", "shop.yaml"},
		"sandbox.yaml":                    {sandbox + "sandbox.yaml", sandbox + "settings.yaml"},
		"sandbox-apps.yaml (no sidecars)": {sandbox + "sandbox-apps.yaml", sandbox + "settings.yaml"},
	} {
		t.Run(name, func(t *testing.T) {
			s := load(t, files...)
			checkSet(t, s, !strings.Contains(name, "no sidecars"))
		})
	}
}

func checkSet(t *testing.T, s set, sidecars bool) {
	// Every tracehop config is one tracehop accepts, with its admin server
	// where probes and Prometheus reach it.
	t.Setenv("POD_NAME", "test-pod")
	for name, cm := range s.configMaps {
		body, ok := cm.Data["tracehop.yaml"]
		if !ok {
			continue
		}
		path := filepath.Join(t.TempDir(), "tracehop.yaml")
		os.WriteFile(path, []byte(body), 0o644)
		cfg, err := config.Load(path)
		if err != nil {
			t.Errorf("ConfigMap %s: tracehop.yaml: %v", name, err)
			continue
		}
		if cfg.Admin.Address != "0.0.0.0:9901" {
			t.Errorf("ConfigMap %s: admin address %q, want 0.0.0.0:9901 (probes come from outside the Pod)", name, cfg.Admin.Address)
		}
		if cfg.Node.ID != "test-pod" {
			t.Errorf("ConfigMap %s: node.id %q, want the Pod's name from $POD_NAME", name, cfg.Node.ID)
		}
	}
	withSidecar := 0
	for wname, tmpl := range s.workloads {
		ports := map[string]bool{}
		for _, c := range tmpl.Spec.Containers {
			for _, p := range c.Ports {
				ports[p.Name] = true
			}
			for _, e := range c.EnvFrom {
				if e.ConfigMapRef != nil && s.configMaps[e.ConfigMapRef.Name].Name == "" {
					t.Errorf("%s: container %s: envFrom ConfigMap %s is not in the set", wname, c.Name, e.ConfigMapRef.Name)
				}
			}
			for _, e := range c.Env {
				if r := e.ValueFrom; r != nil && r.ConfigMapKeyRef != nil {
					if _, ok := s.configMaps[r.ConfigMapKeyRef.Name].Data[r.ConfigMapKeyRef.Key]; !ok {
						t.Errorf("%s: env %s: ConfigMap %s has no key %s", wname, e.Name, r.ConfigMapKeyRef.Name, r.ConfigMapKeyRef.Key)
					}
				}
			}
			if c.Name != "tracehop" {
				continue
			}
			withSidecar++
			checkTracehop(t, wname, tmpl, c)
		}
		for _, v := range tmpl.Spec.Volumes {
			if v.ConfigMap != nil {
				if _, ok := s.configMaps[v.ConfigMap.Name]; !ok {
					t.Errorf("%s: volume %s: ConfigMap %s is not in the set", wname, v.Name, v.ConfigMap.Name)
				}
			}
		}
		for _, svc := range s.services {
			if labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(tmpl.Labels)) {
				for _, p := range svc.Spec.Ports {
					if p.TargetPort.StrVal != "" && !ports[p.TargetPort.StrVal] && (sidecars || !strings.HasPrefix(p.TargetPort.StrVal, "th-")) {
						t.Errorf("Service %s: targetPort %q is no port of %s", svc.Name, p.TargetPort.StrVal, wname)
					}
				}
			}
		}
	}
	for _, svc := range s.services {
		n := 0
		for _, tmpl := range s.workloads {
			if labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(tmpl.Labels)) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("Service %s selects %d workloads, want 1", svc.Name, n)
		}
	}
	if withSidecar == 0 {
		t.Error("no tracehop container at all")
	}
}

// checkTracehop checks a tracehop container as Kubernetes runs it.
func checkTracehop(t *testing.T, wname string, tmpl corev1.PodTemplateSpec, c corev1.Container) {
	t.Helper()
	errorf := func(format string, args ...any) { t.Errorf("%s: tracehop: %s", wname, fmt.Sprintf(format, args...)) }
	if r := c.ReadinessProbe; r == nil || r.HTTPGet == nil || r.HTTPGet.Path != "/ready" || r.HTTPGet.Port.String() != "tracehop-admin" {
		errorf("readiness probe %+v, want GET /ready on tracehop-admin", r)
	}
	if l := c.LivenessProbe; l == nil || l.HTTPGet == nil || l.HTTPGet.Path != "/healthz" || l.HTTPGet.Port.String() != "tracehop-admin" {
		errorf("liveness probe %+v, want GET /healthz on tracehop-admin", l)
	}
	if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == "tracehop-admin" && p.ContainerPort == 9901 }) {
		errorf("no port tracehop-admin 9901: %+v", c.Ports)
	}
	if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
		return e.Name == "POD_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name"
	}) {
		errorf("no POD_NAME from the downward API")
	}
	if a := tmpl.Annotations; a["prometheus.io/scrape"] != "true" || a["prometheus.io/port"] != "9901" {
		errorf("Prometheus annotations %v", a)
	}
	if g := tmpl.Spec.TerminationGracePeriodSeconds; g == nil || *g < 20 {
		errorf("terminationGracePeriodSeconds %v: want at least the preStop and the drain (20s)", g)
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m.Name
	}
	if mounts["/etc/tracehop"] == "" || mounts["/tmp"] == "" {
		errorf("mounts %v: want the config at /etc/tracehop and a writable /tmp (go-plugin's sockets)", mounts)
	}
	if sc := c.SecurityContext; sc != nil && sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem && mounts["/tmp"] == "" {
		errorf("a read-only root file system needs /tmp mounted")
	}
}

// shop.yaml is app-only/shop.yaml through tracehop inject.
func TestShopIsInjected(t *testing.T) {
	got, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "run", "github.com/tracehop/tracehop/cmd/tracehop-inject", "-f", "app-only/shop.yaml").Output()
	if err != nil {
		t.Fatalf("tracehop inject: %v", err)
	}
	want, err := os.ReadFile("shop.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Error("shop.yaml is not tracehop inject's output of app-only/shop.yaml; regenerate it:\n  go run ./cmd/tracehop-inject -f deploy/kubernetes/app-only/shop.yaml > deploy/kubernetes/shop.yaml")
	}
}
