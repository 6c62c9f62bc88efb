package core

import (
	"fmt"
	"testing"
)

// TestAppendHex64MatchesFmt holds the word-at-a-time hex digits to fmt's
// %016x at every digit value in every position, and at the edges.
func TestAppendHex64MatchesFmt(t *testing.T) {
	check := func(v uint64) {
		t.Helper()
		if got, want := string(appendHex64([]byte("x"), v)), fmt.Sprintf("x%016x", v); got != want {
			t.Fatalf("appendHex64(%#x) = %q, want %q", v, got, want)
		}
	}
	for _, v := range []uint64{0, 1, 9, 10, 15, 0x0123456789abcdef, 0xfedcba9876543210, 1<<64 - 1, 0x9999999999999999, 0xaaaaaaaaaaaaaaaa} {
		check(v)
	}
	for pos := range 16 {
		for d := range uint64(16) {
			check(d << (4 * pos))
			check(^(d << (4 * pos)))
		}
	}
	x := uint64(0x9e3779b97f4a7c15)
	for range 10000 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		check(x)
	}
}

func BenchmarkAppendHex64(b *testing.B) {
	buf := make([]byte, 0, 16)
	v := uint64(0x0123456789abcdef)
	for b.Loop() {
		buf = appendHex64(buf[:0], v)
		v++
	}
}
