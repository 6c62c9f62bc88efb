package proxy

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"strconv"
	"testing"
)

// formatUUID writes what RFC 9562's layout says for version 4: the same
// as formatting the 16 bytes one at a time, with the version and variant
// bits set.
func TestFormatUUID(t *testing.T) {
	bytewise := func(hi, lo uint64) string {
		var b [16]byte
		for i := range 8 {
			b[i], b[8+i] = byte(hi>>(56-8*i)), byte(lo>>(56-8*i))
		}
		b[6] = b[6]&0x0f | 0x40
		b[8] = b[8]&0x3f | 0x80
		return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
	}
	v4 := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 10000; i++ {
		hi, lo := r.Uint64(), r.Uint64()
		if i < 4 {
			hi, lo = [4]uint64{0, ^uint64(0), 0x0123456789abcdef, 0}[i], [4]uint64{0, ^uint64(0), 0xfedcba9876543210, ^uint64(0)}[i]
		}
		var id [36]byte
		formatUUID(&id, hi, lo)
		got := string(id[:])
		if want := bytewise(hi, lo); got != want || !v4.MatchString(got) {
			t.Fatalf("formatUUID(%#x, %#x) = %s, want %s", hi, lo, got, want)
		}
	}
	if a, b := newRequestID(), newRequestID(); a == b || !v4.MatchString(a) {
		t.Fatalf("two request ids: %s, %s", a, b)
	}
}

// appendDecimal writes what strconv does, at the edges of every digit
// count and for random values.
func TestAppendDecimal(t *testing.T) {
	vals := []uint64{0, 1, 9, 10, 99, 100, 101, 999, 1000, 65535, 1 << 32, 1<<63 - 1, 1 << 63, ^uint64(0)}
	for p := uint64(1); p < 1e19; p *= 10 {
		vals = append(vals, p-1, p, p+1)
	}
	r := rand.New(rand.NewPCG(3, 4))
	for range 10000 {
		vals = append(vals, r.Uint64()>>r.IntN(64))
	}
	for _, v := range vals {
		if got, want := string(appendDecimal([]byte("x"), v)), "x"+strconv.FormatUint(v, 10); got != want {
			t.Fatalf("appendDecimal(%d) = %q, want %q", v, got, want)
		}
	}
	var sb spanBuf
	sb.reset(64)
	if a, b, c := sb.int(-42), sb.int(0), sb.int(1234); a != "-42" || b != "0" || c != "1234" {
		t.Fatalf("spanBuf.int: %q %q %q", a, b, c)
	}
}
