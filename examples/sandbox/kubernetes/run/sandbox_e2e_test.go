//go:build e2e

package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// The Kubernetes sandbox in podman (make e2e): the images built from this
// tree, the committed manifests, inject's, and deploy/kubernetes's, each
// checked in Jaeger, and every Pod removed after. Needs podman (and runc), which .ci/run installs.
func TestE2EKubernetesSandbox(t *testing.T) {
	root, _ := filepath.Abs("../../../..")
	for _, img := range []string{"tracehop", "sandbox-app", "jaeger"} {
		cmd := exec.Command(filepath.Join(root, "deploy/image.sh"), img)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("deploy/image.sh %s: %v\n%s", img, err, out)
		}
	}
	bin := t.TempDir()
	tracehop := filepath.Join(bin, "tracehop") // runs tracehop-inject from beside it
	for _, pkg := range []string{"tracehop", "tracehop-inject"} {
		if out, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", filepath.Join(bin, pkg), "github.com/tracehop/tracehop/cmd/"+pkg).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	for _, tc := range []struct {
		name      string
		inject    bool
		propagate string
		deploy    string
	}{
		{"sandbox.yaml/propagate=all", false, "all", ""},
		{"sandbox.yaml/propagate=false", false, "false", ""},
		{"inject/propagate=all", true, "all", ""},
		{"deploy/kubernetes", false, "all", "../../../../deploy/kubernetes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{Dir: "..", Inject: tc.inject, Deploy: tc.deploy, Tracehop: tracehop, Propagate: tc.propagate,
				FrontPort: freePort(t), JaegerPort: freePort(t), Log: t.Logf}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			sb, err := Play(ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := sb.Down(context.Background()); err != nil {
					t.Error(err)
				}
				for _, p := range sb.pods {
					if exec.Command("podman", "pod", "exists", p).Run() == nil {
						t.Errorf("pod %s is still there after podman kube down", p)
					}
				}
			}()
			traces, err := sb.Check(ctx)
			if err != nil {
				sb.DumpLogs(os.Stderr)
				t.Fatal(err)
			}
			t.Log(sb.Summary(traces))
		})
	}
}

// freePort returns a port below the ephemeral range that is free now.
func freePort(t *testing.T) int {
	t.Helper()
	for p := 20000 + os.Getpid()%5000; p < 32000; p += 7 {
		if ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p)); err == nil {
			ln.Close()
			if p != lastPort {
				lastPort = p
				return p
			}
		}
	}
	t.Fatal("no free port")
	return 0
}

var lastPort int

// The Collector tiers in podman, short (make e2e): deploy/kubernetes/tiers's
// gateway and two tail-sampling replicas between 4 app Pods' sidecars and
// Jaeger, 20 s of load, every strict check of make k8s-tiers (failing, slow
// and checkout traces kept whole by one replica, the probabilistic rest in
// its tolerance, spanmetrics counting every request). No replica is killed:
// make k8s-tiers measures that. The tier Collector's image comes from
// $OTELCOL_TIER_BIN, or examples/sandbox/otelcol-tier.sh builds it.
func TestE2EKubernetesTiers(t *testing.T) {
	root, _ := filepath.Abs("../../../..")
	for _, img := range []string{"tracehop", "sandbox-app", "jaeger", "otelcol-tier"} {
		cmd := exec.Command(filepath.Join(root, "deploy/image.sh"), img)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("deploy/image.sh %s: %v\n%s", img, err, out)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	err := Tiers(ctx, TiersConfig{Deploy: filepath.Join(root, "deploy/kubernetes"), Pods: 4, Rate: 20, Duration: 20 * time.Second, Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"jaeger", "otel-gateway-0", "otel-tail-sampling-0", "tiers-0"} {
		if exec.Command("podman", "pod", "exists", p).Run() == nil {
			t.Errorf("pod %s is still there after podman kube down", p)
		}
	}
}
