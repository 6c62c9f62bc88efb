// Command run plays the Kubernetes sandbox (examples/sandbox/kubernetes) in
// podman: `podman kube play` starts its Pods (front proxy, service1 and
// service2 each with a tracehop sidecar, Jaeger) on a podman network with
// DNS, run sends the seed's request, checks the trace through Jaeger's query
// API and draws it, then `podman kube down` removes everything. `make
// k8s-demo` runs it; the e2e test in this folder runs it in every mode.
//
// With -inject it plays sandbox-apps.yaml through `tracehop inject` instead
// of the committed sandbox.yaml; with -propagate false service1's
// application forwards no trace headers and the check wants two traces;
// with -deploy deploy/kubernetes it plays the production-shaped manifests
// and wants one trace over the front proxy and the shop.
//
// With -scale N it loads N application Pods and measures their sidecars
// (make k8s-scale); with -tiers N it plays N application Pods whose sidecars
// send to deploy/kubernetes/tiers's Collector tiers (gateway, tail sampling)
// and checks in Jaeger what the tiers keep (make k8s-tiers, tiers.go).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/tracehop/tracehop/cmd/tracehop/traceview"
)

func main() {
	var c Config
	flag.StringVar(&c.Dir, "dir", "examples/sandbox/kubernetes", "the folder with sandbox.yaml, sandbox-apps.yaml and settings.yaml")
	flag.BoolVar(&c.Inject, "inject", false, "play sandbox-apps.yaml through `tracehop inject` instead of sandbox.yaml")
	flag.StringVar(&c.Deploy, "deploy", "", "play this folder's deploy/kubernetes manifests (Jaeger, the front proxy, the shop; Deployments played as one Pod each) instead of the sandbox")
	flag.StringVar(&c.Tracehop, "tracehop", "bin/tracehop", "with -inject: the tracehop binary that injects")
	flag.StringVar(&c.Propagate, "propagate", "all", "what service1's application forwards: all, false (the trace splits in two) or request-id")
	flag.IntVar(&c.FrontPort, "front-port", 8000, "the host port (on 127.0.0.1) of the front proxy")
	flag.IntVar(&c.JaegerPort, "jaeger-port", 16686, "the host port (on 127.0.0.1) of Jaeger's UI and query API")
	keep := flag.Bool("keep", false, "leave the sandbox running until Ctrl-C, then take it down")
	scale := flag.Int("scale", 0, "instead of the sandbox: this many application Pods with injected sidecars, all loaded at once, measured (CPU, RSS, spans) for docs/deploying.md")
	rate := flag.Int("rate", 100, "with -scale: requests per second to each Pod; with -tiers: to each front Pod")
	duration := flag.Duration("duration", 30*time.Second, "with -scale or -tiers: how long the load lasts (with -tiers: the steady phase)")
	down := flag.Duration("collector-down", 0, "with -scale: stop Jaeger for this long, a quarter into the load")
	tiers := flag.Int("tiers", 0, "instead of the sandbox: this many application Pods (even: the first half call the second) with sidecars sending to deploy/kubernetes/tiers's Collector tiers, loaded with failing, slow and plain requests, checked in Jaeger")
	head := flag.Float64("head", 0, "with -tiers: the front sidecars head-sample at this percentage (0: every request traced); the tier's spanmetrics extrapolate from tracehop's ot=th")
	kill := flag.Duration("kill", 0, "with -tiers: a second phase of this long in which one tail-sampling replica is killed a third in and started again at two thirds; what it costs is measured")
	flag.Parse()
	c.Log = func(format string, args ...any) {
		fmt.Printf("==> "+format+"\n", args...)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *tiers > 0 {
		deploy := c.Deploy
		if deploy == "" {
			deploy = "deploy/kubernetes"
		}
		err := Tiers(ctx, TiersConfig{Deploy: deploy, Pods: *tiers, Rate: *rate, Duration: *duration, Kill: *kill > 0, KillDuration: *kill, Head: *head, Log: c.Log})
		if err != nil {
			fmt.Fprintln(os.Stderr, "k8s-tiers:", err)
			os.Exit(1)
		}
		return
	}
	if *scale > 0 {
		if err := Scale(ctx, ScaleConfig{Dir: c.Dir, Pods: *scale, Rate: *rate, Duration: *duration, CollectorDown: *down, Log: c.Log}); err != nil {
			fmt.Fprintln(os.Stderr, "k8s-scale:", err)
			os.Exit(1)
		}
		return
	}
	if abs, err := filepath.Abs(c.Tracehop); err == nil {
		c.Tracehop = abs
	}
	sb, err := Play(ctx, c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "k8s-demo:", err)
		os.Exit(1)
	}
	code := 0
	traces, err := sb.Check(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "k8s-demo: the check failed:", err)
		sb.DumpLogs(os.Stderr)
		code = 1
	} else {
		for _, t := range traces {
			traceview.Render(os.Stdout, []traceview.Trace{t}, traceview.Options{Width: 100})
		}
		c.Log("ok: %s", sb.Summary(traces))
	}
	if *keep && code == 0 {
		c.Log("the sandbox is up: curl %s/trace/1, traces at %s; Ctrl-C takes it down", sb.front, sb.jaeger)
		<-ctx.Done()
	}
	dctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := sb.Down(dctx); err != nil {
		fmt.Fprintln(os.Stderr, "k8s-demo:", err)
		code = 1
	}
	os.Exit(code)
}
