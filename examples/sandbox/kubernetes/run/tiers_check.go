package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// What make k8s-tiers sends and reads back: the load, the traces in
// Jaeger, the Collectors' metrics.

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
