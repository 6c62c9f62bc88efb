package hexdigit_test

import (
	"strconv"
	"testing"

	"github.com/tracehop/tracehop/internal/hexdigit"
)

// Every byte, against strconv's reading of it as a base-16 digit.
func TestValue(t *testing.T) {
	for c := range 256 {
		want, err := strconv.ParseUint(string(rune(c)), 16, 8)
		if err != nil {
			want = hexdigit.Invalid
		}
		if got := hexdigit.Value(byte(c)); uint64(got) != want {
			t.Errorf("Value(%q) = %#x, want %#x", byte(c), got, want)
		}
	}
}
