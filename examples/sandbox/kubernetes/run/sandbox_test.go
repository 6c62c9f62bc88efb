package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	kjson "sigs.k8s.io/json"
	kyaml "sigs.k8s.io/yaml"
)

// sandbox.yaml is sandbox-apps.yaml through tracehop inject, byte for byte:
// the manifests the demo plays are the ones inject makes.
func TestSandboxManifestIsInjected(t *testing.T) {
	gocmd := filepath.Join(runtime.GOROOT(), "bin", "go")
	cmd := exec.Command(gocmd, "run", "github.com/tracehop/tracehop/cmd/tracehop-inject", "-f", "../sandbox-apps.yaml")
	got, err := cmd.Output()
	if err != nil {
		t.Fatalf("tracehop inject: %v", err)
	}
	want, err := os.ReadFile("../sandbox.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("sandbox.yaml is not what tracehop inject makes of sandbox-apps.yaml; regenerate it:\n  go run ./cmd/tracehop-inject -f examples/sandbox/kubernetes/sandbox-apps.yaml > examples/sandbox/kubernetes/sandbox.yaml")
	}
}

// ForPodman keeps only hostPorts (moved as asked), numbers the probes'
// named ports and leaves other documents alone.
func TestForPodman(t *testing.T) {
	in, err := os.ReadFile("../sandbox.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out, err := ForPodman(in, map[int32]int32{8000: 18000, 16686: 26686})
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(string(out), "\n---\n")
	if n := len(strings.Split(string(in), "\n---\n")); len(docs) != n {
		t.Fatalf("%d documents, want %d", len(docs), n)
	}
	hostPorts := map[string][]int32{}
	for _, doc := range docs {
		if !strings.Contains(doc, "kind: Pod\n") {
			if !strings.Contains(string(in), doc) {
				t.Errorf("a document that is not a Pod changed:\n%s", doc)
			}
			continue
		}
		js, err := kyaml.YAMLToJSONStrict([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		var pod corev1.Pod
		if strict, err := kjson.UnmarshalStrict(js, &pod); err != nil || len(strict) > 0 {
			t.Fatalf("%v %v", err, strict)
		}
		for _, c := range pod.Spec.Containers {
			for _, p := range c.Ports {
				hostPorts[pod.Name] = append(hostPorts[pod.Name], p.HostPort)
			}
			if pr := c.ReadinessProbe; pr != nil && pr.HTTPGet.Port.IntValue() == 0 {
				t.Errorf("%s/%s: readiness probe port %s is not a number", pod.Name, c.Name, pr.HTTPGet.Port.String())
			}
		}
	}
	if got := len(hostPorts); got != 2 || hostPorts["front-proxy"][0] != 18000 || hostPorts["jaeger"][0] != 26686 {
		t.Errorf("ports left: %v, want only front-proxy's 18000 and jaeger's 26686", hostPorts)
	}
}

// A Deployment is played as one Pod of its name, with its template; a
// Namespace is left out; a Service is copied.
func TestForPodmanDeployment(t *testing.T) {
	var in []byte
	for _, f := range []string{"namespace.yaml", "front-proxy.yaml"} {
		b, err := os.ReadFile(filepath.Join("../../../../deploy/kubernetes", f))
		if err != nil {
			t.Fatal(err)
		}
		in = append(append(in, b...), "---\n"...)
	}
	out, err := ForPodman(in[:len(in)-len("---\n")], nil)
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(string(out), "\n---\n")
	if len(docs) != 3 || strings.Contains(string(out), "kind: Namespace") || strings.Contains(string(out), "kind: Deployment") {
		t.Fatalf("want the ConfigMap, a Pod and the Service, got %d documents:\n%s", len(docs), out)
	}
	js, err := kyaml.YAMLToJSONStrict([]byte(docs[1]))
	if err != nil {
		t.Fatal(err)
	}
	var pod corev1.Pod
	if strict, err := kjson.UnmarshalStrict(js, &pod); err != nil || len(strict) > 0 {
		t.Fatalf("%v %v\n%s", err, strict, docs[1])
	}
	if pod.Kind != "Pod" || pod.Name != "front-proxy" || pod.Labels["app"] != "front-proxy" || pod.Annotations["tracehop.io/inject"] != "disabled" ||
		len(pod.Spec.Containers) != 1 || pod.Spec.Containers[0].ReadinessProbe.HTTPGet.Port.IntValue() != 9901 || len(pod.Spec.Containers[0].Ports) != 0 {
		t.Errorf("the Pod: %+v", pod)
	}
	if !strings.Contains(docs[2], "kind: Service") {
		t.Errorf("the Service is not copied:\n%s", docs[2])
	}
}
