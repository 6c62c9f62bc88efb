package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/tracehop/tracehop/internal/inject"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	kjson "sigs.k8s.io/json"
	kyaml "sigs.k8s.io/yaml"
)

// What make k8s-tiers plays: the committed Collector manifests as podman
// takes them, and the application Pods with their sidecars.

// tiersPlay is a played topology: its kube play files, in play order.
type tiersPlay struct {
	work  string
	files []string
	log   func(string, ...any)
}

func (p *tiersPlay) down() {
	for i := len(p.files) - 1; i >= 0; i-- {
		f := filepath.Join(p.work, p.files[i])
		p.log("podman kube down %s", p.files[i])
		if out, err := exec.Command("podman", "kube", "down", f).CombinedOutput(); err != nil {
			p.log("podman kube down %s: %v: %s", p.files[i], err, out)
		}
		if b, err := os.ReadFile(f); err == nil {
			removeConfigMapVolumes(b, p.log)
		}
	}
	os.RemoveAll(p.work)
}

// podsFrom reads a manifest file of ConfigMaps, Deployments and
// StatefulSets (Services are left out: podman has none) and returns it as
// podman kube play takes it: each workload as its replicas' Pods, named as
// a cluster names them (NAME-0, NAME-1, ...; a one-replica Deployment as
// NAME, which is how its Service's name resolves), with the named ports in
// publish bound to 127.0.0.1 at that port plus the replica's index.
func podsFrom(file string, publish map[string]int32) ([]byte, []string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, err
	}
	var out, names []string
	for i, doc := range strings.Split(string(b), "\n---\n") {
		var meta struct{ Kind string }
		if err := kyaml.Unmarshal([]byte(doc), &meta); err != nil {
			return nil, nil, fmt.Errorf("%s: document %d: %w", file, i+1, err)
		}
		js, err := kyaml.YAMLToJSONStrict([]byte(doc))
		if err != nil {
			return nil, nil, fmt.Errorf("%s: document %d: %w", file, i+1, err)
		}
		var name string
		var replicas int32 = 1
		indexed := false // NAME-K even for one replica: a StatefulSet's Pods
		var tmpl corev1.PodTemplateSpec
		decode := func(v any) error {
			if strict, err := kjson.UnmarshalStrict(js, v); err != nil || len(strict) > 0 {
				return fmt.Errorf("%s: document %d: %v %v", file, i+1, err, strict)
			}
			return nil
		}
		switch meta.Kind {
		case "ConfigMap":
			out = append(out, doc)
			continue
		case "Service":
			continue
		case "Deployment":
			var d appsv1.Deployment
			if err := decode(&d); err != nil {
				return nil, nil, err
			}
			name, tmpl = d.Name, d.Spec.Template
			if d.Spec.Replicas != nil {
				replicas = *d.Spec.Replicas
			}
		case "StatefulSet":
			var s appsv1.StatefulSet
			if err := decode(&s); err != nil {
				return nil, nil, err
			}
			name, tmpl = s.Name, s.Spec.Template
			if s.Spec.Replicas != nil {
				replicas = *s.Spec.Replicas
			}
			indexed = true
		default:
			return nil, nil, fmt.Errorf("%s: document %d: kind %q: add it to podsFrom", file, i+1, meta.Kind)
		}
		for k := range replicas {
			pod := corev1.Pod{ObjectMeta: *tmpl.ObjectMeta.DeepCopy(), Spec: *tmpl.Spec.DeepCopy()}
			pod.APIVersion, pod.Kind, pod.Name = "v1", "Pod", name
			if indexed || replicas > 1 {
				pod.Name = fmt.Sprintf("%s-%d", name, k)
			}
			for ci := range pod.Spec.Containers {
				for pi := range pod.Spec.Containers[ci].Ports {
					p := &pod.Spec.Containers[ci].Ports[pi]
					if base, ok := publish[p.Name]; ok {
						p.HostPort, p.HostIP = base+k, "127.0.0.1"
					}
				}
			}
			pb, err := kyaml.Marshal(&pod)
			if err != nil {
				return nil, nil, err
			}
			out = append(out, string(pb))
			names = append(names, pod.Name)
		}
	}
	played, err := ForPodman([]byte(strings.Join(out, "\n---\n")), nil)
	return played, names, err
}

// tiersSidecar is the sidecars' config: ingress to the app (the checkout
// route tagged for the tail-sampling tier's policy), for the front Pods an
// egress to their back Pod, and spans to the gateway tier over OTLP.
func tiersSidecar(name string, egress bool, gateway string, head float64) string {
	traceresponse := "" // how the load learns the ids of the traces the sidecar starts
	if head > 0 {
		traceresponse = "        traceresponse: true\n"
	}
	s := `apiVersion: v1
kind: ConfigMap
metadata:
  name: ` + name + `
data:
  tracehop.yaml: |
    node: {id: "${POD_NAME}", service: "${POD_NAME}", zone: kubernetes}
    admin: {address: "0.0.0.0:9901"}
    listeners:
      - name: ingress
        address: "0.0.0.0:8100"
        direction: ingress
` + traceresponse + `        routes:
          - match: {prefix: /trace/checkout}
            cluster: app
            tracing: {custom_tags: [{tag: route, literal: checkout}]}
          - {match: {prefix: /}, cluster: app}
`
	if egress {
		s += `      - name: egress
        address: "127.0.0.1:9100"
        direction: egress
        routes: [{match: {prefix: /}, cluster: next}]
`
	}
	s += `    clusters:
      - {name: app, endpoints: ["127.0.0.1:8080"]}
`
	if egress {
		s += `      - {name: next, endpoints: ["${NEXT_POD}:8100"]}
`
	}
	s += `    tracing:
`
	if head > 0 {
		s += fmt.Sprintf("      sampling: {random: %g}\n", head)
	}
	s += `      driver:
        name: otlp
        config: {endpoint: "` + gateway + `:4317", tls: {insecure: true}}
`
	return s
}

// tiersApps is the application Pods with their sidecars injected: tiers-i
// for i below half call tiers-(i+half) through their egress. The front
// Pods' sidecars send to the first gateway replica and the back Pods' to
// the second, so that every trace's spans reach the tail-sampling tier
// through two gateways, which must route its trace id alike. (Through the
// alias otel-gateway every sidecar would take its first address, one
// gateway; in a cluster the Service's virtual IP spreads the connections.)
func tiersApps(n int, gateways []string, head float64) ([]byte, error) {
	half := n / 2
	docs := []string{tiersSidecar("tiers-front-tracehop", true, gateways[0], head), tiersSidecar("tiers-back-tracehop", false, gateways[len(gateways)-1], 0)}
	var inj []byte
	for _, role := range []string{"front", "back"} {
		var pods []string
		for i := range n {
			if (i < half) != (role == "front") {
				continue
			}
			next := ""
			if role == "front" {
				next = `, -next, "http://127.0.0.1:9100/trace/2"`
			}
			pods = append(pods, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: tiers-%d
spec:
  containers:
    - name: app
      image: localhost/tracehop-sandbox-app:latest
      imagePullPolicy: IfNotPresent
      command: [sandbox-service, -listen, "127.0.0.1:8080", -name, "%d"%s]
`, i, i, next))
		}
		opts := inject.DefaultOptions()
		opts.ConfigMap = "tiers-" + role + "-tracehop"
		out, _, err := inject.Inject([]byte(strings.Join(pods, "\n---\n")), "tiers", opts)
		if err != nil {
			return nil, err
		}
		inj = append(append(inj, out...), "\n---\n"...)
	}
	var out []string
	for _, d := range strings.Split(strings.TrimSuffix(string(inj), "\n---\n"), "\n---\n") {
		var pod corev1.Pod
		js, err := kyaml.YAMLToJSONStrict([]byte(d))
		var strict []error
		if err == nil {
			strict, err = kjson.UnmarshalStrict(js, &pod)
		}
		if err != nil || len(strict) > 0 {
			return nil, fmt.Errorf("injected pod: %v %v", err, strict)
		}
		i, _ := strconv.Atoi(strings.TrimPrefix(pod.Name, "tiers-"))
		for ci := range pod.Spec.Containers {
			c := &pod.Spec.Containers[ci]
			if c.Name == "tracehop" && i < half {
				c.Env = append(c.Env, corev1.EnvVar{Name: "NEXT_POD", Value: fmt.Sprintf("tiers-%d", i+half)})
			}
			for pi := range c.Ports {
				p := &c.Ports[pi]
				switch p.Name {
				case "th-ingress":
					p.HostPort, p.HostIP = int32(tiersIngressBase+i), "127.0.0.1"
				case "tracehop-admin":
					p.HostPort, p.HostIP = int32(tiersAdminBase+i), "127.0.0.1"
				}
			}
		}
		b, err := kyaml.Marshal(&pod)
		if err != nil {
			return nil, err
		}
		out = append(out, string(b))
	}
	return ForPodman([]byte(strings.Join(append(docs, out...), "\n---\n")), nil)
}
