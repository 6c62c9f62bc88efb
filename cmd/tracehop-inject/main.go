// Command tracehop-inject is `tracehop inject`: Kubernetes YAML in, the
// same with the tracehop sidecar out (see package inject). It is a binary
// of its own, which tracehop runs from beside itself (as git runs git-NAME
// for `git NAME`), so that the Kubernetes API types stay out of the tracehop
// that runs in every Pod: linked in, they made it 10 MB larger and 4.4 MB
// larger in memory at start.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/internal/inject"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Exit codes, as tracehop's.
const (
	exitOK      = 0
	exitFailure = 1 // reading or writing failed
	exitUsage   = 2 // the command line is wrong
	exitInvalid = 3 // the manifests are refused
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("inject", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: tracehop inject [-f FILE] [flags] > injected.yaml\n\n"+
			"Adds the tracehop sidecar to the Pods, Deployments, StatefulSets, DaemonSets and ReplicaSets in\n"+
			"FILE (or standard input) and writes every document back; see deploy/kubernetes/README.md.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	def := inject.DefaultOptions()
	file := fs.String("f", "-", "the manifests: a YAML file of one or more documents ('-' for standard input)")
	image := fs.String("image", def.Image, "the sidecar's image")
	configMap := fs.String("configmap", "", "the ConfigMap with the sidecar's config under the key tracehop.yaml (default: NAME-tracehop, NAME being the workload's)")
	admin := fs.Int("admin-port", int(def.AdminPort), "the admin port (/ready, /healthz, /metrics): the config's admin address must listen on it, on 0.0.0.0")
	ports := fs.String("ports", "th-ingress=8100,th-egress=9100", "the config's listeners as NAME=PORT,...: declared on the sidecar and checked against the Pod's other ports")
	drain := fs.Duration("drain-timeout", def.DrainTimeout, "how long the sidecar drains requests and flushes spans after SIGTERM")
	cpu := fs.String("cpu-request", def.Resources.Requests.Cpu().String(), "the sidecar's CPU request")
	mem := fs.String("memory-request", def.Resources.Requests.Memory().String(), "the sidecar's memory request")
	memLimit := fs.String("memory-limit", def.Resources.Limits.Memory().String(), "the sidecar's memory limit")
	gomaxprocs := fs.Int("gomaxprocs", def.GOMAXPROCS, "GOMAXPROCS of the sidecar and its driver: the processors each uses (0: Go's default, the node's CPUs or the container's CPU limit)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "tracehop inject: unexpected argument %q (the manifests go in -f FILE or on standard input)\n", fs.Arg(0))
		return exitUsage
	}
	opts := def
	opts.Image, opts.ConfigMap, opts.AdminPort, opts.DrainTimeout, opts.Version = *image, *configMap, int32(*admin), *drain, core.Version
	if *gomaxprocs < 0 {
		fmt.Fprintf(stderr, "tracehop inject: -gomaxprocs: want 0 (Go's default) or more, got %d\n", *gomaxprocs)
		return exitUsage
	}
	opts.GOMAXPROCS = *gomaxprocs
	var err error
	if opts.Ports, err = inject.ParsePorts(*ports); err != nil {
		fmt.Fprintln(stderr, "tracehop inject: -ports:", err)
		return exitUsage
	}
	for flag, q := range map[string]string{"cpu-request": *cpu, "memory-request": *mem, "memory-limit": *memLimit} {
		v, err := resource.ParseQuantity(q)
		if err != nil {
			fmt.Fprintf(stderr, "tracehop inject: -%s: %q is not a Kubernetes quantity (such as 50m, 64Mi)\n", flag, q)
			return exitUsage
		}
		switch flag {
		case "cpu-request":
			opts.Resources.Requests[corev1.ResourceCPU] = v
		case "memory-request":
			opts.Resources.Requests[corev1.ResourceMemory] = v
		case "memory-limit":
			opts.Resources.Limits[corev1.ResourceMemory] = v
		}
	}
	source, in := "stdin", stdin
	if *file != "-" {
		f, err := os.Open(*file)
		if err != nil {
			fmt.Fprintln(stderr, "tracehop inject:", err)
			return exitUsage
		}
		defer f.Close()
		source, in = *file, f
	}
	src, err := io.ReadAll(in)
	if err != nil {
		fmt.Fprintf(stderr, "tracehop inject: reading %s: %v\n", source, err)
		return exitFailure
	}
	out, res, err := inject.Inject(src, source, opts)
	if err != nil {
		fmt.Fprintf(stderr, "tracehop inject: nothing written; fix these and run it again:\n  %s\n", strings.ReplaceAll(err.Error(), "\n", "\n  "))
		return exitInvalid
	}
	if _, err := stdout.Write(out); err != nil {
		fmt.Fprintln(stderr, "tracehop inject:", err)
		return exitFailure
	}
	for _, n := range res.Notes {
		fmt.Fprintln(stderr, "tracehop inject: note:", n)
	}
	if len(res.Injected) == 0 {
		fmt.Fprintf(stderr, "tracehop inject: no Pod, Deployment, StatefulSet, DaemonSet or ReplicaSet in %s: %d documents copied as they were\n", source, res.Copied)
		return exitOK
	}
	fmt.Fprintf(stderr, "tracehop inject: added the sidecar (%s) to %s; %d other documents copied as they were.\n"+
		"Each needs a ConfigMap with its config under the key tracehop.yaml (admin on 0.0.0.0:%d); see deploy/kubernetes/README.md\n",
		opts.Image, strings.Join(res.Injected, ", "), res.Copied, opts.AdminPort)
	return exitOK
}
