package proxy_test

import (
	"fmt"
	"net/http"
	"testing"
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
