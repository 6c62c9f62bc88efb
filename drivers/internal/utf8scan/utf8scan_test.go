package utf8scan

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// Every byte value at every position of strings of every length up to 20
// is seen: ASCII only when each byte is below 0x80, Valid as
// utf8.ValidString.
func TestEveryByteEveryPosition(t *testing.T) {
	for n := 1; n <= 20; n++ {
		for pos := 0; pos < n; pos++ {
			for c := 0; c < 256; c++ {
				b := []byte(strings.Repeat("a", n))
				b[pos] = byte(c)
				s := string(b)
				if got, want := ASCII(OrBytes(0, s)), c < 0x80; got != want {
					t.Fatalf("ASCII(%q) = %v", s, got)
				}
				if got, want := Valid(s), utf8.ValidString(s); got != want {
					t.Fatalf("Valid(%q) = %v", s, got)
				}
			}
		}
	}
	if !ASCII(OrBytes(0, "")) || !Valid("") || ASCII(OrBytes(OrBytes(0, "ab"), "\xc3\xa9")) {
		t.Fatal("the empty string is ASCII; an accumulator keeps a high bit once set")
	}
	for _, s := range []string{"Zoë", "☃ \u2028", "\xe2\x80", "ab\xff"} {
		if Valid(s) != utf8.ValidString(s) {
			t.Errorf("Valid(%q) = %v", s, Valid(s))
		}
	}
}
