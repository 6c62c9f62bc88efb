package propagation

import (
	"strings"
	"testing"
)

// The cases follow W3C Baggage's grammar and limits, and what its test
// suite and OpenTelemetry's propagators accept and refuse.
func TestRangeBaggage(t *testing.T) {
	many := func(n int) string {
		m := make([]string, n)
		for i := range m {
			m[i] = "k" + strings.Repeat("x", i%7) + "=v"
		}
		return strings.Join(m, ",")
	}
	for _, tc := range []struct {
		name, in string
		want     string // key=value;... as fn saw them, "" for none
		ok       bool
	}{
		{"one", "userId=alice", "userId=alice;", true},
		{"several with OWS", "userId=alice , serverNode = DF%2028 ,\tisProduction=false", "userId=alice;serverNode=DF 28;isProduction=false;", true},
		{"properties skipped", "user=bob;prop1;prop2=x,tier=gold", "user=bob;tier=gold;", true},
		{"percent-encoded UTF-8", "city=M%C3%BCnchen", "city=München;", true},
		{"plus is not a space", "q=a+b", "q=a+b;", true},
		{"empty value", "k=", "k=;", true},
		{"empty", "", "", false},
		{"empty member", "a=1,,b=2", "", false},
		{"trailing comma", "a=1,", "", false},
		{"no equals", "a=1,b", "", false},
		{"space in key", "a b=1", "", false},
		{"bad value octet", `a="quoted"`, "", false},
		{"space in value", "a=x y", "", false},
		{"bad escape", "a=%zz", "", false},
		{"bad property", "a=1;p q", "", false},
		{"180 members", many(180), "", true},
		{"181 members", many(181), "", false},
		{"over 8192 bytes", "k=" + strings.Repeat("v", MaxBaggageBytes), "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got strings.Builder
			n := 0
			ok := RangeBaggage(tc.in, func(k, v string) {
				n++
				got.WriteString(k + "=" + v + ";")
			})
			if ok != tc.ok {
				t.Fatalf("RangeBaggage(%.40q) = %v, want %v", tc.in, ok, tc.ok)
			}
			if !ok && n != 0 {
				t.Fatalf("a refused value still gave %d members", n)
			}
			if tc.name == "180 members" {
				if n != 180 {
					t.Fatalf("got %d members, want 180", n)
				}
				return
			}
			if got.String() != tc.want {
				t.Fatalf("members %q, want %q", got.String(), tc.want)
			}
		})
	}
}

func FuzzRangeBaggage(f *testing.F) {
	f.Add("userId=alice,serverNode=DF%2028;p=1")
	f.Add("a=1,,b")
	f.Fuzz(func(t *testing.T, in string) {
		var seen int
		ok := RangeBaggage(in, func(k, v string) {
			seen++
			if !isTokenString(k) {
				t.Fatalf("key %q is not a token", k)
			}
		})
		if !ok && seen != 0 {
			t.Fatalf("refused %q but called fn", in)
		}
		if seen > MaxBaggageMembers {
			t.Fatalf("%d members", seen)
		}
	})
}
