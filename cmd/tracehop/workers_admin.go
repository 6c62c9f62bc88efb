package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
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
}

// listenSupervisorAdmin binds addr; Serve starts serving it.
func listenSupervisorAdmin(s *supervisor, addr string) (*supervisorAdmin, net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("listener %q: cannot listen on %s: %w (the supervisor's admin server: stop what holds it, or another tracehop run -workers on this config, or move admin.address)", "admin", addr, err)
	}
	a := &supervisorAdmin{s: s, client: &http.Client{Timeout: 5 * time.Second}, reg: prometheus.NewRegistry()}
	a.restarts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tracehop_worker_restarts_total",
		Help: "Workers of tracehop run -workers started again after they exited, by worker.",
	}, []string{"worker"})
	a.reg.MustRegister(a.restarts,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tracehop_workers", Help: "Workers tracehop run -workers runs (-workers N)."},
			func() float64 { return float64(s.n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tracehop_workers_ready", Help: "Workers of tracehop run -workers that serve now."},
			func() float64 { return float64(len(s.readyAdmins())) }))
	for i := range s.n {
		a.restarts.WithLabelValues(strconv.Itoa(i)) // 0 until one restarts
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	mux.HandleFunc("GET /ready", a.ready)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/", a.elsewhere)
	a.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return a, ln, nil
}

// ready is 200 when every worker serves and answers its own /ready with
// 200, else 503 with each worker's state.
func (a *supervisorAdmin) ready(w http.ResponseWriter, r *http.Request) {
	admins := a.s.admins()
	lines := make([]string, len(admins))
	ok := true
	var wg sync.WaitGroup
	for i, addr := range admins {
		if addr == "" {
			lines[i], ok = fmt.Sprintf("worker %d: not running", i), false
			continue
		}
		wg.Go(func() {
			state := "ready"
			resp, err := a.get(r.Context(), addr, "/ready", "")
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
	for i, addr := range a.s.admins() {
		if addr == "" {
			addr = "not running"
		}
		fmt.Fprintf(&b, "worker %d: %s\n", i, addr)
	}
	http.Error(w, b.String(), http.StatusNotFound)
}

// get asks a worker's admin server.
func (a *supervisorAdmin) get(ctx context.Context, addr, path, accept string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return nil, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	return a.client.Do(req)
}

// Gather merges the supervisor's metrics and every serving worker's, a
// worker's series labelled with its index. A worker that does not answer
// is left out, and its tracehop_worker_up is 0.
func (a *supervisorAdmin) Gather() ([]*dto.MetricFamily, error) {
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
		wg.Go(func() { got[i] = a.scrape(addr, strconv.Itoa(i)) })
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
// parse) and labels each series with the worker; nil if it cannot.
func (a *supervisorAdmin) scrape(addr, worker string) []*dto.MetricFamily {
	resp, err := a.get(context.Background(), addr, "/metrics", string(expfmt.NewFormat(expfmt.TypeProtoDelim)))
	if err != nil {
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
		if err := dec.Decode(f); err != nil {
			break
		}
		for _, m := range f.Metric {
			m.Label = append(m.Label, &dto.LabelPair{Name: ptr("worker"), Value: ptr(worker)})
			slices.SortFunc(m.Label, func(x, y *dto.LabelPair) int { return strings.Compare(x.GetName(), y.GetName()) })
		}
		fams = append(fams, f)
	}
	return fams
}

func ptr[T any](v T) *T { return &v }
