package proxy

import (
	"strings"
	"testing"

	"github.com/tracehop/tracehop/proxy/internal/h1"
)

// skipRequestHeader by length-grouped sets says what comparing with every
// name says, for each listed name in any case and for names near them.
func TestSkipRequestHeaderMatchesEveryName(t *testing.T) {
	naive := func(name []byte, trusted bool) bool {
		for _, h := range requestHopHeaders {
			if h1.EqualFold(name, h) {
				return true
			}
		}
		for _, h := range untrustedHeaders {
			if !trusted && h1.EqualFold(name, h) {
				return true
			}
		}
		return false
	}
	var names []string
	for _, h := range append(append([]string{"Host", "User-Agent", "Accept", "", "X", strings.Repeat("a", 70)}, requestHopHeaders...), untrustedHeaders...) {
		names = append(names, h, strings.ToLower(h), strings.ToUpper(h), h+"x", "x"+h)
		if len(h) > 1 {
			names = append(names, h[:len(h)-1])
		}
	}
	for _, n := range names {
		for _, trusted := range []bool{false, true} {
			if got, want := skipRequestHeader([]byte(n), trusted), naive([]byte(n), trusted); got != want {
				t.Errorf("skipRequestHeader(%q, trusted %v) = %v, want %v", n, trusted, got, want)
			}
		}
	}
}
