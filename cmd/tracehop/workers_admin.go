package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/tracehop/tracehop/internal/app"
	"github.com/tracehop/tracehop/proxy"
)

// The supervisor's admin server, on admin.address, is what a scraper and a
// probe need of N workers at one address: /metrics merges every worker's
// (each series labelled worker="i", beside the supervisor's own) and
// /ready answers for all of them. What acts on one process (/config,
// /reload, /sampling) stays on each worker's admin server, at
// admin.address's port + 1 + i; the supervisor's points there.

// supervisorAdmin serves the supervisor's admin endpoints.
type supervisorAdmin struct {
	s      *supervisor
	client *http.Client
	reg    *prometheus.Registry
	srv    *http.Server

	restarts *prometheus.CounterVec
	reloads  *prometheus.CounterVec
}

// listenSupervisorAdmin binds addr; Serve starts serving it.
func listenSupervisorAdmin(s *supervisor, addr string) (*supervisorAdmin, net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("the supervisor's admin server (another tracehop run -workers of this config?): %w", proxy.ListenError("admin", addr, false, err))
	}
	// Its own transport: the workers are on this host, never behind an
	// HTTP_PROXY from the environment.
	a := &supervisorAdmin{s: s, client: &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 2}}, reg: prometheus.NewRegistry()}
	a.restarts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tracehop_worker_restarts_total",
		Help: "Workers of tracehop run -workers started again after they exited, by worker.",
	}, []string{"worker"})
	// The supervisor's own process and runtime, unlabelled, beside the
	// workers' (worker="i").
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tracehop_workers_config_reloads_total",
		Help: "Reloads of every worker by the supervisor, by result: success (every worker took the config), partial (some did not: they were started again with it), failure (none took it: they keep theirs), refused (the supervisor's check refused it: no worker was asked), superseded (the file changed while the workers read it: reloaded again).",
	}, []string{"result"})
	for _, r := range []string{"success", "partial", "failure", "refused", "superseded"} {
		a.reloads.WithLabelValues(r)
	}
	a.reg.MustRegister(a.reloads, a.restarts,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tracehop_workers", Help: "Workers tracehop run -workers runs (-workers N)."},
			func() float64 { return float64(s.n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tracehop_workers_ready", Help: "Workers of tracehop run -workers that started and said they serve (a hung one still counts: tracehop_worker_up says which answered the last scrape)."},
			func() float64 { return float64(len(s.readyAdmins())) }))
	for i := range s.n {
		a.restarts.WithLabelValues(strconv.Itoa(i)) // 0 until one restarts
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		// A scrape waits for its workers no longer than its scraper
		// waits for it: a hung worker costs its own series, not all.
		ctx, cancel := context.WithTimeout(r.Context(), scrapeBudget(r))
		defer cancel()
		promhttp.HandlerFor(prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return a.gather(ctx) }), promhttp.HandlerOpts{
			ErrorHandling:     promhttp.ContinueOnError,
			EnableOpenMetrics: true, // the workers' exemplars, as their own servers serve them
		}).ServeHTTP(w, r)
	})
	mux.HandleFunc("GET /ready", a.ready)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set(app.AdminHeader, "tracehop")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/", a.elsewhere)
	a.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return a, ln, nil
}

// scrapeBudget is how long a scrape may wait for the workers: under the
// scraper's own timeout (Prometheus sends it), 5 s at most.
func scrapeBudget(r *http.Request) time.Duration {
	d := 5 * time.Second
	if v, err := strconv.ParseFloat(r.Header.Get("X-Prometheus-Scrape-Timeout-Seconds"), 64); err == nil && v > 0 {
		d = min(d, time.Duration(v*0.8*float64(time.Second)))
	}
	return d
}

// readyBudget bounds /ready's wait for the workers' answers, under the
// 1 s a Kubernetes probe waits by default.
const readyBudget = 800 * time.Millisecond

// ready is 200 when every worker serves and answers its own /ready with
// 200, else 503 with each worker's state.
func (a *supervisorAdmin) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readyBudget)
	defer cancel()
	states := a.s.states()
	admins := a.s.admins()
	lines := make([]string, len(admins))
	ok := true
	var wg sync.WaitGroup
	for i, addr := range admins {
		if addr == "" {
			lines[i], ok = fmt.Sprintf("worker %d: %s", i, states[i]), false
			continue
		}
		wg.Go(func() {
			state := "ready"
			resp, err := a.get(ctx, addr, "/ready", "")
			if err != nil {
				state = err.Error()
			} else {
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					state = resp.Status
				}
			}
			lines[i] = fmt.Sprintf("worker %d (%s): %s", i, addr, state)
		})
	}
	wg.Wait()
	for _, l := range lines {
		ok = ok && strings.HasSuffix(l, ": ready")
	}
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	fmt.Fprintf(w, "%s\n", strings.Join(lines, "\n"))
}

// elsewhere answers every other path: it is a worker's.
func (a *supervisorAdmin) elsewhere(w http.ResponseWriter, r *http.Request) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: this is the admin server of tracehop run -workers %d, which serves /metrics (every worker's, labelled worker=\"i\"), /ready and /healthz.\n", r.Method, r.URL.Path, a.s.n)
	fmt.Fprintf(&b, "Each worker's admin server has the rest (/config, /reload, /sampling) for that worker alone; reload every worker with SIGHUP to the supervisor.\n")
	for i, state := range a.s.states() {
		fmt.Fprintf(&b, "worker %d: %s\n", i, state)
	}
	http.Error(w, b.String(), http.StatusNotFound)
}

// get asks a worker's admin server. One bound to a wildcard address is
// asked on loopback.
func (a *supervisorAdmin) get(ctx context.Context, addr, path, accept string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+dialable(addr)+path, nil)
	if err != nil {
		return nil, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	return a.client.Do(req)
}

// gather merges the supervisor's metrics and every serving worker's, a
// worker's series labelled with its index. A worker that does not answer
// in time is left out, and its tracehop_worker_up is 0.
func (a *supervisorAdmin) gather(ctx context.Context) ([]*dto.MetricFamily, error) {
	own, err := a.reg.Gather()
	if err != nil {
		return nil, err
	}
	admins := a.s.admins()
	got := make([][]*dto.MetricFamily, len(admins))
	var wg sync.WaitGroup
	for i, addr := range admins {
		if addr == "" {
			continue
		}
		wg.Go(func() { got[i] = a.scrape(ctx, addr, strconv.Itoa(i)) })
	}
	wg.Wait()
	up := &dto.MetricFamily{Name: ptr("tracehop_worker_up"), Help: ptr("1 when the worker's metrics were read for this scrape, by worker."), Type: dto.MetricType_GAUGE.Enum()}
	byName := map[string]*dto.MetricFamily{}
	for _, f := range own {
		byName[f.GetName()] = f
	}
	for i, fams := range got {
		v := 0.0
		if fams != nil {
			v = 1
		}
		up.Metric = append(up.Metric, &dto.Metric{Label: []*dto.LabelPair{{Name: ptr("worker"), Value: ptr(strconv.Itoa(i))}}, Gauge: &dto.Gauge{Value: &v}})
		for _, f := range fams {
			if have, ok := byName[f.GetName()]; ok {
				if have.GetType() == f.GetType() {
					have.Metric = append(have.Metric, f.Metric...)
				} else {
					a.s.log.Warn("a worker's metric family has another type than the same family elsewhere: left out of the merged /metrics", "worker", i, "family", f.GetName())
				}
				continue
			}
			byName[f.GetName()] = f
		}
	}
	byName[up.GetName()] = up
	out := make([]*dto.MetricFamily, 0, len(byName))
	for _, f := range byName {
		out = append(out, f)
	}
	slices.SortFunc(out, func(x, y *dto.MetricFamily) int { return strings.Compare(x.GetName(), y.GetName()) })
	return out, nil
}

// scrape reads a worker's metrics (in the protobuf format: no text to
// parse) and labels each series with the worker; nil if it cannot read
// them whole.
func (a *supervisorAdmin) scrape(ctx context.Context, addr, worker string) []*dto.MetricFamily {
	resp, err := a.get(ctx, addr, "/metrics", string(expfmt.NewFormat(expfmt.TypeProtoDelim)))
	if err != nil {
		a.s.log.Debug("a worker's metrics cannot be read", "worker", worker, "error", err)
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil
	}
	dec := expfmt.NewDecoder(resp.Body, expfmt.ResponseFormat(resp.Header))
	var fams []*dto.MetricFamily
	for {
		f := &dto.MetricFamily{}
		if err := dec.Decode(f); err == io.EOF {
			return fams
		} else if err != nil {
			a.s.log.Debug("a worker's metrics cannot be read", "worker", worker, "error", err)
			return nil // cut off (the scrape's deadline) or garbled: not half of them
		}
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if l.GetName() == "worker" { // as Prometheus keeps a target's label a series has too
					l.Name = ptr("exported_worker")
				}
			}
			m.Label = append(m.Label, &dto.LabelPair{Name: ptr("worker"), Value: ptr(worker)})
			slices.SortFunc(m.Label, func(x, y *dto.LabelPair) int { return strings.Compare(x.GetName(), y.GetName()) })
		}
		fams = append(fams, f)
	}
}

func ptr[T any](v T) *T { return &v }
