// Command bench is tracehop's load harness, run by `make bench`: it starts
// an upstream, a counting Zipkin receiver, tracehop untraced and traced,
// a minimal Go reverse proxy, nginx and HAProxy (when installed), loads
// each in interleaved rounds with wrk and fortio, and prints the medians
// and the ratios issue 6 sets as targets. Results go to bench/results/ as
// JSON; -readme rewrites the README's table.
//
// The settings follow ../shared/research/perf-peers.md so that the numbers
// can be set beside the peers': one worker thread per proxy, keep-alive on
// both sides, no access logs, everything on 127.0.0.1.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tracehop/tracehop/internal/tlstest"
)

// target is one configuration under load.
type target struct {
	Name string `json:"name"`
	Desc string `json:"description"`
	addr string
	proc *proc
	// admin is tracehop's admin address, for its span counters; more, the
	// other processes' of a configuration of several (reuse_port).
	admin  string
	more   []string
	traced bool
	// tls: the target terminates TLS (the same ECDSA P-256 certificate and
	// TLS 1.3 cipher for every one); it also gets a new-connection run.
	tls bool
}

func (t *target) url() string {
	if t.tls {
		return "https://" + t.addr + "/"
	}
	return "http://" + t.addr + "/"
}

type options struct {
	bin, tools, out, readme string
	rounds                  int
	satDur, rateDur, warmup time.Duration
	qps, conns, rateConns   int
	basePort                int
	only                    string
	profile                 string
	workers                 int
	baseline                string
	requests                int  // per round of -instructions
	syscalls                bool // count system calls instead of timing
}

func main() {
	if len(os.Args) > 1 && !strings.HasPrefix(os.Args[1], "-") {
		runHelper(os.Args[1:])
	}
	var o options
	home, _ := os.UserHomeDir()
	flag.StringVar(&o.bin, "bin", "bin", "where `make build` put tracehop and its drivers")
	flag.StringVar(&o.tools, "tools", filepath.Join(home, ".cache/tracehop/tools"), "where `make bench-deps` put fortio")
	flag.StringVar(&o.out, "out", "bench/results", "directory for the JSON result")
	flag.StringVar(&o.readme, "readme", "", "rewrite the table between <!-- bench:begin --> and <!-- bench:end --> in this file")
	flag.IntVar(&o.rounds, "rounds", 3, "interleaved rounds")
	flag.DurationVar(&o.satDur, "saturated", 8*time.Second, "length of each saturating wrk run")
	flag.DurationVar(&o.rateDur, "fixed", 6*time.Second, "length of each fixed-rate fortio run")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "unrecorded wrk warm-up per configuration")
	flag.IntVar(&o.qps, "qps", 2000, "request rate of the fixed-rate runs")
	flag.IntVar(&o.conns, "c", 50, "wrk connections")
	flag.IntVar(&o.rateConns, "rate-c", 16, "fortio connections")
	flag.IntVar(&o.basePort, "port", 18080, "first of the loopback ports used")
	flag.StringVar(&o.only, "only", "", "comma-separated configurations to run (default: all available)")
	flag.IntVar(&o.workers, "workers", 1, "worker threads of every proxy: GOMAXPROCS of tracehop and go-httputil, nginx worker_processes, HAProxy nbthread (the driver keeps 1); with -readme, a run with more than 1 rewrites its own table")
	flag.StringVar(&o.baseline, "baseline", "", "also run tracehop, tracehop-zipkin, tracehop-otlp and tracehop-file with the binaries in this `directory` (an older build: make build BIN=DIR on its checkout), as NAME@base, for old against new in the same run")
	flag.StringVar(&o.profile, "profile", "", "write a CPU profile of each tracehop configuration into this `directory` (NAME.pprof, for go tool pprof)")
	render := flag.String("render", "", "render the table of this results `file` (JSON) again, into -readme if given, without measuring")
	instr := flag.Bool("instructions", false, "count the instructions per request of tracehop and its driver under valgrind's callgrind (untraced, otlp, file; -baseline beside), instead of timing them: repeatable on a busy machine; -readme rewrites its own table")
	flag.IntVar(&o.requests, "n", 10000, "requests per round of -instructions")
	flag.BoolVar(&o.syscalls, "syscalls", false, "count each proxy's system calls and context switches per request under saturation with perf stat's tracepoints, instead of timing them (-only picks the proxies); -readme rewrites its own table")
	upstream := flag.Bool("upstream", false, "read `go test -bench UpstreamPropagation ./bench` output on stdin and write its table (into -readme if given)")
	flag.Parse()
	if *upstream {
		if err := renderUpstream(os.Stdin, o.readme); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if *render != "" {
		if err := rerender(*render, o.readme); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	bench := run
	if *instr {
		bench = runInstr
	}
	if err := bench(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// rerender computes the medians and ratios of a saved run again (after a
// change to how they are computed) and prints its table, rewriting the
// README's when readme is set.
func rerender(file, readme string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var ir instrRun // a run of -instructions, which has its own table
	if err := json.Unmarshal(b, &ir); err == nil && ir.Requests > 0 {
		return ir.render(readme)
	}
	var sr syscallRun // a run of -syscalls, which has its own table too
	if err := json.Unmarshal(b, &sr); err == nil && len(sr.Configs) > 0 {
		return sr.render(readme)
	}
	var res results
	if err := json.Unmarshal(b, &res); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	res.Ratios = nil
	res.finish()
	fmt.Print(res.table())
	if readme != "" {
		return res.render(readme)
	}
	return nil
}

// tracehopYAML is the config of one tracehop configuration: an ingress
// listener on addr (tlsBlock: its tls settings, or "") sending everything
// to upstream, the admin server on admin, and tracing, a block of
// tracingYAML or "" for none.
func tracehopYAML(admin, addr, tlsBlock, upstream, tracing string) string {
	return fmt.Sprintf(`node: {id: bench, service: bench}
admin: {address: %q}
listeners:
  - {name: in, address: %q, direction: ingress, routes: [{match: {prefix: /}, cluster: up}]%s}
clusters:
  - {name: up, endpoints: [%q]}
%s`, admin, addr, tlsBlock, upstream, tracing)
}

// tracingYAML is a tracing block sampling every request into driver, found
// in pluginDir; transport "" is the default. The driver runs with
// GOMAXPROCS 1 and env, more entries of its environment as YAML ("" for
// none); config is its config, a YAML flow mapping.
func tracingYAML(pluginDir, driver, transport, env, config string) string {
	t := ""
	if transport != "" {
		t = "    transport: " + transport + "\n"
	}
	if env != "" {
		env = ", " + env
	}
	return fmt.Sprintf("tracing:\n  plugin_dir: %q\n  sampling: {random: 100}\n  driver:\n    name: %s\n%s    env: {GOMAXPROCS: \"1\"%s}\n    config: %s\n",
		pluginDir, driver, t, env, config)
}

// The drivers' configs: into the counting receiver at sink, or to nowhere.
func zipkinConfig(sink string) string {
	return fmt.Sprintf(`{collector_endpoint: "http://%s/api/v2/spans", encoding: proto}`, sink)
}

func otlpConfig(sink string) string {
	return fmt.Sprintf(`{endpoint: "http://%s/v1/traces", protocol: http/protobuf, compression: none}`, sink)
}

const fileConfig = `{path: /dev/null}`

func lookTool(name, dir string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, d := range []string{dir, "/usr/sbin"} {
		if p := filepath.Join(d, name); fileExists(p) {
			return p
		}
	}
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func run(ctx context.Context, o options) error {
	wrk, fortio := lookTool("wrk", o.tools), lookTool("fortio", o.tools)
	if wrk == "" || fortio == "" {
		return errors.New("wrk and fortio are needed: run `make bench-deps` (apt wrk nginx-light haproxy, go install fortio)")
	}
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return err
	}
	if o.profile != "" {
		if o.profile, err = filepath.Abs(o.profile); err != nil {
			return err
		}
		if err := os.MkdirAll(o.profile, 0o755); err != nil {
			return err
		}
	}
	if !fileExists(filepath.Join(bin, "tracehop")) {
		return fmt.Errorf("no tracehop in %s: run `make build` first", bin)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "tracehop-bench-")
	if err != nil {
		return err
	}
	fmt.Printf("bench: work files and logs in %s\n", dir)

	port := o.basePort
	next := func() string { port++; return fmt.Sprintf("127.0.0.1:%d", port-1) }
	upstreamAddr, sinkAddr := next(), next()
	var procs []*proc
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()
	launch := func(name, addr string, env []string, argv ...string) (*proc, error) {
		return launchInto(&procs, dir, name, addr, env, argv...)
	}
	upstreamProc, sinkProc, err := startHelpers(&procs, dir, self, upstreamAddr, sinkAddr)
	if err != nil {
		return err
	}
	others := map[string]*proc{"upstream": upstreamProc, "receiver": sinkProc}

	one := []string{fmt.Sprintf("GOMAXPROCS=%d", o.workers)}
	var targets []*target
	// suffix names the configurations of the baseline's binaries (@base),
	// while their steps run again with bin set to the baseline.
	suffix := ""
	want := func(name string) bool {
		name = strings.TrimSuffix(name, "@base")
		return o.only == "" || strings.Contains(","+o.only+",", ","+name+",")
	}
	add := func(t *target, env []string, argv ...string) error {
		if !want(t.Name) {
			return nil
		}
		if len(argv) > 0 {
			p, err := launch(t.Name, t.addr, env, argv...)
			if err != nil {
				return err
			}
			t.proc = p
		}
		if t.admin != "" {
			if err := waitReady(ctx, "http://"+t.admin+"/ready"); err != nil {
				return fmt.Errorf("%s: %w (log: %s)", t.Name, err, t.proc.log)
			}
		}
		targets = append(targets, t)
		return nil
	}
	if err := add(&target{Name: "direct", Desc: "wrk straight to the upstream", addr: upstreamAddr}, nil); err != nil {
		return err
	}
	certFile, keyFile, err := benchCert(dir)
	if err != nil {
		return err
	}
	tracehop := func(name, desc, tracing string, traced bool) error {
		name += suffix
		if suffix != "" {
			desc += " (baseline build)"
		}
		addr, admin := next(), next()
		cfg := filepath.Join(dir, name+".yaml")
		tlsBlock := ""
		if strings.HasSuffix(name, "-tls") {
			tlsBlock = fmt.Sprintf(", tls: {cert_file: %q, key_file: %q, alpn: [http/1.1]}", certFile, keyFile)
		}
		if err := os.WriteFile(cfg, []byte(tracehopYAML(admin, addr, tlsBlock, upstreamAddr, tracing)), 0o644); err != nil {
			return err
		}
		argv := []string{filepath.Join(bin, "tracehop"), "run", "-c", cfg, "-access-log=false", "-log-level", "warn"}
		if o.profile != "" {
			argv = append(argv, "-cpuprofile", filepath.Join(o.profile, name+".pprof"))
		}
		return add(&target{Name: name, Desc: desc, addr: addr, admin: admin, traced: traced, tls: tlsBlock != ""}, one, argv...)
	}
	// native starts a peer installed from Debian (when it is) with a config
	// file made for its address; args come before the file's path.
	native := func(name, desc, file string, conf func(addr string) string, args ...string) error {
		path := lookTool(strings.Split(name, "-")[0], "") // nginx-tls: nginx
		if path == "" {
			fmt.Printf("bench: %s is not installed (make bench-deps): skipped\n", name)
			return nil
		}
		addr, cfg := next(), filepath.Join(dir, file)
		if err := os.WriteFile(cfg, []byte(conf(addr)), 0o644); err != nil {
			return err
		}
		return add(&target{Name: name, Desc: desc, addr: addr, tls: strings.HasSuffix(name, "-tls")}, nil, append([]string{path}, append(args, cfg)...)...)
	}
	// reusePort starts, with more than one worker, `tracehop run
	// -workers N`: N tracehop processes of one processor each, sharing
	// the listener (reuse_port), as nginx runs a worker process per core;
	// each has its own driver, and worker i its admin server on the
	// admin port + 1 + i, whose metrics are read as they are (the
	// supervisor's, on the admin port, label them by worker).
	reusePort := func(name, desc, tracing string, traced bool) error {
		if o.workers < 2 || suffix != "" || !want(name) {
			return nil
		}
		addr := next()
		var admins []string
		for range o.workers + 1 {
			admins = append(admins, next()) // consecutive ports: the supervisor's, then the workers'
		}
		cfg := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(cfg, []byte(tracehopYAML(admins[0], addr, ", reuse_port: true", upstreamAddr, tracing)), 0o644); err != nil {
			return err
		}
		t := &target{Name: name, Desc: fmt.Sprintf("%s; tracehop run -workers %d (processes of GOMAXPROCS 1 sharing the listener, reuse_port)", desc, o.workers),
			addr: addr, admin: admins[1], more: admins[2:], traced: traced}
		if err := add(t, nil, filepath.Join(bin, "tracehop"), "run", "-c", cfg, "-access-log=false", "-log-level", "warn", "-workers", strconv.Itoa(o.workers)); err != nil {
			return err
		}
		for _, a := range append([]string{admins[0]}, t.more...) {
			if err := waitReady(ctx, "http://"+a+"/ready"); err != nil {
				return fmt.Errorf("%s: %w (log: %s)", name, err, t.proc.log)
			}
		}
		return nil
	}
	driverEnv := func(name string) string {
		if o.profile != "" { // sdk.ProfileEnv
			return fmt.Sprintf("TRACEHOP_DRIVER_CPUPROFILE: %q", filepath.Join(o.profile, name+"-driver.pprof"))
		}
		return ""
	}
	steps := []func() error{
		func() error {
			return tracehop("tracehop", "tracehop, tracing off", "", false)
		},
		func() error {
			return tracehop("tracehop-zipkin", "tracehop, 100% sampled, zipkin driver (proto) to the counting receiver",
				tracingYAML(bin, "zipkin", "", driverEnv("tracehop-zipkin"), zipkinConfig(sinkAddr)), true)
		},
		func() error {
			// The same, with the batches inside the Export RPC (the
			// transport before the span ring): the ring's effect, measured
			// in the same run.
			return tracehop("tracehop-zipkin-grpc", "tracehop, 100% sampled, zipkin driver (proto), spans over gRPC (transport: grpc)",
				tracingYAML(bin, "zipkin", "grpc", driverEnv("tracehop-zipkin-grpc"), zipkinConfig(sinkAddr)), true)
		},
		func() error {
			return tracehop("tracehop-otlp", "tracehop, 100% sampled, otlp driver (HTTP/protobuf) to a receiver that counts spans without decoding them",
				tracingYAML(bin, "otlp", "", driverEnv("tracehop-otlp"), otlpConfig(sinkAddr)), true)
		},
		func() error {
			return tracehop("tracehop-file", "tracehop, 100% sampled, file driver to /dev/null",
				tracingYAML(bin, "file", "", driverEnv("tracehop-file"), fileConfig), true)
		},
		func() error {
			return reusePort("tracehop-reuseport", "tracehop, tracing off", "", false)
		},
		func() error {
			return reusePort("tracehop-otlp-reuseport", "tracehop, 100% sampled, otlp driver (HTTP/protobuf) to the receiver that does not decode",
				tracingYAML(bin, "otlp", "", "", otlpConfig(sinkAddr)), true)
		},
		func() error {
			addr := next()
			return add(&target{Name: "go-httputil", Desc: "minimal httputil.ReverseProxy (Rewrite, tuned Transport)", addr: addr}, one, self, "goproxy", addr, upstreamAddr)
		},
		func() error {
			return native("nginx", fmt.Sprintf("nginx, worker_processes %d, upstream keepalive", o.workers), "nginx.conf",
				func(addr string) string { return nginxConf(dir, addr, upstreamAddr, o.workers) }, "-p", dir, "-c")
		},
		func() error {
			return native("haproxy", fmt.Sprintf("HAProxy, nbthread %d, http-keep-alive", o.workers), "haproxy.cfg",
				func(addr string) string { return haproxyConf(addr, upstreamAddr, o.workers) }, "-db", "-f")
		},
		// The peers again, sending the upstream what untraced tracehop
		// sends (Envoy's defaults): X-Forwarded-Proto and a new
		// X-Request-Id beside X-Forwarded-For. Each header is work for
		// the upstream, which shares the cores: these rows compare like
		// with like.
		func() error {
			sub := filepath.Join(dir, "reqid")
			if err := os.MkdirAll(sub, 0o755); err != nil {
				return err
			}
			return native("nginx-reqid", fmt.Sprintf("nginx, worker_processes %d, adding X-Forwarded-Proto and X-Request-Id ($request_id) as tracehop does", o.workers), "nginx-reqid.conf",
				func(addr string) string { return nginxReqIDConf(sub, addr, upstreamAddr, o.workers) }, "-p", sub, "-c")
		},
		func() error {
			return native("haproxy-reqid", fmt.Sprintf("HAProxy, nbthread %d, adding X-Forwarded-Proto and X-Request-Id (uuid()) as tracehop does", o.workers), "haproxy-reqid.cfg",
				func(addr string) string { return haproxyReqIDConf(addr, upstreamAddr, o.workers) }, "-db", "-f")
		},
		// TLS termination, side by side: one ECDSA P-256 certificate, TLS
		// 1.3 with TLS_AES_128_GCM_SHA256 (Go's choice; nginx and HAProxy
		// are told to make it too) and X25519 (what wrk's OpenSSL offers).
		func() error {
			return tracehop("tracehop-tls", "tracehop on TLS, tracing off", "", false)
		},
		func() error {
			return tracehop("tracehop-zipkin-tls", "tracehop on TLS, 100% sampled, zipkin driver (proto)",
				tracingYAML(bin, "zipkin", "", driverEnv("tracehop-zipkin-tls"), zipkinConfig(sinkAddr)), true)
		},
		func() error {
			if err := os.MkdirAll(filepath.Join(dir, "tls"), 0o755); err != nil {
				return err
			}
			return native("nginx-tls", "nginx on TLS, worker_processes 1, upstream keepalive", "nginx-tls.conf",
				func(addr string) string {
					return nginxTLSConf(filepath.Join(dir, "tls"), addr, upstreamAddr, certFile, keyFile, o.workers)
				}, "-p", filepath.Join(dir, "tls"), "-c")
		},
		func() error {
			pem := filepath.Join(dir, "haproxy.pem")
			c, _ := os.ReadFile(certFile)
			k, _ := os.ReadFile(keyFile)
			if err := os.WriteFile(pem, append(c, k...), 0o600); err != nil {
				return err
			}
			return native("haproxy-tls", "HAProxy on TLS, nbthread 1, http-keep-alive", "haproxy-tls.cfg",
				func(addr string) string { return haproxyTLSConf(addr, upstreamAddr, pem, o.workers) }, "-db", "-f")
		},
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return err
		}
	}
	if o.baseline != "" {
		// The first steps again (tracehop untraced, zipkin over the ring
		// and over gRPC, otlp, file: keep them first) from the baseline's
		// binaries.
		if bin, err = filepath.Abs(o.baseline); err != nil {
			return err
		}
		if !fileExists(filepath.Join(bin, "tracehop")) {
			return fmt.Errorf("no tracehop in the baseline %s", bin)
		}
		suffix = "@base"
		for _, s := range steps[:5] {
			if err := s(); err != nil {
				return err
			}
		}
	}
	for _, t := range targets {
		fmt.Printf("bench: %-20s %s  %s\n", t.Name, t.url(), t.Desc)
	}

	if o.syscalls {
		return countSyscalls(ctx, wrk, targets, o)
	}
	res := newResults(o, targets)
	for _, t := range targets {
		if t.admin != "" && t.proc != nil { // tracehop, before any request
			res.Configs[t.Name].IdleRSS = treeRSS(t.proc.pid())
			res.Configs[t.Name].IdleMem = treeMem(t.proc.pid())
		}
	}
	total := len(targets) * o.rounds
	fmt.Printf("bench: warm-up %s each, then %d rounds x %d configurations (wrk %s saturated, fortio %s at %d req/s): about %s\n",
		o.warmup, o.rounds, len(targets), o.satDur, o.rateDur, o.qps,
		(time.Duration(len(targets))*o.warmup + time.Duration(total)*(o.satDur+o.rateDur+time.Second) + 8*time.Second).Round(time.Second))
	for _, t := range targets {
		if _, err := runWrk(ctx, wrk, t.url(), o.conns, o.warmup); err != nil {
			return fmt.Errorf("%s warm-up: %w", t.Name, err)
		}
	}
	step := 0
	for round := 1; round <= o.rounds; round++ {
		for _, t := range targets {
			step++
			r, err := measure(ctx, wrk, fortio, t, others, o)
			if err != nil {
				return fmt.Errorf("%s, round %d: %w", t.Name, round, err)
			}
			res.add(t.Name, r)
			fmt.Printf("bench: [%2d/%d] round %d %-16s %8.0f req/s  cpu %5.1f µs/req  p99@%d %6s  errors %d  steal %.1f%%\n",
				step, total, round, t.Name, r.RPS, r.CPUPerReq, o.qps, r.FixedP99.Round(time.Microsecond), r.Errors, r.StealPct)
		}
	}
	// Memory per sidecar at a steady 1,000 req/s.
	for _, t := range targets {
		if t.admin == "" || t.proc == nil || t.tls {
			continue
		}
		done := make(chan error, 1)
		go func() {
			_, err := runFortio(ctx, fortio, t.url(), 1000, o.rateConns, 12*time.Second)
			done <- err
		}()
		select {
		case <-time.After(10 * time.Second):
			res.Configs[t.Name].RateRSS = treeRSS(t.proc.pid())
			res.Configs[t.Name].RateMem = treeMem(t.proc.pid())
		case <-ctx.Done():
		}
		if err := <-done; err != nil {
			return fmt.Errorf("%s at 1,000 req/s: %w", t.Name, err)
		}
	}
	// Let the exporters flush (batches leave every 200 ms), then count.
	time.Sleep(3 * time.Second)
	sinkSpans, otlpSpans, err := sinkCount(sinkAddr)
	if err != nil {
		return err
	}
	for _, t := range targets {
		if t.proc != nil {
			res.memory(t.Name, treeRSS(t.proc.pid()))
		}
		if t.traced {
			m := map[string]float64{}
			for _, a := range append([]string{t.admin}, t.more...) {
				one, err := scrape("http://" + a + "/metrics")
				if err != nil {
					return err
				}
				for k, v := range one {
					m[k] += v
				}
			}
			res.spans(t.Name, m)
		}
	}
	if _, ok := res.Configs["tracehop-zipkin"]; ok {
		res.Configs["tracehop-zipkin"].SpansReceived = sinkSpans
	}
	// The OTLP receiver counts every otlp configuration's spans: the
	// first of them present carries the count (report.go checks it).
	for _, n := range otlpRows {
		if c, ok := res.Configs[n]; ok {
			c.SpansReceived = otlpSpans
			break
		}
	}
	res.finish()
	fmt.Println()
	fmt.Print(res.table())
	path, err := res.write(o.out)
	if err != nil {
		return err
	}
	fmt.Printf("\nbench: results written to %s\n", path)
	if o.readme != "" {
		if err := res.render(o.readme); err != nil {
			return err
		}
		fmt.Printf("bench: %s's table rewritten\n", o.readme)
	}
	return nil
}

// measure runs one saturated and one fixed-rate load against t, with the
// CPU its processes used during each, and what others (the harness's
// upstream and span receiver) and wrk used during the saturated one.
func measure(ctx context.Context, wrk, fortio string, t *target, others map[string]*proc, o options) (s sample, err error) {
	cpu := func() cpuTimes {
		if t.proc == nil {
			return nil
		}
		return treeCPU(t.proc.pid())
	}
	othersCPU := func() map[string]time.Duration {
		m := map[string]time.Duration{}
		for name, p := range others {
			if _, u, st, ok := procStat(p.pid()); ok {
				m[name] = time.Duration(u+st) * time.Second / clockTick
			}
		}
		return m
	}
	o0 := othersCPU()
	c0 := cpu()
	tick0, steal0, stealOK := cpuTicks()
	defer func() {
		if tick1, steal1, ok := cpuTicks(); ok && stealOK {
			s.StealPct = stealPercent(tick0, steal0, tick1, steal1)
		}
	}()
	w, err := runWrk(ctx, wrk, t.url(), o.conns, o.satDur)
	if err != nil {
		return s, err
	}
	c1 := cpu()
	o1 := othersCPU()
	s.RPS, s.SatP99, s.Requests, s.Errors = w.RPS, w.P99, w.Requests, w.Errors
	if w.Requests > 0 {
		s.OthersCPU = map[string]float64{"wrk": float64(w.CPU) / float64(time.Microsecond) / float64(w.Requests)}
		for name, d := range o1 {
			s.OthersCPU[name] = float64(d-o0[name]) / float64(time.Microsecond) / float64(w.Requests)
		}
	}
	if w.Requests > 0 && t.proc != nil {
		per := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) / float64(w.Requests) }
		s.CPUPerReq, s.UserCPUPerReq = per(c1[""][0]-c0[""][0]), per(c1[""][1]-c0[""][1])
		s.CPUByProcess, s.UserCPUByProcess = map[string]float64{}, map[string]float64{}
		for comm, d := range c1 {
			if comm != "" {
				s.CPUByProcess[comm] = per(d[0] - c0[comm][0])
				s.UserCPUByProcess[comm] = per(d[1] - c0[comm][1])
			}
		}
	}
	f, err := runFortio(ctx, fortio, t.url(), o.qps, o.rateConns, o.rateDur)
	if err != nil {
		return s, err
	}
	c2 := cpu()
	s.FixedP50, s.FixedP90, s.FixedP99 = f.P50, f.P90, f.P99
	s.Requests += f.Requests
	s.Errors += f.Errors
	if f.Requests > 0 && t.proc != nil {
		s.FixedCPUPerReq = float64(c2[""][0]-c1[""][0]) / float64(time.Microsecond) / float64(f.Requests)
	}
	if t.tls {
		// One request per connection: a full handshake each (wrk's
		// OpenSSL client does not resume sessions).
		n, err := runWrk(ctx, wrk, t.url(), o.conns, o.satDur/2, "-H", "Connection: close")
		if err != nil {
			return s, err
		}
		c3 := cpu()
		s.NewConnRPS = n.RPS
		s.Requests += n.Requests
		s.Errors += n.Errors
		if n.Requests > 0 && t.proc != nil {
			s.NewConnCPU = float64(c3[""][0]-c2[""][0]) / float64(time.Microsecond) / float64(n.Requests)
		}
	}
	return s, nil
}

func waitReady(ctx context.Context, url string) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer 200 within 20s", url)
}

// sinkCount returns the Zipkin and the OTLP spans the receiver counted.
func sinkCount(addr string) (zipkin, otlp int64, err error) {
	resp, err := http.Get("http://" + addr + "/count")
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	var batches, bad int64
	b, _ := io.ReadAll(resp.Body)
	_, err = fmt.Sscan(string(b), &zipkin, &batches, &bad, &otlp)
	if bad > 0 {
		return zipkin, otlp, fmt.Errorf("the receiver refused %d batches it could not decode", bad)
	}
	return zipkin, otlp, err
}

func nginxConf(dir, addr, upstream string, workers int) string {
	return fmt.Sprintf(`daemon off;
master_process on;
worker_processes %[4]d;
pid %[1]s/nginx.pid;
error_log %[1]s/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[1]s/nginx-body;
  proxy_temp_path %[1]s/nginx-proxy;
  keepalive_requests 1000000;
  upstream up { server %[3]s; keepalive 128; keepalive_requests 1000000; }
  server {
    listen %[2]s;
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }
  }
}
`, dir, addr, upstream, workers)
}

// nginxReqIDConf is nginxConf sending the upstream the headers untraced
// tracehop sends: X-Forwarded-Proto and a request id of its own making
// ($request_id, 32 hex digits) beside X-Forwarded-For.
func nginxReqIDConf(dir, addr, upstream string, workers int) string {
	xff := "      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
	return strings.Replace(nginxConf(dir, addr, upstream, workers), xff,
		xff+"      proxy_set_header X-Forwarded-Proto $scheme;\n      proxy_set_header X-Request-Id $request_id;\n", 1)
}

// nginxTLSConf is nginxConf terminating TLS.
func nginxTLSConf(dir, addr, upstream, cert, key string, workers int) string {
	plain := nginxConf(dir, addr, upstream, workers)
	return strings.Replace(plain, "    listen "+addr+";", fmt.Sprintf(`    listen %s ssl;
    ssl_certificate %s;
    ssl_certificate_key %s;
    ssl_protocols TLSv1.3;
    ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256;
    ssl_ecdh_curve X25519;`, addr, cert, key), 1)
}

// haproxyTLSConf is haproxyConf terminating TLS; pem holds the
// certificate and its key.
func haproxyTLSConf(addr, upstream, pem string, workers int) string {
	plain := haproxyConf(addr, upstream, workers)
	plain = strings.Replace(plain, "global\n", "global\n  ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256\n  ssl-default-bind-options ssl-min-ver TLSv1.3\n  ssl-default-bind-curves X25519\n", 1)
	return strings.Replace(plain, "  bind "+addr+"\n", fmt.Sprintf("  bind %s ssl crt %s alpn http/1.1\n", addr, pem), 1)
}

// benchCert makes the certificate every TLS configuration serves: ECDSA
// P-256, signed by a CA made now, into dir.
func benchCert(dir string) (certFile, keyFile string, err error) {
	ca, err := tlstest.NewCA("tracehop bench CA")
	if err != nil {
		return "", "", err
	}
	return ca.WritePair(dir, "bench", tlstest.Localhost("bench"))
}

// haproxyReqIDConf is haproxyConf sending the upstream the headers
// untraced tracehop sends: X-Forwarded-Proto and a new UUID as
// X-Request-Id beside X-Forwarded-For (option forwardfor).
func haproxyReqIDConf(addr, upstream string, workers int) string {
	return strings.Replace(haproxyConf(addr, upstream, workers), "\nbackend up\n",
		"\nbackend up\n  http-request set-header X-Forwarded-Proto http\n  http-request set-header X-Request-Id %[uuid()]\n", 1)
}

func haproxyConf(addr, upstream string, workers int) string {
	return fmt.Sprintf(`global
  nbthread %[3]d
  maxconn 4096
defaults
  mode http
  option http-keep-alive
  option forwardfor
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend in
  bind %[1]s
  default_backend up
backend up
  http-reuse safe
  server s1 %[2]s
`, addr, upstream, workers)
}
