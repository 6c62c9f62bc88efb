package inject_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tracehop/tracehop/internal/inject"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	kjson "sigs.k8s.io/json"
	kyaml "sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite testdata/*.injected.yaml from this run")

func options() inject.Options {
	o := inject.DefaultOptions()
	o.Version = "test"
	return o
}

// The good fixtures against their golden output, and the output read back
// through the API types: the sidecar as a Pod needs it, everything else
// as it was.
func TestInjectGolden(t *testing.T) {
	in, err := os.ReadFile("testdata/apps.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out, res, err := inject.Inject(in, "apps.yaml", options())
	if err != nil {
		t.Fatal(err)
	}
	golden := "testdata/apps.injected.yaml"
	if *update {
		if err := os.WriteFile(golden, out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, want) {
		t.Errorf("output differs from %s (go test -update rewrites it; check the diff):\n%s", golden, out)
	}
	if got := strings.Join(res.Injected, ", "); got != "Deployment store/shop, StatefulSet ledger, Pod one-off" || res.Copied != 3 {
		t.Errorf("injected %q, copied %d", got, res.Copied)
	}
	if len(res.Notes) != 1 || !strings.Contains(res.Notes[0], "raised terminationGracePeriodSeconds from 10 to 25") {
		t.Errorf("notes %q", res.Notes)
	}

	docs := strings.Split(string(out), "\n---\n")
	inDocs := strings.Split(string(in), "\n---\n")
	if len(docs) != 6 {
		t.Fatalf("%d documents out, want 6", len(docs))
	}
	for _, i := range []int{0, 4, 5} { // the Service, the Widget, the opted-out Pod
		if docs[i] != inDocs[i] {
			t.Errorf("document %d changed:\n%s\nwas:\n%s", i+1, docs[i], inDocs[i])
		}
	}
	var d appsv1.Deployment
	decode(t, docs[1], &d)
	checkSidecar(t, "Deployment", d.Spec.Template, "shop-tracehop")
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 || d.Spec.Template.Labels["app"] != "shop" || d.Spec.Template.Annotations["team"] != "checkout" {
		t.Errorf("the Deployment's own fields changed: %+v", d.Spec)
	}
	if app := d.Spec.Template.Spec.Containers[0]; app.Name != "app" || app.Image != "registry.example/shop:1.4" || app.Env[0].Value != "http://127.0.0.1:9100/stock" {
		t.Errorf("the application container changed: %+v", app)
	}
	if !strings.Contains(docs[1], "labels: {app: shop} # the Service selects these") {
		t.Errorf("the comment in the Deployment is lost:\n%s", docs[1])
	}
	var s appsv1.StatefulSet
	decode(t, docs[2], &s)
	checkSidecar(t, "StatefulSet", s.Spec.Template, "ledger-tracehop")
	var p corev1.Pod
	decode(t, docs[3], &p)
	checkSidecar(t, "Pod", corev1.PodTemplateSpec{ObjectMeta: p.ObjectMeta, Spec: p.Spec}, "one-off-tracehop")

	// Injecting the output again is refused, for each workload.
	_, _, err = inject.Inject(out, "again.yaml", options())
	if !errors.Is(err, inject.ErrAlreadyInjected) || strings.Count(err.Error(), "already has the tracehop sidecar") != 3 {
		t.Errorf("injecting twice: %v", err)
	}
}

func decode(t *testing.T, doc string, into any) {
	t.Helper()
	js, err := kyaml.YAMLToJSONStrict([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	strict, err := kjson.UnmarshalStrict(js, into)
	if err != nil || len(strict) > 0 {
		t.Fatalf("the output does not decode strictly: %v %v\n%s", err, strict, doc)
	}
}

func checkSidecar(t *testing.T, kind string, tmpl corev1.PodTemplateSpec, configMap string) {
	t.Helper()
	cs := tmpl.Spec.Containers
	if len(cs) != 2 || cs[1].Name != "tracehop" {
		t.Fatalf("%s: containers %d, want the app's and tracehop", kind, len(cs))
	}
	c := cs[1]
	if c.Image != "localhost/tracehop:latest" || strings.Join(c.Args, " ") != "run -c /etc/tracehop/tracehop.yaml -log-format json -drain-timeout 15s" {
		t.Errorf("%s: image %s args %q", kind, c.Image, c.Args)
	}
	env := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			env[e.Name] = "field " + e.ValueFrom.FieldRef.FieldPath
		} else {
			env[e.Name] = e.Value
		}
	}
	if env["POD_NAME"] != "field metadata.name" || env["GOMAXPROCS"] != "1" || len(c.Env) != 2 {
		t.Errorf("%s: env %v, want POD_NAME from metadata.name and GOMAXPROCS 1", kind, env)
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/ready" || c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" ||
		c.ReadinessProbe.HTTPGet.Port.StrVal != "tracehop-admin" {
		t.Errorf("%s: probes %+v %+v", kind, c.ReadinessProbe, c.LivenessProbe)
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["tracehop-admin"] != 9901 || ports["th-ingress"] != 8100 || ports["th-egress"] != 9100 {
		t.Errorf("%s: ports %v", kind, ports)
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil || c.Lifecycle.PreStop.Sleep.Seconds != 5 {
		t.Errorf("%s: preStop %+v", kind, c.Lifecycle)
	}
	if g := tmpl.Spec.TerminationGracePeriodSeconds; g == nil || *g != 25 {
		t.Errorf("%s: terminationGracePeriodSeconds %v, want 25 (5s preStop, 15s drain, 5s spare)", kind, g)
	}
	sc := c.SecurityContext
	if sc == nil || !*sc.RunAsNonRoot || !*sc.ReadOnlyRootFilesystem || *sc.RunAsUser != 65532 {
		t.Errorf("%s: securityContext %+v", kind, sc)
	}
	vols := map[string]corev1.Volume{}
	for _, v := range tmpl.Spec.Volumes {
		vols[v.Name] = v
	}
	if v := vols["tracehop-config"]; v.ConfigMap == nil || v.ConfigMap.Name != configMap {
		t.Errorf("%s: config volume %+v, want the ConfigMap %s", kind, v, configMap)
	}
	if v := vols["tracehop-tmp"]; v.EmptyDir == nil {
		t.Errorf("%s: no emptyDir for /tmp", kind)
	}
	a := tmpl.Annotations
	if a["prometheus.io/scrape"] != "true" || a["prometheus.io/port"] != "9901" || a["prometheus.io/path"] != "/metrics" || a["tracehop.io/injected"] != "test" {
		t.Errorf("%s: annotations %v", kind, a)
	}
}

// Each bad fixture is refused whole, with exactly these messages.
func TestInjectRefuses(t *testing.T) {
	cases := []struct {
		file string
		want []string
	}{
		{"bad_unknown_field.yaml", []string{`bad_unknown_field.yaml: document 1 (Deployment shop): unknown field "spec.template.metadata.lables"; unknown field "spec.template.spec.contaners" (fix the field's name: see kubectl explain)`}},
		{"bad_already_injected.yaml", []string{`bad_already_injected.yaml: document 1 (Pod shop): already has the tracehop sidecar (a container named "tracehop"): leave this document out, or remove that container first`}},
		{"bad_port_clash.yaml", []string{`bad_port_clash.yaml: document 1 (Deployment shop): container "app" uses port 9901, which the sidecar's tracehop-admin needs (containers in a Pod share its ports): move it, or give tracehop other ports with -ports/-admin-port and the same in its config; container "app" has a port named "th-ingress", which the sidecar's port takes: rename one (-ports NAME=PORT)`}},
		{"bad_old_apiversion.yaml", []string{`bad_old_apiversion.yaml: document 1 (Deployment shop): apiVersion "extensions/v1beta1": tracehop inject reads Deployment as apps/v1; convert the manifest to that apiVersion`}},
		{"bad_duplicate_field.yaml", []string{`bad_duplicate_field.yaml: document 1 (Pod shop): cannot read it: yaml: unmarshal errors:`, `  line 7: key "containers" already set in map`}},
		{"bad_no_containers.yaml", []string{`bad_no_containers.yaml: document 1 (Pod empty): its Pod has no containers: the sidecar goes beside an application (a Pod needs at least one container)`}},
		{"bad_two_documents.yaml", []string{
			`bad_two_documents.yaml: document 2 (Pod a): already has the tracehop sidecar (annotation tracehop.io/injected: "v0.9.0"): leave this document out, or remove the sidecar first`,
			`bad_two_documents.yaml: document 3 (Pod b): container "app" uses port 8100, which the sidecar's th-ingress needs (containers in a Pod share its ports): move it, or give tracehop other ports with -ports/-admin-port and the same in its config`}},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			in, err := os.ReadFile(filepath.Join("testdata", c.file))
			if err != nil {
				t.Fatal(err)
			}
			out, _, err := inject.Inject(in, c.file, options())
			if err == nil || out != nil {
				t.Fatalf("accepted; output:\n%s", out)
			}
			if got, want := err.Error(), strings.Join(c.want, "\n"); got != want {
				t.Errorf("error:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func TestParsePorts(t *testing.T) {
	for _, c := range []struct{ in, want, err string }{
		{"th-ingress=8100,th-egress=9100", "[{th-ingress 8100} {th-egress 9100}]", ""},
		{"in=80", "[{in 80}]", ""},
		{"in=0", "", `"in=0": want NAME=PORT, the port between 1 and 65535 (for example th-ingress=8100)`},
		{"8100", "", `"8100": want NAME=PORT, the port between 1 and 65535 (for example th-ingress=8100)`},
		{"Ingress=8100", "", `"Ingress": a port name has at most 15 characters, lower-case letters, digits and '-', and a letter`},
		{"a-very-long-port-name=1", "", `"a-very-long-port-name": a port name has at most 15 characters, lower-case letters, digits and '-', and a letter`},
	} {
		got, err := inject.ParsePorts(c.in)
		if e := ""; err != nil {
			e = err.Error()
			if e != c.err {
				t.Errorf("%s: error %q, want %q", c.in, e, c.err)
			}
			continue
		}
		if c.err != "" {
			t.Errorf("%s: accepted, want %q", c.in, c.err)
		}
		if s := fmt.Sprint(got); s != c.want {
			t.Errorf("%s: %s, want %s", c.in, s, c.want)
		}
	}
}

// A manifest written in flow style gets the sidecar in flow style, and it
// reads back as the same Pod.
func TestInjectFlowStyle(t *testing.T) {
	in := "apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {a: b}}\nspec: {containers: [{name: app, image: x}]}\n"
	out, _, err := inject.Inject([]byte(in), "flow.yaml", options())
	if err != nil {
		t.Fatal(err)
	}
	var p corev1.Pod
	decode(t, string(out), &p)
	checkSidecar(t, "Pod", corev1.PodTemplateSpec{ObjectMeta: p.ObjectMeta, Spec: p.Spec}, "p-tracehop")
	if p.Labels["a"] != "b" || p.Spec.Containers[0].Image != "x" {
		t.Errorf("the Pod's own fields changed:\n%s", out)
	}
}

// GOMAXPROCS 0 leaves the sidecar's processors to Go's default.
func TestInjectWithoutGOMAXPROCS(t *testing.T) {
	opts := options()
	opts.GOMAXPROCS = 0
	out, _, err := inject.Inject([]byte("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: app, image: x}]}\n"), "p.yaml", opts)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "GOMAXPROCS") {
		t.Errorf("GOMAXPROCS set with 0:\n%s", out)
	}
}
