package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// sample is one round's measurement of one configuration.
type sample struct {
	RPS          float64            `json:"rps"`
	Requests     int64              `json:"requests"`
	Errors       int64              `json:"errors"`
	SatP99       time.Duration      `json:"saturated_p99_ns"`
	CPUPerReq    float64            `json:"cpu_us_per_req"`
	CPUByProcess map[string]float64 `json:"cpu_us_per_req_by_process,omitempty"`
	// UserCPUPerReq is the user-space part of CPUPerReq. Tracing adds no
	// system call per request; the kernel's share of a request moves by
	// microseconds from round to round on this kind of machine, so
	// tracing's cost shows more steadily here (0 in results from before
	// it was recorded).
	UserCPUPerReq    float64            `json:"user_cpu_us_per_req,omitempty"`
	UserCPUByProcess map[string]float64 `json:"user_cpu_us_per_req_by_process,omitempty"`
	// OthersCPU is what the rest of the machine spent per request of the
	// saturated run: the upstream, the span receiver and wrk (keys
	// upstream, receiver, wrk). They share the 2 cores with the proxy, so a
	// ratio of req/s moves with their work too: a traced request makes
	// the upstream parse trace headers and the receiver take spans.
	OthersCPU      map[string]float64 `json:"others_cpu_us_per_req,omitempty"`
	FixedCPUPerReq float64            `json:"fixed_rate_cpu_us_per_req"`
	FixedP50       time.Duration      `json:"fixed_rate_p50_ns"`
	FixedP90       time.Duration      `json:"fixed_rate_p90_ns"`
	FixedP99       time.Duration      `json:"fixed_rate_p99_ns"`
	// For TLS configurations: one request per new connection (a full
	// handshake each), per second, and the CPU µs each took.
	NewConnRPS float64 `json:"new_connection_rps,omitempty"`
	NewConnCPU float64 `json:"new_connection_cpu_us,omitempty"`
	// StealPct is the share of the machine's CPU the hypervisor gave to
	// other guests during the round: above a few percent, the round's
	// req/s and latencies say more about the neighbours than about the
	// proxy.
	StealPct float64 `json:"steal_pct"`
}

// config is every round of one configuration and their medians.
type config struct {
	Description string   `json:"description"`
	Rounds      []sample `json:"rounds"`
	Median      sample   `json:"median"`
	Requests    int64    `json:"requests"`
	Errors      int64    `json:"errors"`
	// RSS and peak RSS by process name, in bytes, after the last round.
	RSS map[string][2]int64 `json:"rss_and_peak_bytes,omitempty"`
	// RSS by process name, in bytes, of a tracehop configuration idle
	// (started, before any request) and at 1,000 req/s (after 10 s of
	// it): memory per sidecar, tracehop and its driver.
	IdleRSS map[string][2]int64 `json:"idle_rss_bytes,omitempty"`
	RateRSS map[string][2]int64 `json:"rss_at_1000_rps_bytes,omitempty"`
	// The same with every shared page counted once (treeMem): what a
	// sidecar of several processes costs the machine.
	IdleMem int64 `json:"idle_mem_once_bytes,omitempty"`
	RateMem int64 `json:"mem_once_at_1000_rps_bytes,omitempty"`
	// Spans, for traced configurations: tracehop's counters and what the
	// receiver decoded.
	SpansSampled  int64            `json:"spans_sampled,omitempty"`
	SpansExported int64            `json:"spans_exported,omitempty"`
	SpansDropped  map[string]int64 `json:"spans_dropped,omitempty"`
	SpansReceived int64            `json:"spans_received,omitempty"`
}

// ratio is one of issue 6's targets, checked.
type ratio struct {
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Target string  `json:"target"`
	Met    bool    `json:"met"`
}

type results struct {
	Date     time.Time          `json:"date"`
	Machine  map[string]string  `json:"machine"`
	Settings map[string]string  `json:"settings"`
	Order    []string           `json:"order"`
	Configs  map[string]*config `json:"configs"`
	Ratios   []ratio            `json:"ratios"`
}

func newResults(o options, targets []*target) *results {
	r := &results{Date: time.Now().UTC(), Configs: map[string]*config{}, Machine: machine()}
	r.Settings = map[string]string{
		"rounds": strconv.Itoa(o.rounds), "saturated": fmt.Sprintf("wrk -t1 -c%d -d%s --latency", o.conns, o.satDur),
		"fixed_rate": fmt.Sprintf("fortio load -qps %d -c %d -t %s -uniform", o.qps, o.rateConns, o.rateDur),
		"threads":    fmt.Sprintf("%[1]d per proxy: GOMAXPROCS=%[1]d (tracehop, go-httputil; the driver 1), nginx worker_processes %[1]d, haproxy nbthread %[1]d", o.workers),
		"workers":    strconv.Itoa(o.workers),
	}
	for _, t := range targets {
		r.Order = append(r.Order, t.Name)
		r.Configs[t.Name] = &config{Description: t.Desc}
	}
	return r
}

func machine() map[string]string {
	m := map[string]string{"cpus": strconv.Itoa(runtime.NumCPU()), "go": runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m["cpu"] = strings.TrimSpace(v)
				break
			}
		}
	}
	if out, err := exec.Command("uname", "-r").Output(); err == nil {
		m["kernel"] = strings.TrimSpace(string(out))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		m["memory"] = strings.Join(strings.Fields(strings.SplitN(string(b), "\n", 2)[0])[1:], " ")
	}
	return m
}

func (r *results) add(name string, s sample) {
	c := r.Configs[name]
	c.Rounds = append(c.Rounds, s)
	c.Requests += s.Requests
	c.Errors += s.Errors
}

func (r *results) memory(name string, rss map[string][2]int64) { r.Configs[name].RSS = rss }

// otlpRows are the configurations that export into the OTLP receiver,
// which counts them all together; the first present carries its count.
var otlpRows = []string{"tracehop-otlp", "tracehop-otlp@base", "tracehop-otlp-reuseport"}

func (r *results) spans(name string, m map[string]float64) {
	c := r.Configs[name]
	c.SpansSampled = int64(m["tracehop_spans_sampled_total"])
	c.SpansDropped = map[string]int64{}
	for k, v := range m {
		if strings.HasPrefix(k, "tracehop_spans_exported_total{") {
			c.SpansExported += int64(v)
		}
		if rest, ok := strings.CutPrefix(k, "tracehop_spans_dropped_total{"); ok && v > 0 {
			_, reason, _ := strings.Cut(rest, `reason="`)
			reason, _, _ = strings.Cut(reason, `"`)
			c.SpansDropped[reason] += int64(v)
		}
	}
}

func median[T int64 | float64 | time.Duration](rounds []sample, f func(sample) T) T {
	v := make([]T, len(rounds))
	for i, s := range rounds {
		v[i] = f(s)
	}
	slices.Sort(v)
	return v[len(v)/2]
}

func (r *results) finish() {
	for _, c := range r.Configs {
		if len(c.Rounds) == 0 {
			continue
		}
		c.Median = sample{
			RPS:            median(c.Rounds, func(s sample) float64 { return s.RPS }),
			CPUPerReq:      median(c.Rounds, func(s sample) float64 { return s.CPUPerReq }),
			FixedCPUPerReq: median(c.Rounds, func(s sample) float64 { return s.FixedCPUPerReq }),
			SatP99:         median(c.Rounds, func(s sample) time.Duration { return s.SatP99 }),
			FixedP50:       median(c.Rounds, func(s sample) time.Duration { return s.FixedP50 }),
			FixedP90:       median(c.Rounds, func(s sample) time.Duration { return s.FixedP90 }),
			FixedP99:       median(c.Rounds, func(s sample) time.Duration { return s.FixedP99 }),
			NewConnRPS:     median(c.Rounds, func(s sample) float64 { return s.NewConnRPS }),
			NewConnCPU:     median(c.Rounds, func(s sample) float64 { return s.NewConnCPU }),
		}
		if c.Rounds[0].CPUByProcess != nil {
			c.Median.CPUByProcess = map[string]float64{}
			for comm := range c.Rounds[0].CPUByProcess {
				c.Median.CPUByProcess[comm] = median(c.Rounds, func(s sample) float64 { return s.CPUByProcess[comm] })
			}
		}
		if c.Rounds[0].OthersCPU != nil {
			c.Median.OthersCPU = map[string]float64{}
			for who := range c.Rounds[0].OthersCPU {
				c.Median.OthersCPU[who] = median(c.Rounds, func(s sample) float64 { return s.OthersCPU[who] })
			}
		}
	}
	get := func(name string) *sample {
		if c, ok := r.Configs[name]; ok && len(c.Rounds) > 0 {
			return &c.Median
		}
		return nil
	}
	// Comparisons between two configurations are medians of the rounds'
	// comparisons, round i of one against round i of the other: the
	// configurations take turns, so a round's pair ran minutes closer
	// together than the medians of all rounds did, and this machine's
	// speed drifts by more than tracing costs within a run (untraced rounds
	// of one run from 13 to 19 µs per request).
	paired := r.paired
	ratioOf := func(f func(sample) float64) func(x, y sample) float64 {
		return func(x, y sample) float64 {
			if f(y) == 0 {
				return 0
			}
			return f(x) / f(y)
		}
	}
	atLeast := func(name, a, b string, f func(sample) float64, min float64) {
		if v, ok := paired(a, b, ratioOf(f)); ok && v > 0 {
			r.Ratios = append(r.Ratios, ratio{name, v, fmt.Sprintf(">= %.2f", min), v >= min})
		}
	}
	atMost := func(name, a, b string, f func(sample) float64, max float64) {
		if v, ok := paired(a, b, ratioOf(f)); ok && v > 0 {
			r.Ratios = append(r.Ratios, ratio{name, v, fmt.Sprintf("<= %.2f", max), v <= max})
		}
	}
	cpuOver := func(a, b string) (float64, bool) {
		return paired(a, b, func(x, y sample) float64 { return x.CPUPerReq - y.CPUPerReq })
	}
	rps := func(s sample) float64 { return s.RPS }
	p99 := func(s sample) float64 { return float64(s.FixedP99) }
	cpu := func(s sample) float64 { return s.CPUPerReq }
	atLeast("req/s: traced / untraced", "tracehop-zipkin", "tracehop", rps, 0.95)
	atLeast("req/s: traced / go-httputil", "tracehop-zipkin", "go-httputil", rps, 1.3)
	atLeast("req/s: traced / nginx", "tracehop-zipkin", "nginx", rps, 0.8)
	atMost("p99 @fixed rate: traced / untraced", "tracehop-zipkin", "tracehop", p99, 1.5)
	atMost("p99 @fixed rate: traced / nginx", "tracehop-zipkin", "nginx", p99, 1.5)
	// Issue 25: the span ring against the batches inside the Export RPC.
	if ring, ok := cpuOver("tracehop-zipkin", "tracehop"); ok {
		if viaGRPC, ok := cpuOver("tracehop-zipkin-grpc", "tracehop"); ok {
			r.Ratios = append(r.Ratios, ratio{"CPU µs per traced request over tracing off: span ring (transport: auto)", ring, "<= 3 (issue 25)", ring <= 3})
			r.Ratios = append(r.Ratios, ratio{"CPU µs per traced request over tracing off: gRPC (transport: grpc)", viaGRPC, "compared", true})
			atMost("CPU µs/req: span ring / gRPC", "tracehop-zipkin", "tracehop-zipkin-grpc", cpu, 1.0)
		}
	}
	// Issue 25's targets, for the drivers it names: the otlp driver into a
	// receiver that does not decode, and the file driver.
	for _, name := range []string{"tracehop-otlp", "tracehop-file"} {
		driver := strings.TrimPrefix(name, "tracehop-")
		if over, ok := cpuOver(name, "tracehop"); ok {
			r.Ratios = append(r.Ratios, ratio{"CPU µs per traced request over tracing off: " + driver, over, "<= 3 (issue 25)", over <= 3})
		}
		if over, ok := paired(name, "tracehop", func(x, y sample) float64 { return x.UserCPUPerReq - y.UserCPUPerReq }); ok && over != 0 {
			r.Ratios = append(r.Ratios, ratio{"of which user space: " + driver, over, "compared", true})
		}
		r.outside(name, driver, paired)
		atLeast("req/s: traced ("+driver+") / untraced (issue 25)", name, "tracehop", rps, 0.95)
		atLeast("req/s: traced ("+driver+") / nginx (issue 25)", name, "nginx", rps, 0.90)
		atMost("p99 @fixed rate: traced ("+driver+") / untraced (issue 25)", name, "tracehop", p99, 1.3)
	}
	atLeast("req/s: untraced / nginx (issue 25)", "tracehop", "nginx", rps, 1.0)
	atLeast("req/s: untraced / HAProxy (issue 25)", "tracehop", "haproxy", rps, 1.0)
	// With more than one worker, one tracehop process per worker sharing
	// the listener (reuse_port), as nginx runs its workers.
	atLeast("req/s: untraced, a process per worker (reuse_port) / nginx (issue 25)", "tracehop-reuseport", "nginx", rps, 1.0)
	atLeast("req/s: untraced, a process per worker (reuse_port) / HAProxy (issue 25)", "tracehop-reuseport", "haproxy", rps, 1.0)
	if v, ok := paired("tracehop-reuseport", "tracehop", ratioOf(rps)); ok && v > 0 {
		r.Ratios = append(r.Ratios, ratio{"req/s: untraced, a process per worker (reuse_port) / one process of as many processors", v, "compared", true})
	}
	if over, ok := cpuOver("tracehop-otlp-reuseport", "tracehop-reuseport"); ok {
		r.Ratios = append(r.Ratios, ratio{"CPU µs per traced request over tracing off, a process per worker (reuse_port): otlp", over, "<= 3 (issue 25)", over <= 3})
	}
	atLeast("req/s: traced (otlp) / untraced, a process per worker (reuse_port) (issue 25)", "tracehop-otlp-reuseport", "tracehop-reuseport", rps, 0.95)
	atLeast("req/s: traced (otlp), a process per worker (reuse_port) / nginx (issue 25)", "tracehop-otlp-reuseport", "nginx", rps, 0.90)
	atMost("p99 @fixed rate: traced (otlp) / untraced, a process per worker (reuse_port) (issue 25)", "tracehop-otlp-reuseport", "tracehop-reuseport", p99, 1.3)
	// Like with like: the peers sending the upstream tracehop's headers.
	atLeast("req/s: untraced / nginx adding X-Forwarded-Proto and X-Request-Id (issue 25)", "tracehop", "nginx-reqid", rps, 1.0)
	atLeast("req/s: untraced / HAProxy adding X-Forwarded-Proto and X-Request-Id (issue 25)", "tracehop", "haproxy-reqid", rps, 1.0)
	for _, peer := range []string{"nginx", "haproxy", "nginx-reqid", "haproxy-reqid"} {
		if d, ok := paired("tracehop", peer, func(x, y sample) float64 { return x.OthersCPU["upstream"] - y.OthersCPU["upstream"] }); ok && r.Configs[peer].Rounds[0].OthersCPU != nil && r.Configs["tracehop"].Rounds[0].OthersCPU != nil {
			r.Ratios = append(r.Ratios, ratio{"CPU µs per request in the upstream, behind untraced tracehop - behind " + peer, d, "compared", true})
		}
	}
	// The OTLP receiver's count is on the first otlp row present (main.go).
	var received *config
	sampled := int64(0)
	for _, n := range otlpRows {
		if c, ok := r.Configs[n]; ok {
			if received == nil {
				received = c
			}
			sampled += c.SpansSampled
		}
	}
	if received != nil && sampled > 0 {
		v := float64(received.SpansReceived) / float64(sampled)
		r.Ratios = append(r.Ratios, ratio{"spans received by the OTLP receiver / spans sampled (otlp)", v, "= 1", received.SpansReceived == sampled})
	}
	// Old against new in the same run (-baseline).
	for _, name := range []string{"tracehop", "tracehop-zipkin", "tracehop-otlp", "tracehop-file"} {
		if d, ok := cpuOver(name, name+"@base"); ok {
			r.Ratios = append(r.Ratios, ratio{"CPU µs/req, this build - baseline: " + name, d, "compared", true})
		}
	}
	// Issue 14: TLS termination beside nginx's.
	untracedTLS, nginxTLS := get("tracehop-tls"), get("nginx-tls")
	atMost("CPU µs/req on TLS: traced / nginx", "tracehop-zipkin-tls", "nginx-tls", cpu, 1.25)
	if untracedTLS != nil && nginxTLS != nil && nginxTLS.NewConnRPS > 0 {
		v := untracedTLS.NewConnRPS / nginxTLS.NewConnRPS
		r.Ratios = append(r.Ratios, ratio{"handshakes/s (one request per connection): tracehop / nginx", v, "compared", true})
	}
	if traced := get("tracehop-zipkin"); traced != nil {
		r.Ratios = append(r.Ratios, ratio{"CPU µs per traced request (tracehop + driver)", traced.CPUPerReq, "<= 40", traced.CPUPerReq <= 40})
		if c := r.Configs["tracehop-zipkin"]; c.RSS != nil {
			peak := float64(c.RSS["tracehop"][1]) / (1 << 20)
			r.Ratios = append(r.Ratios, ratio{"tracehop peak RSS, MiB, traced at saturation", peak, "< 64", peak < 64})
		}
		// Every zipkin configuration (plaintext and TLS) reports to the
		// one receiver: what it received is set on tracehop-zipkin's row.
		sampled := int64(0)
		for _, name := range []string{"tracehop-zipkin", "tracehop-zipkin-grpc", "tracehop-zipkin-tls"} {
			for _, n := range []string{name, name + "@base"} {
				if c, ok := r.Configs[n]; ok {
					sampled += c.SpansSampled
				}
			}
		}
		if c := r.Configs["tracehop-zipkin"]; sampled > 0 {
			v := float64(c.SpansReceived) / float64(sampled)
			r.Ratios = append(r.Ratios, ratio{"spans received by the Zipkin receiver / spans sampled (every zipkin configuration)", v, "= 1", c.SpansReceived == sampled})
		}
	}
}

// paired is the median of f over the rounds' pairs of configurations a
// and b, round i of one against round i of the other (see finish); false
// when either has no rounds.
func (r *results) paired(a, b string, f func(x, y sample) float64) (float64, bool) {
	ca, okA := r.Configs[a]
	cb, okB := r.Configs[b]
	switch {
	case !okA || !okB || len(ca.Rounds) == 0 || len(cb.Rounds) == 0:
		return 0, false
	case len(ca.Rounds) != len(cb.Rounds): // a run cut short: no pairs
		return f(ca.Median, cb.Median), true
	}
	v := make([]float64, len(ca.Rounds))
	for i := range ca.Rounds {
		v[i] = f(ca.Rounds[i], cb.Rounds[i])
	}
	slices.Sort(v)
	return v[len(v)/2], true
}

// wholeMachine is the CPU per request of the proxy and of everything else
// the run measured beside it (upstream, span receiver, wrk).
func wholeMachine(s sample) float64 {
	t := s.CPUPerReq
	for _, v := range s.OthersCPU {
		t += v
	}
	return t
}

// The README's markers for issue 25's accounting of a one-worker run.
const issue25Begin, issue25End = "<!-- bench-issue25:begin -->", "<!-- bench-issue25:end -->"

// issue25 renders issue 25's accounting of the run's traced requests, as
// paired medians: what tracing costs tracehop and its driver, this build
// and the baseline's (all CPU, then user space, where the kernel's
// round-to-round swing does not reach); where else on the machine a
// traced request's cost lands, which is what a req/s ratio measures when
// everything shares the cores; and untraced tracehop beside the peers
// sending the upstream the same headers. "" when the run has no untraced
// tracehop row.
func (r *results) issue25() string {
	if c := r.Configs["tracehop"]; c == nil || len(c.Rounds) == 0 {
		return ""
	}
	var b strings.Builder
	cell := func(v float64, ok bool) string {
		if !ok {
			return "-"
		}
		return fmt.Sprintf("%.1f", v)
	}
	// tracing is name's CPU per request over untraced's: all of it, and
	// tracehop's share over untraced with the driver process's median.
	tracing := func(name, untraced string, user bool) string {
		all := func(s sample) float64 { return s.CPUPerReq }
		host := func(s sample) float64 { return s.CPUByProcess["tracehop"] }
		drv := func(s sample) float64 { return s.CPUByProcess["tracehop-driver"] }
		if user {
			all = func(s sample) float64 { return s.UserCPUPerReq }
			host = func(s sample) float64 { return s.UserCPUByProcess["tracehop"] }
			drv = func(s sample) float64 { return s.UserCPUByProcess["tracehop-driver"] }
		}
		c := r.Configs[name]
		if c == nil || len(c.Rounds) == 0 || (user && c.Rounds[0].UserCPUPerReq == 0) {
			return "-"
		}
		over, ok := r.paired(name, untraced, func(x, y sample) float64 { return all(x) - all(y) })
		if !ok {
			return "-"
		}
		hostOver, _ := r.paired(name, untraced, func(x, y sample) float64 { return host(x) - all(y) })
		return fmt.Sprintf("%.1f (tracehop %.1f, driver %.1f)", over, hostOver, median(c.Rounds, drv))
	}
	b.WriteString("| CPU µs per request over untraced (tracehop's share, paired; the driver's, its median: the parts need not add up) | this build | baseline, same run | this build, user space | baseline, user space |\n|---|---:|---:|---:|---:|\n")
	for _, d := range []string{"otlp", "file", "zipkin"} {
		name := "tracehop-" + d
		if _, ok := r.Configs[name]; !ok {
			continue
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", d, tracing(name, "tracehop", false), tracing(name+"@base", "tracehop@base", false),
			tracing(name, "tracehop", true), tracing(name+"@base", "tracehop@base", true))
	}
	if c := r.Configs["tracehop"]; c.Rounds[0].OthersCPU != nil {
		b.WriteString("\n| CPU µs per traced request over untraced, saturated | tracehop | its driver | the upstream | the span receiver | wrk | whole machine | req/s ratio that allows | req/s ratio measured |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, d := range []string{"otlp", "file", "zipkin"} {
			name := "tracehop-" + d
			c := r.Configs[name]
			if c == nil || len(c.Rounds) == 0 || c.Rounds[0].OthersCPU == nil {
				continue
			}
			row := []string{"`" + d + "`",
				cell(r.paired(name, "tracehop", func(x, y sample) float64 { return x.CPUByProcess["tracehop"] - y.CPUPerReq })),
				fmt.Sprintf("%.1f", median(c.Rounds, func(s sample) float64 { return s.CPUByProcess["tracehop-driver"] }))}
			for _, k := range []string{"upstream", "receiver", "wrk"} {
				row = append(row, cell(r.paired(name, "tracehop", func(x, y sample) float64 { return x.OthersCPU[k] - y.OthersCPU[k] })))
			}
			row = append(row, cell(r.paired(name, "tracehop", func(x, y sample) float64 { return wholeMachine(x) - wholeMachine(y) })))
			allows, _ := r.paired("tracehop", name, func(x, y sample) float64 { return wholeMachine(x) / wholeMachine(y) })
			measured, _ := r.paired(name, "tracehop", func(x, y sample) float64 { return x.RPS / y.RPS })
			row = append(row, fmt.Sprintf("%.2f", allows), fmt.Sprintf("%.2f", measured))
			b.WriteString("| " + strings.Join(row, " | ") + " |\n")
		}
		b.WriteString("\n| untraced, saturated | req/s | CPU µs/req | of which user space | the upstream's CPU µs/req | wrk's | whole machine | tracehop's req/s over this row's (paired) |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, name := range []string{"tracehop", "nginx", "haproxy", "nginx-reqid", "haproxy-reqid"} {
			c := r.Configs[name]
			if c == nil || len(c.Rounds) == 0 || c.Rounds[0].OthersCPU == nil {
				continue
			}
			over := "-"
			if name != "tracehop" {
				if v, ok := r.paired("tracehop", name, func(x, y sample) float64 { return x.RPS / y.RPS }); ok {
					over = fmt.Sprintf("%.2f", v)
				}
			}
			fmt.Fprintf(&b, "| %s | %.0f | %.1f | %.1f | %.1f | %.1f | %.1f | %s |\n", name, c.Median.RPS, c.Median.CPUPerReq,
				median(c.Rounds, func(s sample) float64 { return s.UserCPUPerReq }),
				median(c.Rounds, func(s sample) float64 { return s.OthersCPU["upstream"] }),
				median(c.Rounds, func(s sample) float64 { return s.OthersCPU["wrk"] }),
				median(c.Rounds, wholeMachine), over)
		}
	}
	fmt.Fprintf(&b, "\nFrom the %s rounds of the run above (%s): a difference or ratio between two configurations is the median of the rounds' pairs; a configuration's own figure, the median of its rounds. `tracehop-bench -render FILE.json -readme README.md` writes these tables with the one above.\n",
		r.Settings["rounds"], r.Date.Format("2006-01-02 15:04"))
	return b.String()
}

// outside adds what a traced configuration's requests cost the rest of
// the machine over untraced ones (results from before it was recorded
// have none): the upstream parses the trace headers tracehop adds, the
// span receiver takes the spans, and wrk is the control. The proxy, its
// driver and these share the cores, so the req/s ratio of traced to
// untraced follows the whole machine's CPU per request, not tracehop's
// alone: the last row is the ratio that CPU allows.
func (r *results) outside(name, driver string, paired func(a, b string, f func(x, y sample) float64) (float64, bool)) {
	ca, cb := r.Configs[name], r.Configs["tracehop"]
	if ca == nil || cb == nil || len(ca.Rounds) == 0 || len(cb.Rounds) == 0 || ca.Rounds[0].OthersCPU == nil || cb.Rounds[0].OthersCPU == nil {
		return
	}
	for _, who := range []struct{ key, label string }{{"upstream", "the upstream"}, {"receiver", "the span receiver"}, {"wrk", "wrk"}} {
		if over, ok := paired(name, "tracehop", func(x, y sample) float64 { return x.OthersCPU[who.key] - y.OthersCPU[who.key] }); ok {
			r.Ratios = append(r.Ratios, ratio{"CPU µs per traced request over tracing off, outside tracehop, in " + who.label + ": " + driver, over, "compared", true})
		}
	}
	if v, ok := paired("tracehop", name, func(x, y sample) float64 { return wholeMachine(x) / wholeMachine(y) }); ok {
		r.Ratios = append(r.Ratios, ratio{"whole machine's CPU per request, untraced / traced: the req/s ratio it allows: " + driver, v, "compared", true})
	}
}

// rssCell is the total RSS of a process tree, with each process's when
// there are several.
func rssCell(rss map[string][2]int64) string {
	var total int64
	var parts []string
	for _, comm := range slices.Sorted(maps.Keys(rss)) {
		total += rss[comm][0]
		parts = append(parts, fmt.Sprintf("%s %.1f", comm, float64(rss[comm][0])/(1<<20)))
	}
	if len(parts) == 1 {
		return fmt.Sprintf("%.1f", float64(total)/(1<<20))
	}
	return fmt.Sprintf("%.1f (%s)", float64(total)/(1<<20), strings.Join(parts, ", "))
}

// mib writes bytes in MiB, "-" for none (a run from before it was measured).
func mib(b int64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", float64(b)/(1<<20))
}

func us(d time.Duration) string { return strconv.FormatInt(d.Microseconds(), 10) }

// table renders the medians and the ratios as Markdown.
func (r *results) table() string {
	var b strings.Builder
	direct := 0.0
	if c, ok := r.Configs["direct"]; ok {
		direct = c.Median.RPS
	}
	fmt.Fprintf(&b, "| config | req/s (median) | x direct | req/s per round | CPU µs/req, saturated | CPU µs/req @%s | p50 / p90 / p99 µs @%s | wrk p99 µs | peak RSS MiB | spans sampled / exported / received | new conn/s (CPU µs each) | errors |\n",
		r.qps(), r.qps())
	b.WriteString("|---|---:|---:|---|---:|---:|---|---:|---:|---|---:|---:|\n")
	for _, name := range r.Order {
		c := r.Configs[name]
		m := c.Median
		var per []string
		for _, s := range c.Rounds {
			per = append(per, strconv.Itoa(int(s.RPS)))
		}
		x := "-"
		if direct > 0 {
			x = fmt.Sprintf("%.2f", m.RPS/direct)
		}
		cpu, fixedCPU, rss := "-", "-", "-"
		if name != "direct" {
			cpu = fmt.Sprintf("%.1f", m.CPUPerReq)
			if len(m.CPUByProcess) > 1 {
				var parts []string
				for comm, v := range m.CPUByProcess {
					if v >= 0.05 {
						parts = append(parts, fmt.Sprintf("%s %.1f", comm, v))
					}
				}
				slices.Sort(parts)
				cpu += " (" + strings.Join(parts, ", ") + ")"
			}
			fixedCPU = fmt.Sprintf("%.1f", m.FixedCPUPerReq)
			var peak int64
			for _, v := range c.RSS {
				peak += v[1]
			}
			rss = fmt.Sprintf("%.1f", float64(peak)/(1<<20))
		}
		spans := ""
		if c.SpansSampled > 0 {
			recv := "-"
			if c.SpansReceived > 0 {
				recv = strconv.FormatInt(c.SpansReceived, 10)
			}
			spans = fmt.Sprintf("%d / %d / %s", c.SpansSampled, c.SpansExported, recv)
			for reason, n := range c.SpansDropped {
				spans += fmt.Sprintf(", dropped %s %d", reason, n)
			}
		}
		newConn := "-"
		if m.NewConnRPS > 0 {
			newConn = fmt.Sprintf("%.0f (%.0f)", m.NewConnRPS, m.NewConnCPU)
		}
		fmt.Fprintf(&b, "| %s | %.0f | %s | %s | %s | %s | %s / %s / %s | %s | %s | %s | %s | %d |\n",
			name, m.RPS, x, strings.Join(per, " "), cpu, fixedCPU, us(m.FixedP50), us(m.FixedP90), us(m.FixedP99), us(m.SatP99), rss, spans, newConn, c.Errors)
	}
	mem := false
	for _, name := range r.Order {
		if c := r.Configs[name]; c.IdleRSS != nil && c.RateRSS != nil {
			if !mem {
				b.WriteString("\n| memory per sidecar, MiB | RSS idle | RSS at 1,000 req/s | shared pages once, idle | shared pages once, at 1,000 req/s |\n|---|---:|---:|---:|---:|\n")
				mem = true
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", name, rssCell(c.IdleRSS), rssCell(c.RateRSS), mib(c.IdleMem), mib(c.RateMem))
		}
	}
	if len(r.Ratios) > 0 {
		b.WriteString("\n| target (issues 6, 14, 25) | measured | target | met |\n|---|---:|---|---|\n")
		for _, q := range r.Ratios {
			met := "yes"
			if !q.Met {
				met = "**no**"
			} else if q.Target == "compared" {
				met = "-"
			}
			fmt.Fprintf(&b, "| %s | %.2f | %s | %s |\n", q.Name, q.Value, q.Target, met)
		}
	}
	fmt.Fprintf(&b, "\nMeasured %s on %s CPUs (%s), Linux %s, %s; %s rounds, medians.%s\n",
		r.Date.Format("2006-01-02"), r.Machine["cpus"], r.Machine["cpu"], r.Machine["kernel"], r.Machine["go"], r.Settings["rounds"], r.stealNote())
	return b.String()
}

// stealNote says how much CPU the hypervisor took from the machine during
// the rounds, when it measured it: a reader cannot tell a slow proxy from a
// starved machine otherwise.
func (r *results) stealNote() string {
	var steal []float64
	for _, c := range r.Configs {
		for _, s := range c.Rounds {
			steal = append(steal, s.StealPct)
		}
	}
	if len(steal) == 0 || slices.Max(steal) == 0 {
		return ""
	}
	slices.Sort(steal)
	note := fmt.Sprintf(" CPU stolen by the hypervisor during the rounds: median %.0f%%, most %.0f%%", steal[len(steal)/2], steal[len(steal)-1])
	if steal[len(steal)/2] >= 5 {
		note += " (not a steady machine: compare within a round, and trust CPU µs/req over req/s and p99)"
	}
	return note + "."
}

func (r *results) qps() string {
	f := strings.Fields(r.Settings["fixed_rate"])
	return f[3] + " req/s"
}

func (r *results) write(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	host, _ := os.Hostname()
	path := filepath.Join(dir, r.Date.Format("2006-01-02T150405Z")+"-"+host+".json")
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", err
	}
	return path, os.WriteFile(path, append(b, '\n'), 0o644)
}

// render replaces the README's table between the bench markers: those of
// the run's worker count beyond one (<!-- bench-2workers:begin -->).
func (r *results) render(readme string) error {
	beginMark, endMark := "<!-- bench:begin -->", "<!-- bench:end -->"
	if w := r.Settings["workers"]; w != "" && w != "1" {
		beginMark, endMark = "<!-- bench-"+w+"workers:begin -->", "<!-- bench-"+w+"workers:end -->"
	}
	if err := replaceBetween(readme, beginMark, endMark, r.table()); err != nil {
		return err
	}
	if beginMark != "<!-- bench:begin -->" {
		return nil
	}
	if text := r.issue25(); text != "" {
		if b, err := os.ReadFile(readme); err == nil && strings.Contains(string(b), issue25Begin) {
			return replaceBetween(readme, issue25Begin, issue25End, text)
		}
	}
	return nil
}

// scrape reads a Prometheus text page into name{labels} -> value.
func scrape(url string) (map[string]float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			m[line[:i]] = v
		}
	}
	return m, sc.Err()
}
