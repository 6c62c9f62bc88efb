package proxy_test

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/proxy"
)

// traceresponse (W3C Trace Context level 2), on a listener that asks for
// it, names the trace and tracehop's span on every answer to a traced
// request, the upstream's and tracehop's own alike, on both paths; it
// replaces an upstream's, and is absent where it was not asked for or the
// request is not traced.
func TestTraceresponse(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Traceresponse", "00-11111111111111111111111111111111-2222222222222222-01")
		fmt.Fprint(w, "ok")
	})
	cfg := fmt.Sprintf(`node: {id: n, service: s}
admin: {address: "127.0.0.1:0"}
listeners:
  - {name: l, address: "127.0.0.1:0", direction: ingress, traceresponse: true, routes: [
      {match: {prefix: /off}, cluster: up, tracing: {enabled: false}},
      {match: {prefix: /down}, cluster: down},
      {match: {prefix: /}, cluster: up}]}
clusters:
  - {name: up, endpoints: [%s]}
  - {name: down, endpoints: ["127.0.0.1:1"], connect_timeout: 200ms}
tracing:
  driver: {name: file}
`, up.Listener.Addr())
	valid := regexp.MustCompile(`^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$`)
	for _, path := range []struct {
		name  string
		setup func(*proxy.Server)
	}{{"fast", nil}, {"net/http", proxy.SlowPathOnly}} {
		t.Run(path.name, func(t *testing.T) {
			p := startProxyWith(t, cfg, core.Capabilities{}, path.setup)
			get := func(target string) *http.Response {
				resp, err := http.Get("http://" + p.addr["l"] + target)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				return resp
			}
			resp := get("/x")
			tr := resp.Header.Get("Traceresponse")
			if !valid.MatchString(tr) || strings.Contains(tr, "1111") {
				t.Fatalf("traceresponse %q on the upstream's answer: want tracehop's own", tr)
			}
			spans := p.rec.wait(t, 1)
			if want := "00-" + spans[0].TraceID.String() + "-" + spans[0].SpanID.String() + "-01"; tr != want {
				t.Errorf("traceresponse %q, want %q (the trace and tracehop's span)", tr, want)
			}
			if resp := get("/down"); resp.StatusCode < 500 || !valid.MatchString(resp.Header.Get("Traceresponse")) {
				t.Errorf("tracehop's own %d: traceresponse %q", resp.StatusCode, resp.Header.Get("Traceresponse"))
			}
			if tr := get("/off").Header.Get("Traceresponse"); strings.HasPrefix(tr, "00-") && !strings.Contains(tr, "1111") {
				t.Errorf("an untraced request got tracehop's traceresponse %q", tr)
			}
		})
	}
	t.Run("off", func(t *testing.T) {
		p := startProxy(t, oneRoute("ingress", "true", up.Listener.Addr().String(), ""))
		resp, err := http.Get("http://" + p.addr["l"] + "/x")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if tr := resp.Header.Get("Traceresponse"); !strings.Contains(tr, "1111") {
			t.Errorf("without traceresponse: true the upstream's header is passed as it came; got %q", tr)
		}
	})
}
