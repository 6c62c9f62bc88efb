package proxy_test

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tracehop/tracehop/core"
)

// The W3C Trace Context suite's cases, written from the spec as our own
// table, wired as the suite runs against tracehop: the harness's request
// goes through a sidecar's ingress listener to an application, which calls
// the harness back through the sidecar's egress listener, forwarding every
// trace header or only x-request-id. What the harness checks is what the
// egress sends.

const w3cTrace, w3cSpan = "12345678901234567890123456789012", "1234567890123456"

// w3cSidecar is one tracehop with an ingress and an egress listener and an
// application between them that calls back `calls` times.
type w3cSidecar struct {
	p        *testProxy
	callback *upstream
	// run sends the harness's request with the header h (names as they
	// are) and returns the headers of the callbacks it caused.
	run func(t *testing.T, h http.Header) []http.Header
}

func startW3CSidecar(t *testing.T, tracing string, caps core.Capabilities, forward []string, calls int) *w3cSidecar {
	t.Helper()
	sc := &w3cSidecar{}
	var got atomic.Pointer[[]http.Header]
	sc.callback = newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		for {
			old := got.Load()
			next := append(append([]http.Header(nil), *old...), r.Header.Clone())
			if got.CompareAndSwap(old, &next) {
				break
			}
		}
	})
	var egress atomic.Value
	app := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		for range calls {
			resp, err := callOnward("POST", "http://"+egress.Load().(string)+"/callback", r, forward)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			resp.Body.Close()
		}
	})
	sc.p = startProxyCaps(t, hopConfig("sidecar", fmt.Sprintf(`
  - {name: ingress, address: "127.0.0.1:0", direction: ingress, routes: [{match: {prefix: /}, cluster: app}]}
  - {name: egress, address: "127.0.0.1:0", direction: egress, routes: [{match: {prefix: /}, cluster: harness}]}
clusters:
  - {name: app, endpoints: [%s]}
  - {name: harness, endpoints: [%s]}
`, app.addr(), sc.callback.addr()), tracing), caps)
	egress.Store(sc.p.addr["egress"])
	sc.run = func(t *testing.T, h http.Header) []http.Header {
		t.Helper()
		empty := []http.Header{}
		got.Store(&empty)
		req, _ := http.NewRequest("POST", "http://"+sc.p.addr["ingress"]+"/test", nil)
		req.Header = h
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		return *got.Load()
	}
	return sc
}

var traceparentRe = regexp.MustCompile(`^00-([0-9a-f]{32})-([0-9a-f]{16})-0[0-3]$`)

func TestTraceContextThroughSidecar(t *testing.T) {
	tp := func(v string) [][2]string { return [][2]string{{"traceparent", v}} }
	valid := "00-" + w3cTrace + "-" + w3cSpan + "-00"
	withState := func(states ...string) [][2]string {
		h := [][2]string{{"traceparent", valid}}
		for _, s := range states {
			h = append(h, [2]string{"tracestate", s})
		}
		return h
	}
	var m32, m33 []string
	for i := 1; i <= 33; i++ {
		if i <= 32 {
			m32 = append(m32, fmt.Sprintf("bar%02d=%02d", i, i))
		}
		m33 = append(m33, fmt.Sprintf("bar%02d=%02d", i, i))
	}
	z256, z257 := strings.Repeat("z", 256), strings.Repeat("z", 257)
	cases := []w3cCase{
		{"none", nil, false, "", "03"},
		{"traceparent only", tp("00-" + w3cTrace + "-" + w3cSpan + "-01"), true, "", "01"},
		{"duplicated", [][2]string{{"traceparent", "00-" + w3cTrace[:31] + "1-" + w3cSpan + "-01"}, {"traceparent", "00-" + w3cTrace + "-" + w3cSpan + "-01"}}, false, "", ""},
		{"name trace-parent", [][2]string{{"trace-parent", valid}}, false, "", ""},
		{"name trace.parent", [][2]string{{"trace.parent", valid}}, false, "", ""},
		{"name TraceParent", [][2]string{{"TraceParent", valid}}, true, "", ""},
		{"name TrAcEpArEnT", [][2]string{{"TrAcEpArEnT", valid}}, true, "", ""},
		{"name TRACEPARENT", [][2]string{{"TRACEPARENT", valid}}, true, "", ""},
		{"version 00 trailing", tp(valid + "."), false, "", ""},
		{"version 00 more fields", tp(valid + "-what-the-future-will-be-like"), false, "", ""},
		{"version cc", tp("cc-" + w3cTrace + "-" + w3cSpan + "-01"), true, "", ""},
		{"version cc more fields", tp("cc-" + w3cTrace + "-" + w3cSpan + "-01-what-the-future-will-be-like"), true, "", ""},
		{"version cc bad separator", tp("cc-" + w3cTrace + "-" + w3cSpan + "-01.what-the-future-will-be-like"), false, "", ""},
		{"version ff", tp("ff-" + w3cTrace + "-" + w3cSpan + "-01"), false, "", ""},
		{"version .0", tp(".0-" + w3cTrace + "-" + w3cSpan + "-01"), false, "", ""},
		{"version 0.", tp("0.-" + w3cTrace + "-" + w3cSpan + "-01"), false, "", ""},
		{"version 000", tp("000-" + w3cTrace + "-" + w3cSpan + "-01"), false, "", ""},
		{"version 0000", tp("0000-" + w3cTrace + "-" + w3cSpan + "-01"), false, "", ""},
		{"version 0", tp("0-" + w3cTrace + "-" + w3cSpan + "-01"), false, "", ""},
		{"trace id zero", tp("00-" + strings.Repeat("0", 32) + "-" + w3cSpan + "-01"), false, "", ""},
		{"trace id illegal", tp("00-." + w3cTrace[1:] + "-" + w3cSpan + "-01"), false, "", ""},
		{"trace id illegal 2", tp("00-" + w3cTrace[:31] + ".-" + w3cSpan + "-01"), false, "", ""},
		{"trace id too long", tp("00-" + w3cTrace + "3-" + w3cSpan + "-01"), false, "", ""},
		{"trace id too short", tp("00-" + w3cTrace[:31] + "-" + w3cSpan + "-01"), false, "", ""},
		{"parent id zero", tp("00-" + w3cTrace + "-0000000000000000-01"), false, "", ""},
		{"parent id illegal", tp("00-" + w3cTrace + "-." + w3cSpan[1:] + "-01"), false, "", ""},
		{"parent id illegal 2", tp("00-" + w3cTrace + "-" + w3cSpan[:15] + ".-01"), false, "", ""},
		{"parent id too long", tp("00-" + w3cTrace + "-" + w3cSpan + "7-01"), false, "", ""},
		{"parent id too short", tp("00-" + w3cTrace + "-" + w3cSpan[:15] + "-01"), false, "", ""},
		{"flags illegal", tp("00-" + w3cTrace + "-" + w3cSpan + "-.0"), false, "", ""},
		{"flags illegal 2", tp("00-" + w3cTrace + "-" + w3cSpan + "-0."), false, "", ""},
		{"flags too long", tp("00-" + w3cTrace + "-" + w3cSpan + "-001"), false, "", ""},
		{"flags too short", tp("00-" + w3cTrace + "-" + w3cSpan + "-1"), false, "", ""},
		{"OWS space before", tp(" " + valid), true, "", ""},
		{"OWS tab before", tp("\t" + valid), true, "", ""},
		{"OWS space after", tp(valid + " "), true, "", ""},
		{"OWS tab after", tp(valid + "\t"), true, "", ""},
		{"OWS both", tp("\t " + valid + " \t"), true, "", ""},
		{"level 2 random", tp("00-" + w3cTrace + "-" + w3cSpan + "-02"), true, "", "02"},
		{"tracestate without traceparent", [][2]string{{"tracestate", "foo=1,bar=2"}}, false, "", ""},
		{"tracestate", withState("foo=1,bar=2"), true, "foo=1,bar=2", ""},
		{"name trace-state", [][2]string{{"traceparent", valid}, {"trace-state", "foo=1"}}, true, "", ""},
		{"name TrAcEsTaTe", [][2]string{{"traceparent", valid}, {"TrAcEsTaTe", "foo=1"}}, true, "foo=1", ""},
		{"empty", withState(""), true, "", ""},
		{"empty after", withState("foo=1", ""), true, "foo=1", ""},
		{"empty before", withState("", "foo=1"), true, "foo=1", ""},
		{"several fields", withState("foo=1,bar=2", "rojo=1,congo=2", "baz=3"), true, "foo=1,bar=2,rojo=1,congo=2,baz=3", ""},
		{"duplicated keys", withState("foo=1,foo=2"), true, "foo=1", ""},
		{"duplicated keys across fields", withState("foo=1", "foo=2"), true, "foo=1", ""},
		{"OWS", withState("foo=1 \t , \t bar=2, \t baz=3"), true, "foo=1,bar=2,baz=3", ""},
		{"key with a space", withState("foo =1"), true, "", ""},
		{"key uppercase", withState("FOO=1"), true, "", ""},
		{"key with a dot", withState("foo.bar=1"), true, "", ""},
		{"key foo@", withState("foo@=1,bar=2"), true, "foo@=1,bar=2", ""},
		{"key @foo", withState("@foo=1,bar=2"), true, "", ""},
		{"key foo@@bar", withState("foo@@bar=1,bar=2"), true, "foo@@bar=1,bar=2", ""},
		{"32 members", withState(strings.Join(m32[:16], ","), strings.Join(m32[16:], ",")), true, strings.Join(m32, ","), ""},
		{"33 members", withState(strings.Join(m33[:16], ","), strings.Join(m33[16:], ",")), true, "", ""},
		{"key of 256", withState("foo=1", z256+"=1"), true, "foo=1," + z256 + "=1", ""},
		{"key of 257", withState("foo=1", z257+"=1"), true, "", ""},
		{"value foo=bar=baz", withState("foo=bar=baz"), true, "", ""},
		{"empty value", withState("foo=,bar=3"), true, "", ""},
	}
	for _, formats := range []string{"[tracecontext]", "[b3, tracecontext]"} {
		for _, mode := range []struct {
			name    string
			forward []string
		}{{"app forwards every header", forwardAll}, {"app forwards x-request-id", []string{"X-Request-Id"}}} {
			t.Run(formats+"/"+mode.name, func(t *testing.T) {
				sc := startW3CSidecar(t, "  propagation: "+formats+"\n", core.Capabilities{TraceID128: true}, mode.forward, 1)
				for _, c := range cases {
					for _, path := range httpPaths {
						c.check(t, sc, path.name, path.extra)
					}
				}
			})
		}
	}
}

// w3cCase is one of the suite's requests and what its callback must carry.
type w3cCase struct {
	name  string
	h     [][2]string // header fields in order, names as sent
	same  bool        // the callback continues the sent trace
	state string      // the callback's tracestate; "" for none
	flags string      // the callback's trace-flags, if it matters
}

// check sends the case's fields, with extra, through sc's ingress on the
// named HTTP path and checks the callback.
func (c w3cCase) check(t *testing.T, sc *w3cSidecar, path string, extra http.Header) {
	t.Helper()
	h := extra.Clone()
	for _, kv := range c.h {
		h[kv[0]] = append(h[kv[0]], kv[1]) // the name as sent
	}
	got := sc.run(t, h)
	if len(got) != 1 {
		t.Fatalf("%s (%s): %d callbacks", c.name, path, len(got))
	}
	tps := got[0].Values("Traceparent")
	if len(tps) != 1 || !traceparentRe.MatchString(tps[0]) {
		t.Errorf("%s (%s): callback traceparent %q", c.name, path, tps)
		return
	}
	m := traceparentRe.FindStringSubmatch(tps[0])
	if (m[1] == w3cTrace) != c.same || m[2] == w3cSpan {
		t.Errorf("%s (%s): callback traceparent %s: continues %s: %v, want %v; its parent must be new", c.name, path, tps[0], w3cTrace, m[1] == w3cTrace, c.same)
	}
	if c.flags != "" && !strings.HasSuffix(tps[0], "-"+c.flags) {
		t.Errorf("%s (%s): callback traceparent %s, want flags %s", c.name, path, tps[0], c.flags)
	}
	if ts := got[0].Values("Tracestate"); c.state == "" && len(ts) != 0 || c.state != "" && (len(ts) != 1 || ts[0] != c.state) {
		t.Errorf("%s (%s): callback tracestate %q, want %q", c.name, path, ts, c.state)
	}
}

// The suite's advanced case: three callbacks for one request continue one
// trace, each from a span of its own.
func TestTraceContextThroughSidecarCallsBackThrice(t *testing.T) {
	for _, forward := range [][]string{forwardAll, {"X-Request-Id"}} {
		sc := startW3CSidecar(t, "  propagation: [tracecontext]\n", core.Capabilities{TraceID128: true}, forward, 3)
		got := sc.run(t, http.Header{"Traceparent": {"00-" + w3cTrace + "-" + w3cSpan + "-01"}})
		parents := map[string]bool{}
		for _, h := range got {
			m := traceparentRe.FindStringSubmatch(h.Get("Traceparent"))
			if m == nil || m[1] != w3cTrace {
				t.Fatalf("forwarding %v: callback traceparent %q", forward, h.Get("Traceparent"))
			}
			parents[m[2]] = true
		}
		if len(got) != 3 || len(parents) != 3 {
			t.Errorf("forwarding %v: %d callbacks with %d parent ids, want 3 and 3", forward, len(got), len(parents))
		}
	}
}
