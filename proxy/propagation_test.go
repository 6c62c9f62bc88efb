package proxy_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/core/propagation"
)

// doHeader sends a GET with h as it is: repeated fields stay repeated.
func doHeader(t *testing.T, url string, h http.Header) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header = h
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// httpPaths are the two ways a request goes through a listener: the
// HTTP/1.1 fast path, and net/http, which TE: trailers is handed to.
var httpPaths = []struct {
	name  string
	extra http.Header
}{
	{"fast path", http.Header{}},
	{"net/http path", http.Header{"Te": {"trailers"}}},
}

func withHeaders(base http.Header, kv ...string) http.Header {
	h := base.Clone()
	for i := 0; i < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

// Two traceparent fields are invalid: the request starts a new trace, on
// either HTTP path (W3C Trace Context, test_traceparent_duplicated).
func TestDuplicatedTraceparentStartsANewTrace(t *testing.T) {
	up := newUpstream(t, nil)
	p := startProxy(t, oneRoute("ingress", "true", up.addr(), "  propagation: [tracecontext]\n"))
	const a, b = "12345678901234567890123456789011", "12345678901234567890123456789012"
	for _, path := range httpPaths {
		t.Run(path.name, func(t *testing.T) {
			doHeader(t, "http://"+p.addr["l"]+"/", withHeaders(path.extra,
				"traceparent", "00-"+a+"-1234567890123456-01", "traceparent", "00-"+b+"-1234567890123456-01", "tracestate", "foo=1"))
			got := up.header("traceparent")
			if got == "" || strings.Contains(got, a) || strings.Contains(got, b) {
				t.Errorf("upstream traceparent %q: want a new trace", got)
			}
			if ts := up.header("tracestate"); ts != "" {
				t.Errorf("upstream tracestate %q: the invalid traceparent's tracestate must go too", ts)
			}
		})
	}
	for _, s := range p.rec.wait(t, 2) {
		if s.ParentID != 0 {
			t.Errorf("span %+v continues a duplicated traceparent", s)
		}
	}
}

// W3C Trace Context level 2: the random-trace-id flag (02) is kept from a
// trusted parent that set it, left unset when the parent did not (or spoke
// a format without it), and set on every trace tracehop starts, whose ids
// are random. Sampled (01) means what it always did.
func TestTraceContextLevel2RandomFlag(t *testing.T) {
	up := newUpstream(t, nil)
	trusted := startProxy(t, oneRoute("ingress", "true", up.addr(), "  propagation: [b3, tracecontext]\n"))
	edge := startProxy(t, oneRoute("ingress", "false", up.addr(), "  propagation: [b3, tracecontext]\n"))
	const tid = "12345678901234567890123456789012"
	cases := []struct {
		name      string
		p         *testProxy
		h         http.Header
		wantFlags string
		sameTrace bool
	}{
		{"random from a trusted parent", trusted, http.Header{"Traceparent": {"00-" + tid + "-1234567890123456-02"}}, "02", true},
		{"random and sampled", trusted, http.Header{"Traceparent": {"00-" + tid + "-1234567890123456-03"}}, "03", true},
		{"parent without random", trusted, http.Header{"Traceparent": {"00-" + tid + "-1234567890123456-01"}}, "01", true},
		{"b3 parent: random unknown", trusted, http.Header{"B3": {tid + "-1234567890123456-1"}}, "01", true},
		{"new trace", trusted, http.Header{}, "03", false},
		{"untrusted client: new trace", edge, http.Header{"Traceparent": {"00-" + tid + "-1234567890123456-00"}}, "03", false},
	}
	for _, c := range cases {
		for _, path := range httpPaths {
			t.Run(c.name+"/"+path.name, func(t *testing.T) {
				h := c.h.Clone()
				for k, v := range path.extra {
					h[k] = v
				}
				doHeader(t, "http://"+c.p.addr["l"]+"/", h)
				got := up.header("traceparent")
				if len(got) != 55 || got[53:] != c.wantFlags || strings.Contains(got, tid) != c.sameTrace {
					t.Errorf("upstream traceparent %q: want flags %s, trace continued: %v", got, c.wantFlags, c.sameTrace)
				}
			})
		}
	}
}

// ot-tracer carries 64-bit trace ids: with it among the formats, tracehop
// starts 64-bit traces even when its drivers keep 128 bits, or every hop
// after the first would read another trace id. A 128-bit trace from a
// trusted client keeps its upper half where the next hop can find it: in
// the other formats tracehop writes, or, at an egress, in the request-id
// link to the ingress request the application is serving.
func TestOTTracerKeepsTracesWhole(t *testing.T) {
	caps := core.Capabilities{Propagation: []string{"b3"}, TraceID128: true}
	t.Run("trace started by tracehop", func(t *testing.T) {
		c := startChain(t, chainOptions{caps: caps, frontTracing: "  propagation: [ot-tracer]\n", sidecarTracing: "  propagation: [ot-tracer]\n", forward: forwardAll})
		spans := c.get(t, 1)
		checkOneTrace(t, spans)
		if spans[0].TraceID.High != 0 {
			t.Errorf("trace %s: want a 64-bit trace with ot-tracer", spans[0].TraceID)
		}
	})
	const tid = "0af7651916cd43dd8448eb211c80319c"
	for _, forward := range []struct {
		name    string
		headers []string
	}{
		{"app forwards every header", forwardAll},
		{"app forwards ot-tracer and x-request-id", []string{"Ot-Tracer-Traceid", "Ot-Tracer-Spanid", "Ot-Tracer-Sampled", "X-Request-Id"}},
	} {
		t.Run("128-bit trace from a trusted client/"+forward.name, func(t *testing.T) {
			tracing := "  propagation: [ot-tracer, tracecontext]\n"
			c := startChain(t, chainOptions{caps: caps, frontTracing: tracing, sidecarTracing: tracing, forward: forward.headers})
			// The client calls service1's sidecar, which trusts it.
			resp, _ := do(t, "GET", "http://"+c.s1.addr["ingress"]+"/trace/1", map[string]string{"traceparent": "00-" + tid + "-00f067aa0ba902b7-01"})
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			spans := append(c.s1.rec.wait(t, 2), c.s2.rec.wait(t, 1)...)
			for _, s := range spans {
				if s.TraceID.String() != tid {
					t.Errorf("%s %s span in trace %s, want the client's %s", s.LocalService, s.Kind, s.TraceID, tid)
				}
			}
		})
	}
}

// Zipkin's shared spans join a CLIENT span and the SERVER span that
// answers it. An ingress joins only a span tracehop says is a client span
// (an egress listener's, or the spawn_upstream_span one): never the front
// proxy's SERVER span, which it must be a child of.
func TestSharedSpansJoinOnlyClientSpans(t *testing.T) {
	caps := core.Capabilities{Propagation: []string{"b3"}, TraceID128: true, SharedSpans: true}
	t.Run("front proxy's server span", func(t *testing.T) {
		c := startChain(t, chainOptions{caps: caps, forward: forwardAll})
		spans := c.get(t, 1)
		checkOneTrace(t, spans)
		front := byRole(t, spans, "front-proxy", core.KindServer)
		s1in := byRole(t, spans, "service1", core.KindServer)
		s1out := byRole(t, spans, "service1", core.KindClient)
		s2in := byRole(t, spans, "service2", core.KindServer)
		if s1in.Shared || s1in.SpanID == front.SpanID || s1in.ParentID != front.SpanID {
			t.Errorf("service1's ingress joined the front proxy's SERVER span: front %s, service1 %s parent %s shared %v", front.SpanID, s1in.SpanID, s1in.ParentID, s1in.Shared)
		}
		if !s2in.Shared || s2in.SpanID != s1out.SpanID || s2in.ParentID != s1out.ParentID {
			t.Errorf("service2's ingress must share service1's egress (CLIENT) span %s (parent %s): got %s parent %s shared %v", s1out.SpanID, s1out.ParentID, s2in.SpanID, s2in.ParentID, s2in.Shared)
		}
	})
	t.Run("front proxy's upstream span", func(t *testing.T) {
		c := startChain(t, chainOptions{caps: caps, forward: forwardAll, frontTracing: "  spawn_upstream_span: true\n"})
		spans := c.get(t, 2)
		checkOneTrace(t, spans)
		front := byRole(t, spans, "front-proxy", core.KindServer)
		up := byRole(t, spans, "front-proxy", core.KindClient)
		s1in := byRole(t, spans, "service1", core.KindServer)
		if !s1in.Shared || s1in.SpanID != up.SpanID || s1in.ParentID != front.SpanID {
			t.Errorf("service1's ingress must share the front proxy's upstream (CLIENT) span %s: got %s parent %s shared %v", up.SpanID, s1in.SpanID, s1in.ParentID, s1in.Shared)
		}
	})
	t.Run("app forwards only x-request-id", func(t *testing.T) {
		c := startChain(t, chainOptions{caps: caps, forward: []string{"X-Request-Id"}})
		checkOneTrace(t, c.get(t, 1))
	})
}

// Every propagation format, with drivers that keep 64 or 128 bits, shared
// spans on and off, request-id linking on (the application forwards only
// x-request-id) and off (it forwards every trace header), through the
// sandbox's three tracehops: one whole trace per request, every parent
// present, no span id twice but for a shared CLIENT/SERVER pair.
func TestPropagationMatrix(t *testing.T) {
	for _, format := range propagation.Names() {
		for _, trace128 := range []bool{false, true} {
			for _, shared := range []bool{false, true} {
				for _, linking := range []bool{false, true} {
					name := fmt.Sprintf("%s/128bit=%v/shared=%v/linking=%v", format, trace128, shared, linking)
					t.Run(name, func(t *testing.T) {
						tracing := fmt.Sprintf("  propagation: [%s]\n  link_by_request_id: %v\n", format, linking)
						forward := forwardAll
						if linking {
							forward = []string{"X-Request-Id"}
						}
						c := startChain(t, chainOptions{
							caps:         core.Capabilities{Propagation: []string{format}, TraceID128: trace128, SharedSpans: shared},
							frontTracing: tracing, sidecarTracing: tracing, forward: forward,
						})
						spans := c.get(t, 1)
						checkOneTrace(t, spans)
						front := byRole(t, spans, "front-proxy", core.KindServer)
						s1in := byRole(t, spans, "service1", core.KindServer)
						s1out := byRole(t, spans, "service1", core.KindClient)
						s2in := byRole(t, spans, "service2", core.KindServer)
						if s1in.ParentID != front.SpanID || s1out.ParentID != s1in.SpanID || s1in.Shared {
							t.Errorf("service1: ingress parent %s (want %s) shared %v, egress parent %s (want %s)", s1in.ParentID, front.SpanID, s1in.Shared, s1out.ParentID, s1in.SpanID)
						}
						b3 := format == core.FormatB3 || format == core.FormatB3Single
						if shared && b3 {
							if !s2in.Shared || s2in.SpanID != s1out.SpanID {
								t.Errorf("service2's ingress %s (shared %v) must share service1's egress span %s", s2in.SpanID, s2in.Shared, s1out.SpanID)
							}
						} else if s2in.Shared || s2in.ParentID != s1out.SpanID {
							t.Errorf("service2's ingress: parent %s (want %s), shared %v", s2in.ParentID, s1out.SpanID, s2in.Shared)
						}
						if want128 := trace128 && format != core.FormatOTTracer; (front.TraceID.High != 0) != want128 {
							t.Errorf("trace %s: want 128 bits: %v", front.TraceID, want128)
						}
					})
				}
			}
		}
	}
}
