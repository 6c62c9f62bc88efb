package wire

import (
	"encoding/binary"
	"testing"
)

// uvarintLen is what binary.PutUvarint writes, at every length's edges.
func TestUvarintLen(t *testing.T) {
	var buf [binary.MaxVarintLen64]byte
	for shift := 0; shift < 64; shift++ {
		for _, v := range []uint64{1<<shift - 1, 1 << shift, 1<<shift + 1} {
			if got, want := uvarintLen(v), binary.PutUvarint(buf[:], v); got != want {
				t.Fatalf("uvarintLen(%d) = %d, want %d", v, got, want)
			}
		}
	}
	if got := uvarintLen(^uint64(0)); got != 10 {
		t.Fatalf("uvarintLen(max) = %d, want 10", got)
	}
}
