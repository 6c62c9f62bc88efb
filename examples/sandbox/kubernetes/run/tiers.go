package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tracehop/tracehop/internal/inject"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	kjson "sigs.k8s.io/json"
	kyaml "sigs.k8s.io/yaml"
)

// TiersConfig is make k8s-tiers: application Pods with injected sidecars
// whose otlp drivers send to deploy/kubernetes/tiers's Collector tiers
// (gateway -> tail sampling -> Jaeger), all played from the committed
// manifests, loaded with a known mix of requests and checked in Jaeger.
type TiersConfig struct {
	Deploy string // deploy/kubernetes: collector.yaml (Jaeger) and tiers/ (the Collectors)
	Pods   int    // application Pods, even: the first half call the second half
	Rate   int    // requests per second to each front Pod
	// Duration is the steady phase's load, checked strictly.
	Duration time.Duration
	// Kill adds a second phase of the same load for KillDuration: one
	// tail-sampling replica is killed a third into it and started again at
	// two thirds, and what that costs is measured.
	Kill         bool
	KillDuration time.Duration
	// Head, in percent (0: off, as 100), makes the front sidecars start the
	// traces and head-sample them at that rate (W3C randomness; they write
	// ot=th:... into the tracestate and onto their spans): the load then
	// sends no traceparent and learns each trace id from the traceresponse
	// header. The tier's spanmetrics scale each span by its adjusted count.
	Head float64
	Log  func(format string, args ...any)
}

// The request mix, in percent of each front Pod's requests (by request
// number, so the counts are exact): failing (the back app answers 500),
// slow (it sleeps 400ms, over the 250ms latency policy), on the checkout
// route (tagged route=checkout by the front sidecar), the rest plain.
const (
	failPct, slowPct, checkoutPct = 3, 3, 2
	slowSleep                     = 400 * time.Millisecond
	// restPct is the tail-sampling tier's probabilistic policy (its
	// ConfigMap says 10%); the run checks the kept share of plain traces
	// against it.
	restPct = 10.0
	// decisionWait is the tier's decision_wait (10s), plus the sidecars'
	// batch delay and the tier's own batching: when a trace's decision is
	// surely out.
	decisionWait = 10 * time.Second
	settle       = decisionWait + 8*time.Second
)

// Host ports (127.0.0.1) the run publishes: Jaeger's query API, each
// sidecar's ingress and admin, each Collector's own metrics (8888) and the
// tail-sampling replicas' spanmetrics (8889).
const (
	tiersJaegerPort  = 23687
	tiersIngressBase = 21100
	tiersAdminBase   = 22100
	gatewayMetrics   = 24000
	samplerMetrics   = 24100
	samplerSpanmet   = 24200
)

type reqKind int

const (
	plain reqKind = iota
	failing
	slow
	checkout
)

func (k reqKind) String() string { return [...]string{"plain", "failing", "slow", "checkout"}[k] }

// sent is one request of the load and what became of it.
type sent struct {
	traceID string
	kind    reqKind
	front   int
	at      time.Time
	status  int // 0: no answer
	took    time.Duration
	sampled bool // head-sampled (always, without TiersConfig.Head)
}

// keptTrace is what Jaeger has of one trace.
type keptTrace struct {
	spans    int
	services map[string]int // spans per service
	server   int            // SERVER spans
	errors   int            // spans with error=true
	maxDur   time.Duration
	replicas map[string]bool // the tail-sampling replicas that sent its spans
}

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

// Tiers plays the tiered topology, runs the load, prints the checks and
// the measurements, and takes everything down. It fails when a strict check
// fails.
func Tiers(ctx context.Context, c TiersConfig) error {
	if c.Pods < 2 || c.Pods%2 != 0 {
		return fmt.Errorf("-tiers %d: want an even number of Pods, at least 2 (the first half call the second)", c.Pods)
	}
	for _, img := range []string{"localhost/tracehop:latest", "localhost/tracehop-sandbox-app:latest", "localhost/tracehop-jaeger:latest", "localhost/tracehop-otelcol-tier:latest"} {
		if exec.CommandContext(ctx, "podman", "image", "exists", img).Run() != nil {
			return fmt.Errorf("image %s is missing: make k8s-tiers builds it (deploy/image.sh)", img)
		}
	}
	fronts := c.Pods / 2
	work, err := os.MkdirTemp("", "tracehop-k8s-tiers-")
	if err != nil {
		return err
	}
	play := &tiersPlay{work: work, log: c.Log}
	defer play.down()

	// Jaeger from deploy/kubernetes, each Collector tier from its folder
	// tiers/, each replica a Pod named as Kubernetes names it.
	jaeger, _, err := podsFrom(filepath.Join(c.Deploy, "collector.yaml"), map[string]int32{"query": tiersJaegerPort})
	if err != nil {
		return err
	}
	sampling, samplers, err := podsFrom(filepath.Join(c.Deploy, "tiers", "otel-tail-sampling.yaml"), map[string]int32{"metrics": samplerMetrics, "spanmetrics": samplerSpanmet})
	if err != nil {
		return err
	}
	gateway, gateways, err := podsFrom(filepath.Join(c.Deploy, "tiers", "otel-gateway.yaml"), map[string]int32{"metrics": gatewayMetrics})
	if err != nil {
		return err
	}
	if len(samplers) < 2 {
		return fmt.Errorf("tiers/otel-tail-sampling.yaml: %d replicas, want at least 2", len(samplers))
	}
	head := c.Head
	if head >= 100 {
		head = 0
	}
	apps, err := tiersApps(c.Pods, gateways, head)
	if err != nil {
		return err
	}
	for _, p := range append(append([]string{"jaeger"}, samplers...), gateways...) {
		if exec.CommandContext(ctx, "podman", "pod", "exists", p).Run() == nil {
			return fmt.Errorf("a pod named %s exists already: a run is still up (podman pod rm -f %s)", p, p)
		}
	}
	if exec.Command("podman", "network", "exists", Network).Run() != nil {
		if out, err := exec.Command("podman", "network", "create", Network).CombinedOutput(); err != nil {
			return fmt.Errorf("podman network create: %v: %s", err, out)
		}
	}
	// A headless Service is a DNS name with one A record per ready Pod;
	// podman has no Services, but a network alias shared by several Pods
	// answers the same way (aardvark-dns returns every member's address),
	// so the gateway's DNS resolver runs here as in a cluster.
	for _, f := range []struct {
		name, alias string
		body        []byte
	}{
		{"jaeger.yaml", "", jaeger},
		{"otel-tail-sampling.yaml", "otel-tail-sampling", sampling},
		{"otel-gateway.yaml", "otel-gateway", gateway},
		{"apps.yaml", "", apps},
	} {
		if err := os.WriteFile(filepath.Join(work, f.name), f.body, 0o644); err != nil {
			return err
		}
		network := Network
		if f.alias != "" {
			network += ":alias=" + f.alias
		}
		c.Log("podman kube play --network %s %s", network, f.name)
		play.files = append(play.files, f.name)
		cmd := exec.CommandContext(ctx, "podman", "kube", "play", "--network", network, f.name)
		cmd.Dir = work
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("podman kube play %s: %v\n%s", f.name, err, out)
		}
	}
	var ready []string
	for i := range samplers {
		ready = append(ready, fmt.Sprintf("http://127.0.0.1:%d/metrics", samplerMetrics+i))
	}
	for i := range gateways {
		ready = append(ready, fmt.Sprintf("http://127.0.0.1:%d/metrics", gatewayMetrics+i))
	}
	for i := range c.Pods {
		ready = append(ready, fmt.Sprintf("http://127.0.0.1:%d/ready", tiersAdminBase+i))
	}
	ready = append(ready, fmt.Sprintf("http://127.0.0.1:%d/api/services", tiersJaegerPort))
	deadline := time.Now().Add(90 * time.Second)
	for _, u := range ready {
		for !httpOK(u) {
			if time.Now().After(deadline) || ctx.Err() != nil {
				ps, _ := exec.Command("podman", "ps", "-a", "--format", "{{.Names}} {{.Status}}").CombinedOutput()
				return fmt.Errorf("%s never answered:\n%s", u, ps)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	c.Log("ready: Jaeger, %d tail-sampling replicas (%s), %d gateways (%s), %d app Pods (tiers-0..%d call tiers-%d..%d)",
		len(samplers), strings.Join(samplers, ", "), len(gateways), strings.Join(gateways, ", "), c.Pods, fronts-1, fronts, c.Pods-1)
	time.Sleep(6 * time.Second) // the gateways' first DNS poll has both replicas

	collectors := append(append([]string{}, gateways...), samplers...)
	pids := map[string]int{}
	for _, p := range collectors {
		out, err := exec.Command("podman", "inspect", "--format", "{{.State.Pid}}", p+"-otelcol").CombinedOutput()
		if err != nil {
			return fmt.Errorf("podman inspect %s-otelcol: %v: %s", p, err, out)
		}
		pids[p], _ = strconv.Atoi(strings.TrimSpace(string(out)))
	}
	metrics := func() map[string]map[string]float64 {
		m := map[string]map[string]float64{}
		for i, g := range gateways {
			m[g] = scrapeFloat(fmt.Sprintf("http://127.0.0.1:%d/metrics", gatewayMetrics+i))
		}
		for i, s := range samplers {
			m[s] = scrapeFloat(fmt.Sprintf("http://127.0.0.1:%d/metrics", samplerMetrics+i))
		}
		return m
	}

	// Phase 1: steady load, strict checks.
	cpu0 := map[string]sidecarSample{}
	for p, pid := range pids {
		cpu0[p] = sample(pid)
	}
	m0 := metrics()
	var peakRSS sync.Map  // collector -> int64 bytes, sampled each second
	var peakHeld sync.Map // tail-sampling replica -> traces held awaiting a decision (float64)
	stopRSS := make(chan struct{})
	go func() {
		for {
			select {
			case <-stopRSS:
				return
			case <-time.After(time.Second):
			}
			for p, pid := range pids {
				s := sample(pid)
				if v, ok := peakRSS.Load(p); !ok || s.rss > v.(int64) {
					peakRSS.Store(p, s.rss)
				}
			}
			for i, p := range samplers {
				n := scrapeFloat(fmt.Sprintf("http://127.0.0.1:%d/metrics", samplerMetrics+i))["otelcol_processor_tail_sampling_sampling_traces_on_memory"]
				if v, ok := peakHeld.Load(p); !ok || n > v.(float64) {
					peakHeld.Store(p, n)
				}
			}
		}
	}()
	c.Log("phase 1 (steady): %d req/s to each of %d front Pods for %s; mix: %d%% failing (status=500 at the back), %d%% slow (sleep=%s at the back), %d%% on the checkout route, the rest plain",
		c.Rate, fronts, c.Duration, failPct, slowPct, slowSleep, checkoutPct)
	start1 := time.Now()
	reqs1 := load(ctx, fronts, c.Rate, c.Duration, head > 0)
	loadTime := time.Since(start1)
	cpu1 := map[string]sidecarSample{}
	for p, pid := range pids {
		cpu1[p] = sample(pid)
	}
	close(stopRSS)
	c.Log("phase 1 load done (%d requests in %s); waiting %s for the last decisions", len(reqs1), loadTime.Round(time.Millisecond), settle)
	time.Sleep(settle)
	m1 := metrics()
	spanmet1 := spanmetrics(samplers)
	kept1 := fetchTraces(fmt.Sprintf("http://127.0.0.1:%d", tiersJaegerPort), reqs1)

	fmt.Printf("\n## Phase 1: steady load (%d Pods, %d req/s to each of %d front Pods, %s)\n\n", c.Pods, c.Rate, fronts, c.Duration)
	var failed []string
	check := func(ok bool, format string, args ...any) {
		mark := "ok  "
		if !ok {
			mark = "FAIL"
			failed = append(failed, fmt.Sprintf(format, args...))
		}
		fmt.Printf("- %s %s\n", mark, fmt.Sprintf(format, args...))
	}
	tally := tallyKept(reqs1, kept1, fronts)
	if head > 0 {
		var all kindTally
		for _, t := range tally {
			all.add(t)
		}
		sampled := all.sent - all.unsampled
		p := head / 100
		tol := 3 * math.Sqrt(float64(all.sent)*p*(1-p))
		check(math.Abs(float64(sampled)-float64(all.sent)*p) <= tol,
			"head sampling at the front sidecars (%g%%): %d of %d requests sampled (traceresponse), want %.0f ± %.0f", head, sampled, all.sent, float64(all.sent)*p, tol)
	}
	for _, k := range []reqKind{failing, slow, checkout} {
		t := tally[k]
		sampled := ""
		if head > 0 {
			sampled = fmt.Sprintf(", %d head-sampled", t.sent-t.unsampled)
		}
		check(t.sent > 0 && t.whole == t.sent-t.unsampled && t.answered == t.sent,
			"%s: %d sent, %d answered as asked%s, %d kept whole (3 spans over 2 hops) by one replica; %d partial, %d split across replicas, %d missing",
			k, t.sent, t.answered, sampled, t.whole, t.partial, t.split, t.missing)
	}
	t := tally[plain]
	plainSampled := t.sent - t.unsampled
	p := restPct / 100
	want := float64(plainSampled) * p
	tol := 3 * math.Sqrt(float64(plainSampled)*p*(1-p))
	check(math.Abs(float64(t.kept())-want) <= tol && t.partial == 0 && t.split == 0,
		"plain (probabilistic rest, %.0f%%): %d of %d kept (%.2f%%), want %.0f ± %.0f (3 binomial standard deviations); %d partial, %d split",
		restPct, t.kept(), plainSampled, 100*float64(t.kept())/float64(max(plainSampled, 1)), want, tol, t.partial, t.split)
	answered, errs, sampledAnswered, sampledErrs := 0, 0, 0, 0
	for _, r := range reqs1 {
		if r.status != 0 {
			answered++
			if r.sampled {
				sampledAnswered++
			}
		}
		if r.status >= 500 {
			errs++
			if r.sampled {
				sampledErrs++
			}
		}
	}
	calls, callErrs := spanmet1.server(0, fronts), spanmet1.serverErrors(0, fronts)
	back := spanmet1.server(fronts, c.Pods)
	if head == 0 {
		check(int(calls) == answered && int(back) == answered && int(callErrs) == errs,
			"spanmetrics (summed over the replicas): %0.f SERVER calls at the front Pods and %.0f at the back Pods for %d requests answered; %.0f errors for %d 5xx answers",
			calls, back, answered, callErrs, errs)
	} else {
		// Each sampled span counts 100/head (its adjusted count, from
		// ot=th in its trace state; rounded stochastically when that is
		// not whole, so within 1% here).
		adj := 100 / head
		near := func(got, want float64) bool { return math.Abs(got-want) <= math.Max(1, want/100) }
		check(near(calls, float64(sampledAnswered)*adj) && near(back, float64(sampledAnswered)*adj) && near(callErrs, float64(sampledErrs)*adj),
			"spanmetrics, extrapolated: %.0f SERVER calls at the front Pods and %.0f at the back for %d head-sampled requests x %g (adjusted count) = %.0f; %d requests were answered in all (%.1f%% off, head sampling's variance); %.0f errors for %d sampled 5xx x %g (%d 5xx in all)",
			calls, back, sampledAnswered, adj, float64(sampledAnswered)*adj, answered, 100*(calls-float64(answered))/float64(max(answered, 1)), callErrs, sampledErrs, adj, errs)
	}
	split := map[string]int{}
	for _, k := range kept1 {
		for r := range k.replicas {
			split[r]++
		}
	}
	fmt.Printf("\nKept traces per tail-sampling replica: %v\n", split)
	fmt.Printf("\n| Collector | spans received | CPU | spans/s per core | RSS now / peak MiB | traces held (peak) |\n|---|---|---|---|---|---|\n")
	for _, p := range collectors {
		spans := counter(m1[p], "otelcol_receiver_accepted_spans") - counter(m0[p], "otelcol_receiver_accepted_spans")
		cpu := cpu1[p].cpu - cpu0[p].cpu
		pk, _ := peakRSS.Load(p)
		pkb, _ := pk.(int64)
		held := "-"
		if v, ok := peakHeld.Load(p); ok {
			held = fmt.Sprintf("%.0f", v.(float64))
		}
		fmt.Printf("| %s | %.0f | %.1f%% of a core | %.0f | %.1f / %.1f | %s |\n", p, spans, 100*cpu.Seconds()/loadTime.Seconds(),
			spans/math.Max(cpu.Seconds(), 0.001), mib(sample(pids[p]).rss), mib(pkb), held)
	}
	fmt.Printf("\nGateways: %s\n", lbSummary(m0, m1, gateways))
	fmt.Printf("Tail sampling: %s\n", tsSummary(m0, m1, samplers))

	if c.Kill {
		victim := samplers[len(samplers)-1]
		killAt, startAt := c.KillDuration/3, 2*c.KillDuration/3
		fmt.Printf("\n## Phase 2: the same load for %s; podman pod kill %s at %s, podman pod start at %s\n\n", c.KillDuration, victim, killAt, startAt)
		var killed, restarted time.Time
		var preKill spanSeries // the replicas' spanmetrics just before the kill
		var dnsGone, dnsBack time.Duration
		m2a := metrics()
		chaosDone := make(chan struct{})
		go func() {
			defer close(chaosDone)
			select {
			case <-ctx.Done():
				return
			case <-time.After(killAt):
			}
			preKill = spanmetrics(samplers)
			killed = time.Now()
			c.Log("podman pod kill %s", victim)
			if out, err := exec.Command("podman", "pod", "kill", victim).CombinedOutput(); err != nil {
				c.Log("podman pod kill: %v: %s", err, out)
			}
			dnsGone = waitBackends(gateways, len(samplers)-1, 30*time.Second)
			time.Sleep(time.Until(killed.Add(startAt - killAt)))
			restarted = time.Now()
			c.Log("podman pod start %s (a StatefulSet would restart it)", victim)
			if out, err := exec.Command("podman", "pod", "start", victim).CombinedOutput(); err != nil {
				c.Log("podman pod start: %v: %s", err, out)
			}
			dnsBack = waitBackends(gateways, len(samplers), 30*time.Second)
		}()
		start2 := time.Now()
		reqs2 := load(ctx, fronts, c.Rate, c.KillDuration, head > 0)
		c.Log("phase 2 load done (%d requests); waiting %s for the last decisions", len(reqs2), settle)
		select {
		case <-chaosDone:
		case <-time.After(time.Minute):
			return errors.New("phase 2: the replica was not killed and restarted in time")
		}
		time.Sleep(settle)
		m2b := metrics()
		spanmet2 := spanmetrics(samplers)
		kept2 := fetchTraces(fmt.Sprintf("http://127.0.0.1:%d", tiersJaegerPort), reqs2)
		fmt.Printf("The gateways' load balancers saw %d backends %s after the kill and %d again %s after the start (DNS polled every 5s).\n\n",
			len(samplers)-1, dnsGone.Round(100*time.Millisecond), len(samplers), dnsBack.Round(100*time.Millisecond))
		// Windows by when a request was sent, relative to the kill and the start.
		type window struct {
			name     string
			from, to time.Time
		}
		ws := []window{
			{"before: decided before the kill (sent earlier than decision_wait before it)", start2, killed.Add(-decisionWait - 2*time.Second)},
			{"held: waiting for a decision when the replica died", killed.Add(-decisionWait - 2*time.Second), killed},
			{"re-routing: between the kill and the gateways' ring change", killed, killed.Add(dnsGone)},
			{"one replica: until the restart", killed.Add(dnsGone), restarted},
			{"rejoin: between the start and the ring change, and a decision wait after", restarted, restarted.Add(dnsBack + decisionWait)},
			{"after: two replicas again", restarted.Add(dnsBack + decisionWait), time.Now()},
		}
		fmt.Printf("| window (by send time) | requests | must-keep (failing, slow, checkout): whole / partial / split / missing | plain kept |\n|---|---|---|---|\n")
		for _, w := range ws {
			var in []sent
			for _, r := range reqs2 {
				if !r.at.Before(w.from) && r.at.Before(w.to) {
					in = append(in, r)
				}
			}
			tl := tallyKept(in, kept2, fronts)
			var must kindTally
			for _, k := range []reqKind{failing, slow, checkout} {
				must.add(tl[k])
			}
			pl := tl[plain]
			fmt.Printf("| %s | %d | %d / %d / %d / %d of %d | %d of %d (%.1f%%) |\n", w.name, len(in), must.whole, must.partial, must.split, must.missing, must.sent,
				pl.whole+pl.partial+pl.split, pl.sent, 100*float64(pl.whole+pl.partial+pl.split)/float64(max(pl.sent, 1)))
		}
		answered2 := 0
		for _, r := range reqs2 {
			if r.status != 0 {
				answered2++
			}
		}
		// The restarted replica's counters began again at zero: what it had
		// counted before the kill is gone.
		vi := len(samplers) - 1
		var survivors float64
		for i := range vi {
			survivors += spanmet2.serverOf(i, 0, fronts) - spanmet1.serverOf(i, 0, fronts)
		}
		since := spanmet2.serverOf(vi, 0, fronts)
		before := preKill.serverOf(vi, 0, fronts) - spanmet1.serverOf(vi, 0, fronts)
		fmt.Printf("\nspanmetrics, phase 2, SERVER calls at the front Pods: %d requests answered; the surviving replica counted %.0f, %s %.0f after its restart: %.0f (%.1f%%) in no counter. %s had counted %.0f of phase 2's before the kill, gone with its process (its counters start again at zero; a Prometheus scraping it keeps what it scraped, and rate() treats the drop as a reset).\n",
			answered2, survivors, victim, since, float64(answered2)-survivors-since, 100*(float64(answered2)-survivors-since)/float64(max(answered2, 1)), victim, before)
		fmt.Printf("Gateways: %s\n", lbSummary(m2a, m2b, gateways))
		fmt.Printf("Tail sampling: %s\n", tsSummary(m2a, m2b, samplers))
	}
	fmt.Println()
	if len(failed) > 0 {
		return fmt.Errorf("%d checks failed:\n  %s", len(failed), strings.Join(failed, "\n  "))
	}
	c.Log("ok: every check passed")
	return nil
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

// load sends rate requests a second to each front Pod for d, each with a
// traceparent of a fresh sampled trace id (so that the run knows every
// request's trace), the kind by request number. With headSampling, no
// traceparent: the front sidecar starts the trace and decides, and its
// traceresponse header (on sampled requests only) gives the trace id.
func load(ctx context.Context, fronts, rate int, d time.Duration, headSampling bool) []sent {
	var mu sync.Mutex
	var all []sent
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	start := time.Now()
	var wg sync.WaitGroup
	for f := range fronts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(time.Second / time.Duration(rate))
			defer tick.Stop()
			var inflight sync.WaitGroup
			for n := 0; time.Since(start) < d && ctx.Err() == nil; n++ {
				<-tick.C
				kind, path := plain, "/trace/1"
				switch b := n % 100; {
				case b < failPct:
					kind, path = failing, "/trace/1?status=500"
				case b < failPct+slowPct:
					kind, path = slow, "/trace/1?sleep="+slowSleep.String()
				case b < failPct+slowPct+checkoutPct:
					kind, path = checkout, "/trace/checkout"
				}
				var id [24]byte
				rand.Read(id[:])
				tid := hex.EncodeToString(id[:16])
				inflight.Add(1)
				go func() {
					defer inflight.Done()
					r := sent{traceID: tid, kind: kind, front: f, at: time.Now(), sampled: !headSampling}
					req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d%s", tiersIngressBase+f, path), nil)
					if headSampling {
						r.traceID = ""
					} else {
						req.Header.Set("traceparent", "00-"+tid+"-"+hex.EncodeToString(id[16:])+"-01")
					}
					resp, err := client.Do(req)
					if err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						r.status = resp.StatusCode
						if f := strings.Split(resp.Header.Get("traceresponse"), "-"); headSampling && len(f) == 4 {
							r.traceID, r.sampled = f[1], strings.HasSuffix(f[3], "1")
						}
					}
					r.took = time.Since(r.at)
					mu.Lock()
					all = append(all, r)
					mu.Unlock()
				}()
			}
			inflight.Wait()
		}()
	}
	wg.Wait()
	sort.Slice(all, func(i, j int) bool { return all[i].at.Before(all[j].at) })
	return all
}

// fetchTraces reads each request's trace from Jaeger (absent: not kept).
func fetchTraces(base string, reqs []sent) map[string]*keptTrace {
	out := map[string]*keptTrace{}
	var mu sync.Mutex
	ch := make(chan string)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range ch {
				if k := fetchTrace(base, id); k != nil {
					mu.Lock()
					out[id] = k
					mu.Unlock()
				}
			}
		}()
	}
	for _, r := range reqs {
		if r.sampled && r.traceID != "" {
			ch <- r.traceID
		}
	}
	close(ch)
	wg.Wait()
	return out
}

func fetchTrace(base, id string) *keptTrace {
	resp, err := http.Get(base + "/api/traces/" + id)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil
	}
	type tag struct {
		Key   string `json:"key"`
		Value any    `json:"value"`
	}
	var body struct {
		Data []struct {
			Spans []struct {
				ProcessID string `json:"processID"`
				Duration  int64  `json:"duration"` // µs
				Tags      []tag  `json:"tags"`
			} `json:"spans"`
			Processes map[string]struct {
				ServiceName string `json:"serviceName"`
				Tags        []tag  `json:"tags"`
			} `json:"processes"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || len(body.Data) == 0 {
		return nil
	}
	k := &keptTrace{services: map[string]int{}, replicas: map[string]bool{}}
	for _, tr := range body.Data {
		for _, s := range tr.Spans {
			k.spans++
			p := tr.Processes[s.ProcessID]
			k.services[p.ServiceName]++
			replica := ""
			for _, t := range p.Tags {
				if t.Key == "tracehop.tail_sampling.replica" {
					replica = fmt.Sprint(t.Value)
				}
			}
			k.replicas[replica] = true
			for _, t := range s.Tags {
				switch {
				case t.Key == "span.kind" && t.Value == "server":
					k.server++
				case t.Key == "error" && fmt.Sprint(t.Value) == "true":
					k.errors++
				}
			}
			k.maxDur = max(k.maxDur, time.Duration(s.Duration)*time.Microsecond)
		}
	}
	return k
}

// kindTally counts the requests of one kind by what Jaeger has of them.
type kindTally struct {
	sent, answered                 int // answered: as the kind asks (502 for failing, 200 else; slow ones slow)
	unsampled                      int // not head-sampled: no spans anywhere, by design
	whole, partial, split, missing int
}

// kept is how many of the head-sampled requests Jaeger has.
func (t kindTally) kept() int { return t.whole + t.partial + t.split }

func (t *kindTally) add(o kindTally) {
	t.sent += o.sent
	t.answered += o.answered
	t.unsampled += o.unsampled
	t.whole += o.whole
	t.partial += o.partial
	t.split += o.split
	t.missing += o.missing
}

// tallyKept sorts requests by kind and by what Jaeger has of each: whole
// (3 spans: the front sidecar's SERVER and CLIENT, the back sidecar's
// SERVER, all sent by one tail-sampling replica), partial, split (whole or
// not, sent by more than one replica) or missing.
func tallyKept(reqs []sent, kept map[string]*keptTrace, fronts int) map[reqKind]kindTally {
	out := map[reqKind]kindTally{}
	for _, r := range reqs {
		t := out[r.kind]
		t.sent++
		switch r.kind {
		case failing:
			if r.status == http.StatusBadGateway {
				t.answered++
			}
		case slow:
			if r.status == http.StatusOK && r.took >= slowSleep {
				t.answered++
			}
		default:
			if r.status == http.StatusOK {
				t.answered++
			}
		}
		if !r.sampled {
			t.unsampled++
			out[r.kind] = t
			continue
		}
		k := kept[r.traceID]
		front, back := fmt.Sprintf("tiers-%d", r.front), fmt.Sprintf("tiers-%d", r.front+fronts)
		switch {
		case k == nil:
			t.missing++
		case len(k.replicas) > 1:
			t.split++
		case k.spans == 3 && k.services[front] == 2 && k.services[back] == 1 && k.server == 2 && !k.replicas[""] &&
			(r.kind != failing || k.errors == 3) && (r.kind != slow || k.maxDur >= slowSleep):
			t.whole++
		default:
			t.partial++
		}
		out[r.kind] = t
	}
	return out
}

// spanSeries is the spanmetrics calls counters of every replica.
type spanSeries []map[string]string // labels, with the value under ""

func spanmetrics(samplers []string) spanSeries {
	var out spanSeries
	for i := range samplers {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", samplerSpanmet+i))
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(b), "\n") {
			if !strings.HasPrefix(line, "traces_span_metrics_calls") {
				continue
			}
			lb, rb := strings.IndexByte(line, '{'), strings.LastIndexByte(line, '}')
			if lb < 0 || rb < lb {
				continue
			}
			m := map[string]string{"": strings.Fields(line[rb+1:])[0], "\x00replica": strconv.Itoa(i)}
			for _, kv := range splitLabels(line[lb+1 : rb]) {
				k, v, _ := strings.Cut(kv, "=")
				m[k] = strings.Trim(v, `"`)
			}
			out = append(out, m)
		}
	}
	return out
}

func splitLabels(s string) []string {
	var out []string
	inQ := false
	last := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			inQ = !inQ
		case ',':
			if !inQ {
				out = append(out, s[last:i])
				last = i + 1
			}
		}
	}
	if last < len(s) {
		out = append(out, s[last:])
	}
	return out
}

// server sums the SERVER calls of the services tiers-from..tiers-(to-1).
func (s spanSeries) server(from, to int) float64 { return s.sum(from, to, false, -1) }

// serverErrors sums those with an error status.
func (s spanSeries) serverErrors(from, to int) float64 { return s.sum(from, to, true, -1) }

// serverOf sums the SERVER calls one replica counted.
func (s spanSeries) serverOf(replica, from, to int) float64 { return s.sum(from, to, false, replica) }

func (s spanSeries) sum(from, to int, errorsOnly bool, replica int) float64 {
	var n float64
	for _, m := range s {
		if m["span_kind"] != "SPAN_KIND_SERVER" || errorsOnly && m["status_code"] != "STATUS_CODE_ERROR" ||
			replica >= 0 && m["\x00replica"] != strconv.Itoa(replica) {
			continue
		}
		i, err := strconv.Atoi(strings.TrimPrefix(m["service_name"], "tiers-"))
		if err != nil || i < from || i >= to {
			continue
		}
		v, _ := strconv.ParseFloat(m[""], 64)
		n += v
	}
	return n
}

// scrapeFloat sums each metric family's samples over their labels.
func scrapeFloat(url string) map[string]float64 {
	m := map[string]float64{}
	resp, err := http.Get(url)
	if err != nil {
		return m
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest, _ := strings.Cut(line, " ")
		if i := strings.IndexByte(line, '{'); i >= 0 {
			name = line[:i]
			rest = line[strings.LastIndexByte(line, '}')+1:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, _ := strconv.ParseFloat(f[0], 64)
		m[name] += v
		if i := strings.IndexByte(line, '{'); i >= 0 {
			m[line[:strings.LastIndexByte(line, '}')+1]] += v
		}
	}
	return m
}

// sumWhere sums the series of the family name whose labels contain label
// (as written: sampled="true").
func sumWhere(m map[string]float64, name, label string) float64 {
	var n float64
	for k, v := range m {
		if (strings.HasPrefix(k, name+"{") || strings.HasPrefix(k, name+"_total{")) && strings.Contains(k, label) {
			n += v
		}
	}
	return n
}

// counter is a counter's value, with or without its _total suffix.
func counter(m map[string]float64, name string) float64 {
	if v, ok := m[name+"_total"]; ok {
		return v
	}
	return m[name]
}

func lbSummary(a, b map[string]map[string]float64, gateways []string) string {
	var parts []string
	for _, g := range gateways {
		d := func(n string) float64 { return counter(b[g], n) - counter(a[g], n) }
		outcome := func(ok string) float64 {
			return sumWhere(b[g], "otelcol_loadbalancer_backend_outcome", `success="`+ok+`"`) - sumWhere(a[g], "otelcol_loadbalancer_backend_outcome", `success="`+ok+`"`)
		}
		parts = append(parts, fmt.Sprintf("%s received %.0f spans, sent %.0f, failed to send %.0f, refused %.0f (memory limiter); exports to a backend %.0f ok, %.0f failed; %.0f backends now",
			g, d("otelcol_receiver_accepted_spans"), d("otelcol_exporter_sent_spans"), d("otelcol_exporter_send_failed_spans"),
			d("otelcol_receiver_refused_spans"), outcome("true"), outcome("false"), b[g]["otelcol_loadbalancer_num_backends"]))
	}
	return strings.Join(parts, "; ")
}

func tsSummary(a, b map[string]map[string]float64, samplers []string) string {
	var parts []string
	for _, s := range samplers {
		d := func(v func(map[string]float64) float64) float64 {
			x := v(b[s]) - v(a[s])
			if x < 0 { // restarted: its counters began again
				x = v(b[s])
			}
			return x
		}
		c := func(n string) func(map[string]float64) float64 {
			return func(m map[string]float64) float64 { return counter(m, n) }
		}
		traces := func(sampled string) func(map[string]float64) float64 {
			return func(m map[string]float64) float64 {
				return sumWhere(m, "otelcol_processor_tail_sampling_global_count_traces_sampled", `sampled="`+sampled+`"`)
			}
		}
		parts = append(parts, fmt.Sprintf("%s received %.0f spans, sent %.0f to Jaeger; %.0f traces kept, %.0f dropped; %.0f late spans (after their trace's decision)",
			s, d(c("otelcol_receiver_accepted_spans")), d(c("otelcol_exporter_sent_spans")), d(traces("true")), d(traces("false")),
			d(c("otelcol_processor_tail_sampling_sampling_late_span_age_count"))))
	}
	return strings.Join(parts, "; ")
}

// waitBackends waits until every gateway's load balancer has n backends
// and returns how long that took (limit if it did not happen).
func waitBackends(gateways []string, n int, limit time.Duration) time.Duration {
	start := time.Now()
	for time.Since(start) < limit {
		all := true
		for i := range gateways {
			if scrapeFloat(fmt.Sprintf("http://127.0.0.1:%d/metrics", gatewayMetrics+i))["otelcol_loadbalancer_num_backends"] != float64(n) {
				all = false
			}
		}
		if all {
			return time.Since(start)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return limit
}
