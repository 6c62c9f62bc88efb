package main

import (
	"bytes"
	"strings"
	"testing"
)

// tracehop inject as a user runs it: -f FILE or stdin, the result on
// stdout, what happened on stderr, and the exit code.
func TestInjectCommand(t *testing.T) {
	cases := []struct {
		name   string
		args   []string
		stdin  string
		code   int
		stdout []string
		stderr []string
	}{
		{"file", []string{"inject", "-f", "../../internal/inject/testdata/apps.yaml"}, "", exitOK,
			[]string{"- name: tracehop\n", "kind: Widget"},
			[]string{"added the sidecar (localhost/tracehop:latest) to Deployment store/shop, StatefulSet ledger, Pod one-off; 3 other documents", "note: Deployment store/shop: raised terminationGracePeriodSeconds"}},
		{"stdin and flags", []string{"inject", "-image", "registry.example/tracehop:1.0", "-configmap", "shared", "-ports", "in=7000", "-admin-port", "7901", "-memory-limit", "64Mi"},
			"apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: app, image: x, ports: [{containerPort: 9901}]}]\n", exitOK,
			[]string{"image: registry.example/tracehop:1.0", "name: shared", "containerPort: 7000", "containerPort: 7901", "memory: 64Mi", "prometheus.io/port: \"7901\""},
			[]string{"added the sidecar (registry.example/tracehop:1.0) to Pod p"}},
		{"refused", []string{"inject", "-f", "../../internal/inject/testdata/bad_port_clash.yaml"}, "", exitInvalid, nil,
			[]string{"nothing written; fix these and run it again:\n  ../../internal/inject/testdata/bad_port_clash.yaml: document 1 (Deployment shop): container \"app\" uses port 9901"}},
		{"nothing to inject", []string{"inject"}, "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n", exitOK,
			[]string{"apiVersion: v1\nkind: Service\nmetadata: {name: s}\n"}, []string{"no Pod, Deployment, StatefulSet, DaemonSet or ReplicaSet in stdin: 1 documents copied"}},
		{"bad ports", []string{"inject", "-ports", "8100"}, "", exitUsage, nil, []string{`-ports: "8100": want NAME=PORT`}},
		{"bad quantity", []string{"inject", "-cpu-request", "lots"}, "", exitUsage, nil, []string{`-cpu-request: "lots" is not a Kubernetes quantity`}},
		{"no file", []string{"inject", "-f", "nosuch.yaml"}, "", exitUsage, nil, []string{"open nosuch.yaml: no such file or directory"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(c.args[1:], strings.NewReader(c.stdin), &stdout, &stderr)
			if code != c.code {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", code, c.code, stderr.String())
			}
			if c.stdout == nil && stdout.Len() > 0 {
				t.Errorf("wrote to stdout when it should not:\n%s", stdout.String())
			}
			for _, w := range c.stdout {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout.String())
				}
			}
			for _, w := range c.stderr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
				}
			}
		})
	}
}
