package proxy_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/core/propagation"
)

// chain is Envoy's sandbox topology with in-process tracehops: a front
// proxy (an edge that does not trust its clients) -> service1's sidecar
// (ingress -> app1; app1 calls out through the sidecar's egress) ->
// service2's sidecar (ingress -> app2). Each tracehop records its spans.
type chain struct {
	front, s1, s2 *testProxy
}

// chainOptions say how the chain traces: the tracing block's extra lines
// for the front proxy and the sidecars, what the drivers declare, and which
// headers app1 forwards from its request to its call out.
type chainOptions struct {
	frontTracing, sidecarTracing string
	caps                         core.Capabilities
	forward                      []string
}

// forwardAll is every trace header of every format, and x-request-id.
var forwardAll = append(propagation.AllHeaders(), "X-Request-Id")

func startChain(t *testing.T, o chainOptions) *chain {
	t.Helper()
	app2 := newUpstream(t, nil)
	s2 := startProxyCaps(t, hopConfig("service2", fmt.Sprintf(`
  - {name: ingress, address: "127.0.0.1:0", direction: ingress, routes: [{match: {prefix: /}, cluster: app}]}
clusters:
  - {name: app, endpoints: [%s]}
`, app2.addr()), o.sidecarTracing), o.caps)
	var egress atomic.Value // app1 calls out through s1's egress, started after it
	app1 := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		resp, err := callOnward("GET", "http://"+egress.Load().(string)+"/trace/2", r, o.forward)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
	})
	s1 := startProxyCaps(t, hopConfig("service1", fmt.Sprintf(`
  - {name: ingress, address: "127.0.0.1:0", direction: ingress, routes: [{match: {prefix: /}, cluster: app}]}
  - {name: egress, address: "127.0.0.1:0", direction: egress, routes: [{match: {prefix: /}, cluster: service2}]}
clusters:
  - {name: app, endpoints: [%s]}
  - {name: service2, endpoints: [%s]}
`, app1.addr(), s2.addr["ingress"]), o.sidecarTracing), o.caps)
	egress.Store(s1.addr["egress"])
	front := startProxyCaps(t, hopConfig("front-proxy", fmt.Sprintf(`
  - {name: edge, address: "127.0.0.1:0", direction: ingress, trust_trace_headers: false, routes: [{match: {prefix: /}, cluster: service1}]}
clusters:
  - {name: service1, endpoints: [%s]}
`, s1.addr["ingress"]), o.frontTracing), o.caps)
	return &chain{front: front, s1: s1, s2: s2}
}

// callOnward is an application's call to another service, through its
// sidecar, forwarding only the named headers of the request it serves.
func callOnward(method, url string, in *http.Request, forward []string) (*http.Response, error) {
	req, _ := http.NewRequest(method, url, nil)
	for k, v := range in.Header {
		if slices.Contains(forward, k) {
			req.Header[k] = v
		}
	}
	return http.DefaultClient.Do(req)
}

func hopConfig(service, listeners, tracing string) string {
	return fmt.Sprintf("node: {id: %s, service: %s}\nadmin: {address: \"127.0.0.1:0\"}\nlisteners:%stracing:\n  driver: {name: file}\n%s", service, service, listeners, tracing)
}

// get sends one request to the front proxy and returns the spans of every
// hop: n of the front proxy's and 2 and 1 of the sidecars'.
func (c *chain) get(t *testing.T, frontSpans int) []core.Span {
	t.Helper()
	resp, body := do(t, "GET", "http://"+c.front.addr["edge"]+"/trace/1", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	spans := c.front.rec.wait(t, frontSpans)
	spans = append(spans, c.s1.rec.wait(t, 2)...)
	return append(spans, c.s2.rec.wait(t, 1)...)
}

// checkOneTrace holds spans to one whole trace: one trace id, one root,
// every parent among the spans, and no span id twice, but for a shared
// span: a SERVER span that joins the one CLIENT span of its id, with the
// same parent (Zipkin's shared-span model).
func checkOneTrace(t *testing.T, spans []core.Span) {
	t.Helper()
	var desc strings.Builder
	for _, s := range spans {
		fmt.Fprintf(&desc, "\n  %s %s %s trace %s span %s parent %s shared %v", s.LocalService, s.Kind, s.Name, s.TraceID, s.SpanID, s.ParentID, s.Shared)
	}
	byID := map[core.SpanID][]core.Span{}
	roots := 0
	for _, s := range spans {
		if s.TraceID != spans[0].TraceID {
			t.Errorf("more than one trace:%s", desc.String())
			return
		}
		if s.ParentID == 0 {
			roots++
		}
		byID[s.SpanID] = append(byID[s.SpanID], s)
	}
	if roots != 1 {
		t.Errorf("%d roots, want 1:%s", roots, desc.String())
	}
	for id, same := range byID {
		switch {
		case len(same) == 1:
		case len(same) == 2 && same[0].Kind != same[1].Kind && (same[0].Shared || same[1].Shared) && same[0].ParentID == same[1].ParentID:
			server, client := same[0], same[1]
			if client.Kind == core.KindServer {
				server, client = client, server
			}
			if server.Kind != core.KindServer || client.Kind != core.KindClient || !server.Shared || client.Shared {
				t.Errorf("span id %s: a shared span must be a SERVER joining a CLIENT:%s", id, desc.String())
			}
		default:
			t.Errorf("span id %s is used by %d spans:%s", id, len(same), desc.String())
		}
	}
	for _, s := range spans {
		if s.ParentID != 0 && len(byID[s.ParentID]) == 0 {
			t.Errorf("%s %s: parent %s is not in the trace:%s", s.LocalService, s.Kind, s.ParentID, desc.String())
		}
	}
}
