package proxy_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

func TestResponseHeaderAndBaggageTags(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Cache", "HIT")
		w.Header().Set("X-User-Tier", "gold")
		if r.URL.Path == "/big" {
			// A body far larger than the fast path's buffers: the tags must
			// not read a head the body has overwritten.
			w.Header().Set("X-Cache", "MISS")
			fmt.Fprint(w, strings.Repeat("b", 300<<10))
			return
		}
		fmt.Fprint(w, "ok")
	})
	p := startProxy(t, fmt.Sprintf(`node: {id: n, service: svc}
admin: {address: "127.0.0.1:0"}
listeners:
  - name: l
    address: "127.0.0.1:0"
    direction: ingress
    routes:
      - {match: {prefix: /tiered}, cluster: up, operation: tiered,
         tracing: {custom_tags: [{tag: tier, response_header: {name: x-user-tier}}]}}
      - {match: {prefix: /down}, cluster: down, operation: down}
      - {match: {prefix: /}, cluster: up}
clusters:
  - {name: up, endpoints: [%s]}
  - {name: down, endpoints: [127.0.0.1:1]}
tracing:
  driver: {name: file}
  custom_tags: [{tag: cache, response_header: {name: X-Cache, default: none}}]
  baggage_tags: [user.id, tenant]
`, up.addr()))
	base := "http://" + p.addr["l"]
	const baggage = "user.id=alice,tenant=acme%20co;ttl=5,other=1,user.id=mallory"
	for _, slow := range []bool{false, true} {
		h := func(kv ...string) map[string]string {
			m := map[string]string{}
			if slow {
				m["Connection"] = "x-slow-path"
			}
			for i := 0; i < len(kv); i += 2 {
				m[kv[i]] = kv[i+1]
			}
			return m
		}
		for _, c := range []struct {
			path, baggage string
			want          map[string]string // tag -> value, "" for absent
			status        int
		}{
			{"/x", baggage, map[string]string{"cache": "HIT", "tier": "", "user.id": "alice", "tenant": "acme co", "other": ""}, 200},
			{"/tiered", "", map[string]string{"cache": "HIT", "tier": "gold", "user.id": ""}, 200},
			{"/big", "", map[string]string{"cache": "MISS"}, 200},
			{"/x", "user.id=alice,,broken", map[string]string{"cache": "HIT", "user.id": ""}, 200},
			{"/x", "user.id=" + strings.Repeat("a", 9000), map[string]string{"user.id": ""}, 200},
			{"/down", "", map[string]string{"cache": "none"}, 503}, // tracehop answers: the default
		} {
			hdr := h()
			if c.baggage != "" {
				hdr = h("Baggage", c.baggage)
			}
			resp, _ := do(t, "GET", base+c.path, hdr)
			if resp.StatusCode != c.status {
				t.Fatalf("slow %v %s: status %d, want %d", slow, c.path, resp.StatusCode, c.status)
			}
			if c.status == 200 && up.header("Baggage") != c.baggage {
				t.Errorf("slow %v %s: baggage reached the upstream as %.60q, want it untouched", slow, c.path, up.header("Baggage"))
			}
			s := p.rec.take(t, 1)[0]
			for tag, want := range c.want {
				got, ok := s.Tag(tag)
				if got != want || want == "" && ok {
					t.Errorf("slow %v %s baggage %.30q: tag %s = %q (present %v), want %q", slow, c.path, c.baggage, tag, got, ok, want)
				}
			}
			n := 0
			for _, tg := range s.Tags {
				if tg.Key == "user.id" {
					n++
				}
			}
			if n > 1 {
				t.Errorf("user.id tagged %d times: the first member of a key counts", n)
			}
		}
	}
}

// An application that forwards only x-request-id loses the baggage of the
// request it serves; the sidecar's request-id linking gives it back, as it
// does tracestate, unless the application sent baggage of its own.
func TestLinkingKeepsBaggage(t *testing.T) {
	app2 := newUpstream(t, nil)
	var egress atomic.Value
	var own atomic.Value
	own.Store("")
	app1 := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequest("GET", "http://"+egress.Load().(string)+"/onward", nil)
		req.Header.Set("X-Request-Id", r.Header.Get("X-Request-Id"))
		if b := own.Load().(string); b != "" {
			req.Header.Set("Baggage", b)
		}
		if r.Header.Get("X-Slow") != "" {
			req.Header.Set("Connection", "x-slow-path")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		resp.Body.Close()
	})
	s1 := startProxy(t, hopConfig("service1", fmt.Sprintf(`
  - {name: ingress, address: "127.0.0.1:0", direction: ingress, routes: [{match: {prefix: /}, cluster: app}]}
  - {name: egress, address: "127.0.0.1:0", direction: egress, routes: [{match: {prefix: /}, cluster: service2}]}
clusters:
  - {name: app, endpoints: [%s]}
  - {name: service2, endpoints: [%s]}
`, app1.addr(), app2.addr()), ""))
	egress.Store(s1.addr["egress"])
	const baggage = "user.id=alice,tenant=acme"
	for _, slow := range []bool{false, true} {
		hdr := map[string]string{"Baggage": baggage, "Traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "Tracestate": "v=1"}
		if slow {
			hdr["X-Slow"] = "1"
			hdr["Connection"] = "x-slow-path"
		}
		own.Store("")
		if resp, _ := do(t, "GET", "http://"+s1.addr["ingress"]+"/", hdr); resp.StatusCode != 200 {
			t.Fatal(resp.Status)
		}
		if got := app2.header("Baggage"); got != baggage {
			t.Errorf("slow %v: the onward call carried baggage %q, want the ingress request's %q", slow, got, baggage)
		}
		if got := app2.header("Tracestate"); got != "v=1" {
			t.Errorf("slow %v: tracestate %q, want v=1", slow, got)
		}
		spans := s1.rec.take(t, 2)
		if spans[0].TraceID != spans[1].TraceID || spans[0].TraceID.String() != "0af7651916cd43dd8448eb211c80319c" {
			t.Errorf("slow %v: the hops are not one trace: %v %v", slow, spans[0].TraceID, spans[1].TraceID)
		}
		own.Store("user.id=bob")
		do(t, "GET", "http://"+s1.addr["ingress"]+"/", hdr)
		if got := app2.header("Baggage"); got != "user.id=bob" {
			t.Errorf("slow %v: the application's own baggage became %q", slow, got)
		}
		s1.rec.take(t, 2)
	}
}

// At the edge (trust_trace_headers: false) a client's baggage is not
// trusted either (issue 26): it is dropped before the application, never
// tagged, and request-id linking does not give it back to the
// application's onward calls. baggage: {trust: true} keeps it. Both paths.
func TestUntrustedBaggageStopsAtTheEdge(t *testing.T) {
	app2 := newUpstream(t, nil)
	var egress atomic.Value
	app1 := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		// The application forwards only x-request-id.
		req, _ := http.NewRequest("GET", "http://"+egress.Load().(string)+"/onward", nil)
		req.Header.Set("X-Request-Id", r.Header.Get("X-Request-Id"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		resp.Body.Close()
	})
	for _, c := range []struct {
		name, settings, want string
	}{
		{"untrusted", "trust_trace_headers: false", ""},
		{"untrusted, baggage trusted", "trust_trace_headers: false, baggage: {trust: true}", "user.id=alice"},
		{"trusted", "trust_trace_headers: true", "user.id=alice"},
		{"trusted, baggage not", "baggage: {trust: false}", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			s1 := startProxy(t, hopConfig("service1", fmt.Sprintf(`
  - {name: ingress, address: "127.0.0.1:0", direction: ingress, %s, routes: [{match: {prefix: /}, cluster: app}]}
  - {name: egress, address: "127.0.0.1:0", direction: egress, routes: [{match: {prefix: /}, cluster: service2}]}
clusters:
  - {name: app, endpoints: [%s]}
  - {name: service2, endpoints: [%s]}
`, c.settings, app1.addr(), app2.addr()), "  baggage_tags: [user.id]\n"))
			egress.Store(s1.addr["egress"])
			for _, slow := range []bool{false, true} {
				hdr := map[string]string{"Baggage": "user.id=alice"}
				if slow {
					hdr["Connection"] = "x-slow-path"
				}
				if resp, _ := do(t, "GET", "http://"+s1.addr["ingress"]+"/", hdr); resp.StatusCode != 200 {
					t.Fatal(resp.Status)
				}
				if got := app1.header("Baggage"); got != c.want {
					t.Errorf("slow %v: the application got baggage %q, want %q", slow, got, c.want)
				}
				if got := app2.header("Baggage"); got != c.want {
					t.Errorf("slow %v: its onward call (linked by request id) carried baggage %q, want %q", slow, got, c.want)
				}
				for _, s := range s1.rec.take(t, 2) {
					if got, _ := s.Tag("user.id"); got != strings.TrimPrefix(c.want, "user.id=") {
						t.Errorf("slow %v: %v span tagged user.id=%q, want %q", slow, s.Kind, got, strings.TrimPrefix(c.want, "user.id="))
					}
				}
			}
		})
	}
}
