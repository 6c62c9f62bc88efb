package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
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
	r, play, err := playTiers(ctx, c)
	if play != nil {
		defer play.down()
	}
	if err != nil {
		return err
	}
	spanmet := r.steady(ctx)
	if c.Kill {
		if err := r.killReplica(ctx, spanmet); err != nil {
			return err
		}
	}
	fmt.Println()
	if len(r.failed) > 0 {
		return fmt.Errorf("%d checks failed:\n  %s", len(r.failed), strings.Join(r.failed, "\n  "))
	}
	c.Log("ok: every check passed")
	return nil
}

// tiersRun is a played topology and what its phases share.
type tiersRun struct {
	c                  TiersConfig
	fronts             int     // the front Pods: tiers-0 .. tiers-(fronts-1)
	head               float64 // the front sidecars' head sampling, percent; 0: off
	samplers, gateways []string
	pids               map[string]int // each Collector's process
	failed             []string       // the strict checks that failed
}

// playTiers plays Jaeger, the Collector tiers and the application Pods,
// and waits until all are ready. play, when not nil, takes them down.
func playTiers(ctx context.Context, c TiersConfig) (*tiersRun, *tiersPlay, error) {
	fronts := c.Pods / 2
	work, err := os.MkdirTemp("", "tracehop-k8s-tiers-")
	if err != nil {
		return nil, nil, err
	}
	play := &tiersPlay{work: work, log: c.Log}

	// Jaeger from deploy/kubernetes, each Collector tier from its folder
	// tiers/, each replica a Pod named as Kubernetes names it.
	jaeger, _, err := podsFrom(filepath.Join(c.Deploy, "collector.yaml"), map[string]int32{"query": tiersJaegerPort})
	if err != nil {
		return nil, play, err
	}
	sampling, samplers, err := podsFrom(filepath.Join(c.Deploy, "tiers", "otel-tail-sampling.yaml"), map[string]int32{"metrics": samplerMetrics, "spanmetrics": samplerSpanmet})
	if err != nil {
		return nil, play, err
	}
	gateway, gateways, err := podsFrom(filepath.Join(c.Deploy, "tiers", "otel-gateway.yaml"), map[string]int32{"metrics": gatewayMetrics})
	if err != nil {
		return nil, play, err
	}
	if len(samplers) < 2 {
		return nil, play, fmt.Errorf("tiers/otel-tail-sampling.yaml: %d replicas, want at least 2", len(samplers))
	}
	head := c.Head
	if head >= 100 {
		head = 0
	}
	apps, err := tiersApps(c.Pods, gateways, head)
	if err != nil {
		return nil, play, err
	}
	for _, p := range append(append([]string{"jaeger"}, samplers...), gateways...) {
		if exec.CommandContext(ctx, "podman", "pod", "exists", p).Run() == nil {
			return nil, play, fmt.Errorf("a pod named %s exists already: a run is still up (podman pod rm -f %s)", p, p)
		}
	}
	if exec.Command("podman", "network", "exists", Network).Run() != nil {
		if out, err := exec.Command("podman", "network", "create", Network).CombinedOutput(); err != nil {
			return nil, play, fmt.Errorf("podman network create: %v: %s", err, out)
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
			return nil, play, err
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
			return nil, play, fmt.Errorf("podman kube play %s: %v\n%s", f.name, err, out)
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
				return nil, play, fmt.Errorf("%s never answered:\n%s", u, ps)
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
			return nil, play, fmt.Errorf("podman inspect %s-otelcol: %v: %s", p, err, out)
		}
		pids[p], _ = strconv.Atoi(strings.TrimSpace(string(out)))
	}
	return &tiersRun{c: c, fronts: fronts, head: head, samplers: samplers, gateways: gateways, pids: pids}, play, nil
}

// metrics scrapes every Collector's own metrics.
func (r *tiersRun) metrics() map[string]map[string]float64 {
	m := map[string]map[string]float64{}
	for i, g := range r.gateways {
		m[g] = scrapeFloat(fmt.Sprintf("http://127.0.0.1:%d/metrics", gatewayMetrics+i))
	}
	for i, s := range r.samplers {
		m[s] = scrapeFloat(fmt.Sprintf("http://127.0.0.1:%d/metrics", samplerMetrics+i))
	}
	return m
}

// check prints a strict check and remembers it when it fails.
func (r *tiersRun) check(ok bool, format string, args ...any) {
	mark := "ok  "
	if !ok {
		mark = "FAIL"
		r.failed = append(r.failed, fmt.Sprintf(format, args...))
	}
	fmt.Printf("- %s %s\n", mark, fmt.Sprintf(format, args...))
}

// steady is phase 1: the load, then the strict checks and the
// measurements. It returns the spanmetrics at its end.
func (r *tiersRun) steady(ctx context.Context) spanSeries {
	c, fronts, head, samplers, gateways, pids := r.c, r.fronts, r.head, r.samplers, r.gateways, r.pids
	metrics, check := r.metrics, r.check
	collectors := append(append([]string{}, gateways...), samplers...)
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
	for _, q := range reqs1 {
		if q.status != 0 {
			answered++
			if q.sampled {
				sampledAnswered++
			}
		}
		if q.status >= 500 {
			errs++
			if q.sampled {
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
		for replica := range k.replicas {
			split[replica]++
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

	return spanmet1
}

// killReplica is phase 2: the same load, one tail-sampling replica killed
// a third into it and started again at two thirds; what that costs, by
// when the requests were sent. spanmet1 is the spanmetrics before it.
func (r *tiersRun) killReplica(ctx context.Context, spanmet1 spanSeries) error {
	c, fronts, head, samplers, gateways := r.c, r.fronts, r.head, r.samplers, r.gateways
	metrics := r.metrics
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
		for _, q := range reqs2 {
			if !q.at.Before(w.from) && q.at.Before(w.to) {
				in = append(in, q)
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
	for _, q := range reqs2 {
		if q.status != 0 {
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
	return nil
}
