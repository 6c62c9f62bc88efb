package proxy_test

import (
	"testing"

	"github.com/tracehop/tracehop/core"
)

// Where a parent came from travels with the span (core.Span.ParentOrigin),
// so that back ends which mark remote parents (OTLP's span flags) are told,
// not left to guess from the kind: a SERVER span's parent came in a header
// (remote); an egress CLIENT span's parent came in the application's header,
// or by request-id linking in place of the header the application did not
// forward (remote: issue 26 found 0x101 there, local); a spawned upstream
// span's parent is this hop's own span (local); a root has none.
func TestParentOriginTravelsWithTheSpan(t *testing.T) {
	b3 := core.Capabilities{Propagation: []string{"b3"}, TraceID128: true}
	cases := []struct {
		name string
		o    chainOptions
		// frontSpans is how many spans the front proxy makes.
		frontSpans int
		want       map[string]core.ParentOrigin // by service/kind
	}{
		{"app forwards trace headers", chainOptions{caps: b3, forward: forwardAll}, 1, map[string]core.ParentOrigin{
			"front-proxy/server": core.ParentUnknown, "service1/server": core.ParentRemote,
			"service1/client": core.ParentRemote, "service2/server": core.ParentRemote,
		}},
		{"app forwards only x-request-id", chainOptions{caps: b3, forward: []string{"X-Request-Id"}}, 1, map[string]core.ParentOrigin{
			"service1/client": core.ParentRemote, "service2/server": core.ParentRemote,
		}},
		{"spawn_upstream_span", chainOptions{caps: b3, forward: forwardAll, frontTracing: "  spawn_upstream_span: true\n"}, 2, map[string]core.ParentOrigin{
			"front-proxy/server": core.ParentUnknown, "front-proxy/client": core.ParentLocal, "service1/server": core.ParentRemote,
		}},
		{"shared spans", chainOptions{caps: core.Capabilities{Propagation: []string{"b3"}, TraceID128: true, SharedSpans: true}, forward: forwardAll}, 1, map[string]core.ParentOrigin{
			"service1/client": core.ParentRemote, "service2/server": core.ParentRemote, // joins service1's CLIENT span, whose parent is in service1
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			spans := startChain(t, c.o).get(t, c.frontSpans)
			checkOneTrace(t, spans)
			for _, s := range spans {
				key := s.LocalService + "/" + s.Kind.String()
				want, ok := c.want[key]
				if !ok {
					continue
				}
				if s.ParentOrigin != want {
					t.Errorf("%s span (parent %s): parent origin %s, want %s", key, s.ParentID, s.ParentOrigin, want)
				}
			}
		})
	}
}
