package propagation

import (
	"strings"
	"testing"
)

// Whatever cleanTraceState returns is a valid tracestate within the
// limits, made only of members of its input, in their order.
func FuzzCleanTraceState(f *testing.F) {
	f.Add("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
	f.Add(" foo=1 ,, foo=2,bar= x ")
	f.Add("a@b=1,@c=2")
	f.Add(strings.Repeat("k="+strings.Repeat("v", 200)+",", 5))
	f.Fuzz(func(t *testing.T, in string) {
		out := cleanTraceState(in)
		if out == "" {
			return
		}
		if len(out) > maxTraceStateLen {
			t.Fatalf("%q -> %d characters", in, len(out))
		}
		members := strings.Split(out, ",")
		if len(members) > maxTraceStateMembers {
			t.Fatalf("%q -> %d members", in, len(members))
		}
		seen := map[string]bool{}
		rest := in
		for _, m := range members {
			k, v, ok := strings.Cut(m, "=")
			if !ok || !validTraceStateKey(k) || !validTraceStateValue(v) || seen[k] {
				t.Fatalf("%q -> %q: bad or repeated member %q", in, out, m)
			}
			seen[k] = true
			i := strings.Index(rest, m)
			if i < 0 {
				t.Fatalf("%q -> %q: member %q is not the input's, in order", in, out, m)
			}
			rest = rest[i+len(m):]
		}
	})
}
