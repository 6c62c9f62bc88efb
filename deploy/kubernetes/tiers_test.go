// The Collector tiers (tiers/), checked as Kubernetes, the Collector and
// tracehop would read them.
package kubernetes_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tracehop/tracehop/proxy/config"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	kyaml "sigs.k8s.io/yaml"
)

// otelcolConfig is the part of a Collector config these tests read.
type otelcolConfig struct {
	Processors map[string]map[string]any `json:"processors"`
	Exporters  map[string]map[string]any `json:"exporters"`
	Service    struct {
		Pipelines map[string]struct {
			Receivers  []string `json:"receivers"`
			Processors []string `json:"processors"`
			Exporters  []string `json:"exporters"`
		} `json:"pipelines"`
	} `json:"service"`
}

func TestTiers(t *testing.T) {
	s := load(t, "tiers/otel-gateway.yaml", "tiers/otel-tail-sampling.yaml", "tiers/sidecars-to-gateway.yaml")
	base := load(t, "namespace.yaml", "collector.yaml", "front-proxy.yaml", "shop.yaml")

	// The sidecars' configs replace the base's, load in tracehop and send
	// to the gateway's Service over OTLP.
	t.Setenv("POD_NAME", "test-pod")
	sidecars := 0
	for name, cm := range s.configMaps {
		body, ok := cm.Data["tracehop.yaml"]
		if !ok {
			continue
		}
		sidecars++
		if _, ok := base.configMaps[name]; !ok {
			t.Errorf("ConfigMap %s replaces none of deploy/kubernetes's", name)
		}
		path := filepath.Join(t.TempDir(), "tracehop.yaml")
		os.WriteFile(path, []byte(body), 0o644)
		cfg, err := config.Load(path)
		if err != nil {
			t.Errorf("ConfigMap %s: tracehop.yaml: %v", name, err)
			continue
		}
		d := cfg.Tracing.Driver
		if d.Name != "otlp" || d.Config["endpoint"] != "otel-gateway:4317" {
			t.Errorf("ConfigMap %s: driver %s %v, want otlp to otel-gateway:4317 (the gateway tier's Service)", name, d.Name, d.Config)
		}
	}
	if sidecars != 2 {
		t.Errorf("%d tracehop ConfigMaps, want the front proxy's and the shop's", sidecars)
	}

	// Services: each selects one workload, by ports it has.
	for _, svc := range s.services {
		n := 0
		for wname, tmpl := range s.workloads {
			if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(tmpl.Labels)) {
				continue
			}
			n++
			for _, p := range svc.Spec.Ports {
				if !slices.ContainsFunc(tmpl.Spec.Containers[0].Ports, func(cp corev1.ContainerPort) bool { return cp.Name == p.TargetPort.StrVal }) {
					t.Errorf("Service %s: targetPort %q is no port of %s", svc.Name, p.TargetPort.StrVal, wname)
				}
			}
		}
		if n != 1 {
			t.Errorf("Service %s selects %d workloads, want 1", svc.Name, n)
		}
	}

	// The tail-sampling tier: a StatefulSet of 2+ behind a headless Service
	// of its serviceName, which the gateway's DNS resolver looks up.
	if len(s.statefulSets) != 1 {
		t.Fatalf("%d StatefulSets, want the tail-sampling tier", len(s.statefulSets))
	}
	sts := s.statefulSets[0]
	if sts.Spec.Replicas == nil || *sts.Spec.Replicas < 2 {
		t.Errorf("StatefulSet %s: replicas %v, want 2 or more", sts.Name, sts.Spec.Replicas)
	}
	headless := slices.IndexFunc(s.services, func(svc corev1.Service) bool { return svc.Name == sts.Spec.ServiceName })
	if headless < 0 || s.services[headless].Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("StatefulSet %s: serviceName %q is not a headless Service here (clusterIP: None): a virtual IP would spread one trace over the replicas", sts.Name, sts.Spec.ServiceName)
	}

	cfgs := map[string]otelcolConfig{}
	for name, cm := range s.configMaps {
		body, ok := cm.Data["otelcol.yaml"]
		if !ok {
			continue
		}
		var c otelcolConfig
		if err := kyaml.Unmarshal([]byte(body), &c); err != nil {
			t.Fatalf("ConfigMap %s: otelcol.yaml: %v", name, err)
		}
		cfgs[name] = c
		// Every traces pipeline starts with the memory limiter.
		for pname, p := range c.Service.Pipelines {
			if strings.HasPrefix(pname, "traces") && (len(p.Processors) == 0 || p.Processors[0] != "memory_limiter") {
				t.Errorf("ConfigMap %s: pipeline %s: processors %v, want memory_limiter first", name, pname, p.Processors)
			}
		}
		if c.Processors["memory_limiter"]["limit_mib"] == nil {
			t.Errorf("ConfigMap %s: memory_limiter has no limit_mib", name)
		}
		if bin := os.Getenv("OTELCOL_TIER_BIN"); bin != "" {
			path := filepath.Join(t.TempDir(), name+".yaml")
			os.WriteFile(path, []byte(body), 0o644)
			cmd := exec.Command(bin, "validate", "--config="+path)
			cmd.Env = append(os.Environ(), "POD_NAME=test-pod")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("ConfigMap %s: otelcol-tier validate: %v\n%s", name, err, out)
			}
		}
	}
	if os.Getenv("OTELCOL_TIER_BIN") == "" {
		t.Log("OTELCOL_TIER_BIN unset: the Collector configs were not run through otelcol-tier validate (OTELCOL_TIER_BIN=$(examples/sandbox/otelcol-tier.sh))")
	}

	gw := cfgs["otel-gateway-config"]
	lb := gw.Exporters["load_balancing"]
	dns, _ := lb["resolver"].(map[string]any)["dns"].(map[string]any)
	if lb["routing_key"] != "traceID" || dns["hostname"] != sts.Spec.ServiceName || dns["port"] != "4317" {
		t.Errorf("gateway: load_balancing %v, want routing_key traceID and the dns resolver on %s:4317", lb, sts.Spec.ServiceName)
	}
	ts := cfgs["otel-tail-sampling-config"]
	var types []string
	for _, p := range ts.Processors["tail_sampling"]["policies"].([]any) {
		pol := p.(map[string]any)
		types = append(types, pol["type"].(string))
		if pol["type"] == "string_attribute" {
			key := pol["string_attribute"].(map[string]any)["key"].(string)
			if !strings.Contains(s.configMaps["shop-tracehop"].Data["tracehop.yaml"], "tag: "+key) {
				t.Errorf("tail_sampling: policy %v keys on %q, which no route of the shop's sidecar tags", pol["name"], key)
			}
		}
	}
	for _, want := range []string{"status_code", "latency", "string_attribute", "probabilistic"} {
		if !slices.Contains(types, want) {
			t.Errorf("tail_sampling: policies %v, want a %s policy", types, want)
		}
	}
	if p := ts.Service.Pipelines["traces/spanmetrics"]; !slices.Contains(p.Exporters, "span_metrics") || slices.Contains(p.Processors, "tail_sampling") {
		t.Errorf("tail sampling: pipeline traces/spanmetrics %+v: want every span (no tail_sampling) into span_metrics", p)
	}

	// Probes, requests and a memory limit above the memory limiter's.
	for wname, tmpl := range s.workloads {
		c := tmpl.Spec.Containers[0]
		if c.ReadinessProbe == nil || c.LivenessProbe == nil {
			t.Errorf("%s: no readiness or liveness probe", wname)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s: resources %v: want a CPU request and a memory limit", wname, c.Resources)
		}
		cm := tmpl.Spec.Volumes[0].ConfigMap.Name
		limit, _ := cfgs[cm].Processors["memory_limiter"]["limit_mib"].(float64)
		if int64(limit)<<20 >= c.Resources.Limits.Memory().Value() {
			t.Errorf("%s: memory_limiter limit_mib %v is not below the container's limit %v", wname, limit, c.Resources.Limits.Memory())
		}
	}
}
