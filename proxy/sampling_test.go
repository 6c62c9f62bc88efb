package proxy_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tracehop/tracehop/core"
)

// A route may match a method: sampling rules by method and path (here
// POST /cart traced at 0%, the rest at 100%), on both HTTP paths.
func TestRouteMethodMatch(t *testing.T) {
	writes := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "writes") })
	reads := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "reads") })
	p := startProxy(t, fmt.Sprintf(`admin: {address: "127.0.0.1:0"}
listeners:
  - name: l
    address: "127.0.0.1:0"
    direction: ingress
    routes:
      - {name: cart-writes, match: {prefix: /cart, method: POST}, cluster: writes, tracing: {sampling: {random: 0}}}
      - {match: {prefix: /}, cluster: reads}
clusters:
  - {name: writes, endpoints: [%s]}
  - {name: reads, endpoints: [%s]}
`, writes.addr(), reads.addr())+tracingBlock)
	base := "http://" + p.addr["l"]
	for _, slow := range []bool{false, true} {
		hdr := map[string]string{}
		if slow {
			hdr["Connection"] = "x-slow-path" // net/http serves it
		}
		for _, c := range []struct{ method, path, want, sampled string }{
			{"POST", "/cart/1", "writes", "0"},
			{"GET", "/cart/1", "reads", "1"},
			{"PUT", "/cart/1", "reads", "1"},
			{"POST", "/other", "reads", "1"},
		} {
			resp, body := do(t, c.method, base+c.path, hdr)
			up := reads
			if c.want == "writes" {
				up = writes
			}
			if resp.StatusCode != 200 || body != c.want || up.header("X-B3-Sampled") != c.sampled {
				t.Errorf("slow path %v: %s %s went to %q (%s), sampled %q; want %s, sampled %s",
					slow, c.method, c.path, body, resp.Status, up.header("X-B3-Sampled"), c.want, c.sampled)
			}
		}
	}
}

// Consistent probability sampling through two hops: an edge at 10% and a
// sidecar behind it at 50%, propagating tracecontext. The edge keeps a
// trace exactly when its trace id's randomness (low 56 bits) is at or
// above 10%'s threshold, and says so in tracestate (ot=th:e6666666666666,
// exact: 0.9 * 2^56); the sidecar keeps every trace the edge kept, and no
// other, and its spans carry the edge's threshold (what their traces were
// sampled at: an adjusted count of 10), not its own 50%'s.
func TestConsistentSamplingAcrossHops(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]string{} // traceparent -> tracestate at the upstream
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.Header.Get("Traceparent")] = r.Header.Get("Tracestate")
		mu.Unlock()
	})
	hop := func(name, random, trust, cluster string) *testProxy {
		return startProxy(t, fmt.Sprintf(`node: {id: %[1]s, service: %[1]s}
admin: {address: "127.0.0.1:0"}
listeners:
  - {name: l, address: "127.0.0.1:0", direction: ingress, trust_trace_headers: %[3]s, routes: [{cluster: up}]}
clusters:
  - {name: up, endpoints: [%[4]s]}
tracing:
  driver: {name: file}
  propagation: [tracecontext]
  sampling: {random: %[2]s}
`, name, random, trust, cluster))
	}
	sidecar := hop("sidecar", "50", "true", up.addr())
	edge := hop("edge", "10", "false", sidecar.addr["l"])
	const requests = 600
	for range requests {
		// A client's own traceparent is not trusted at the edge: every
		// request starts a trace there.
		if resp, _ := do(t, "GET", "http://"+edge.addr["l"]+"/", map[string]string{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"}); resp.StatusCode != 200 {
			t.Fatal(resp.Status)
		}
	}
	const th10 = "ot=th:e6666666666666"
	time.Sleep(100 * time.Millisecond) // the fast path records just after it answers
	edgeSpans, sidecarSpans := edge.rec.all(), sidecar.rec.all()
	if n := len(edgeSpans); n < requests/20 || n > requests/5 {
		t.Fatalf("the edge at 10%% kept %d of %d traces", n, requests)
	}
	kept := map[core.TraceID]bool{}
	for _, s := range edgeSpans {
		if s.TraceID.Low&(1<<56-1) < 0xe6666666666666 || s.TraceState != th10 {
			t.Errorf("edge span of trace %s: tracestate %q; its randomness %x is below 10%%'s threshold", s.TraceID, s.TraceState, s.TraceID.Low&(1<<56-1))
		}
		kept[s.TraceID] = true
	}
	if len(sidecarSpans) != len(edgeSpans) {
		t.Errorf("the sidecar at 50%% kept %d traces, the edge %d: traces are not whole", len(sidecarSpans), len(edgeSpans))
	}
	for _, s := range sidecarSpans {
		if !kept[s.TraceID] || s.TraceState != th10 || s.ParentOrigin != core.ParentRemote {
			t.Errorf("sidecar span of trace %s (kept at the edge: %v): tracestate %q, want the edge's %q", s.TraceID, kept[s.TraceID], s.TraceState, th10)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != requests {
		t.Fatalf("the upstream saw %d traces, want %d", len(seen), requests)
	}
	for tp, ts := range seen {
		sampled := strings.HasSuffix(tp, "-03") // sampled and random
		if sampled && ts != th10 || !sampled && (ts != "" || !strings.HasSuffix(tp, "-02")) {
			t.Errorf("upstream got traceparent %s with tracestate %q", tp, ts)
		}
	}
}

// What tracehop does to tracestate's ot=th on a continued trace, at random
// 100% and overall 50% (threshold 8): a parent's threshold passes as it
// came, raised to 8 when lower; one the trace's randomness contradicts, or
// on a forced trace, is erased (its probability is unknown); explicit rv
// counts before the trace id; an unsampled trace's tracestate passes
// untouched; a new trace gets th:8 when it is kept.
func TestThresholdInTracestate(t *testing.T) {
	up := newUpstream(t, nil)
	p := startProxy(t, oneRoute("ingress", "true", up.addr(), "  propagation: [tracecontext]\n  sampling: {random: 100, overall: 50}\n"))
	url := "http://" + p.addr["l"] + "/"
	const high, low = "0af7651916cd43dd00f0000000000001", "0af7651916cd43dd0090000000000001" // randomness f0..., 90...
	for _, c := range []struct {
		name, traceID, flags, tracestate string
		forced                           bool
		sampled                          bool
		want                             string
	}{
		{"kept as it came", high, "03", "ot=th:c,v=1", false, true, "ot=th:c,v=1"},
		{"raised to overall's", high, "03", "ot=th:4,v=1", false, true, "ot=th:8,v=1"},
		{"contradicted by randomness", low, "03", "ot=th:c,v=1", false, true, "v=1"},
		{"forced", high, "03", "ot=th:c", true, true, ""},
		{"rv before the trace id", low, "01", "ot=rv:f0000000000000;th:c", false, true, "ot=rv:f0000000000000;th:c"},
		{"rv contradicting", high, "03", "ot=rv:10000000000000;th:c", false, false, "ot=rv:10000000000000;th:c"},
		{"not sampled", high, "02", "ot=th:c", false, false, "ot=th:c"},
	} {
		hdr := map[string]string{"traceparent": "00-" + c.traceID + "-00f067aa0ba902b7-" + c.flags, "tracestate": c.tracestate}
		if c.forced {
			hdr["x-tracehop-force-trace"] = "1"
		}
		do(t, "GET", url, hdr)
		tp := up.header("Traceparent")
		if got := up.header("Tracestate"); got != c.want || (strings.HasSuffix(tp, "1") || strings.HasSuffix(tp, "3")) != c.sampled {
			t.Errorf("%s: upstream got %s with tracestate %q, want %q (sampled: %v)", c.name, tp, got, c.want, c.sampled)
		}
	}
	// New traces: kept when their randomness is at or above 8 (overall
	// 50%), and then with th:8.
	kept := 0
	for range 200 {
		do(t, "GET", url, nil)
		tp := up.header("Traceparent")
		sampled := strings.HasSuffix(tp, "-03")
		if r := tp[3+16+2 : 3+32]; sampled != (r >= "80000000000000") || sampled != (up.header("Tracestate") == "ot=th:8") {
			t.Errorf("new trace %s (randomness %s): tracestate %q", tp, r, up.header("Tracestate"))
		}
		if sampled {
			kept++
		}
	}
	if kept < 60 || kept > 140 {
		t.Errorf("overall 50%% kept %d of 200 new traces", kept)
	}
}
