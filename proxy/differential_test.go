package proxy_test

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// FuzzFastPathMatchesNetHTTP sends the same bytes through the fast path
// and through net/http: the upstream must frame the same requests from
// both (the same methods, paths, queries, hosts, headers and bodies, in
// the same order), and the client must get the same statuses. The fast
// path may hand a request to net/http or refuse it; it may never frame it
// differently. The seeds are the conformance suite's requests.
func FuzzFastPathMatchesNetHTTP(f *testing.F) {
	for _, c := range requestCases {
		f.Add([]byte(c.raw))
	}
	byName := conformancePaths(f, "100ms", false)
	paths := [2]conformancePath{byName["fast"], byName["net/http"]}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) > 64<<10 {
			return
		}
		var got [2]string
		for i, p := range paths {
			settle(p.up)
			answers, _ := exchange(t, p.addr, string(raw), false, 4, 250*time.Millisecond)
			seen, desyncs := settle(p.up)
			if len(desyncs) > 0 {
				t.Fatalf("path %d: the upstream could not frame what it got: %v", i, desyncs)
			}
			got[i] = statuses(answers) + "\n" + describe(seen)
		}
		if got[0] != got[1] {
			t.Fatalf("the paths differ for %q:\nfast path:\n%s\nnet/http:\n%s", raw, got[0], got[1])
		}
	})
}

// describe writes what the upstream framed, leaving out what differs by
// design: the request id (random), the Connection: close net/http sends
// with HEAD (whose connection it does not reuse), how a path is escaped (net/http
// escapes some characters the fast path passes as they came: the same
// path to any server), and a request whose body never arrived whole (the
// fast path holds a small body until it has it all; net/http streams it,
// and the upstream sees it break off: neither is a request it serves).
func describe(seen []seenRequest) string {
	var b strings.Builder
	for _, r := range seen {
		if r.bodyErr != nil {
			continue
		}
		target := r.target
		if u, err := url.ParseRequestURI(r.target); err == nil {
			target = u.Path + "?" + u.RawQuery
		}
		fmt.Fprintf(&b, "%s %s host=%q body=%q\n", r.method, target, r.host, r.body)
		var keys []string
		for k := range r.header {
			if k == "X-Request-Id" || k == "Content-Length" && r.body == "" || k == "Connection" && r.method == http.MethodHead {
				continue
			}
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "  %s: %q\n", k, r.header[k])
		}
	}
	return b.String()
}
