package wire_test

import (
	"errors"
	"testing"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/core/wire"
)

// A driver trusts nothing an Export says of the ring: a region out of the
// ring, misaligned, of another sequence number or whose header disagrees
// is refused, never read past the ring.
func TestRingBatchChecksTheRegion(t *testing.T) {
	ring := make([]byte, 4096)
	batch := wire.AppendBatch(nil, []core.Span{{TraceID: core.TraceID{Low: 1}, SpanID: 2, Name: "a"}})
	const off = 64
	copy(ring[off+wire.RingHeaderBytes:], batch)
	wire.PutRingHeader(ring, off, len(batch), 1)
	wire.SetRingSeq(ring, off, 7)
	good := wire.RingRegion{Offset: off, Length: len(batch), Count: 1, Seq: 7}
	got, err := wire.RingBatch(ring, good)
	if err != nil || string(got) != string(batch) {
		t.Fatalf("RingBatch(good) = %q, %v", got, err)
	}
	if cap(got) != len(got) {
		t.Errorf("the batch's capacity reaches past it (%d > %d): an append would write into the ring", cap(got), len(got))
	}
	for name, r := range map[string]wire.RingRegion{
		"negative offset":      {Offset: -8, Length: len(batch), Count: 1, Seq: 7},
		"misaligned":           {Offset: off + 1, Length: len(batch), Count: 1, Seq: 7},
		"header past the end":  {Offset: 4096 - 8, Length: 0, Count: 1, Seq: 7},
		"batch past the end":   {Offset: off, Length: 4096, Count: 1, Seq: 7},
		"huge length":          {Offset: off, Length: 1 << 40, Count: 1, Seq: 7},
		"another sequence":     {Offset: off, Length: len(batch), Count: 1, Seq: 8},
		"sequence 0":           {Offset: 128, Length: 0, Count: 0, Seq: 0},
		"length disagrees":     {Offset: off, Length: len(batch) - 1, Count: 1, Seq: 7},
		"span count disagrees": {Offset: off, Length: len(batch), Count: 2, Seq: 7},
	} {
		if _, err := wire.RingBatch(ring, r); !errors.Is(err, wire.ErrRingRegion) {
			t.Errorf("%s: RingBatch = %v, want ErrRingRegion", name, err)
		}
	}
	// The host rewrites a region: 0 first, so a reader sees it go.
	if seq := wire.RingSeqAgain(ring, off); seq != 7 {
		t.Errorf("RingSeqAgain = %d before the rewrite, want 7", seq)
	}
	wire.ClearRingSeq(ring, off)
	if _, err := wire.RingBatch(ring, good); !errors.Is(err, wire.ErrRingRegion) {
		t.Errorf("a region being rewritten was read: %v", err)
	}
	if seq := wire.RingSeqAgain(ring, off); seq != 0 {
		t.Errorf("RingSeqAgain = %d after ClearRingSeq, want 0", seq)
	}
}
