package driverhost

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tracehop/tracehop/core"
	"github.com/tracehop/tracehop/core/wire"
)

// A driver holds the ring's descriptor: it must not be able to write into
// the host's memory through it, nor resize it (a shrunk file would make the
// host's next write fault), nor lift the seals.
func TestRingIsReadOnlyForTheDriver(t *testing.T) {
	r, err := newSpanRing(1 << 16)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	// The driver's side: the same file, opened anew as the child has it.
	fd, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", r.file.Fd()), unix.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if m, err := unix.Mmap(fd, 0, 1<<16, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err == nil {
		unix.Munmap(m)
		t.Error("the ring could be mapped writable")
	}
	if _, err := unix.Pwrite(fd, []byte("x"), 0); err == nil {
		t.Error("the ring could be written to")
	}
	if err := unix.Ftruncate(fd, 0); err == nil {
		t.Error("the ring could be shrunk")
	}
	if err := unix.Ftruncate(fd, 1<<20); err == nil {
		t.Error("the ring could be grown")
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, 0); err == nil || !errors.Is(err, unix.EPERM) {
		t.Errorf("the seals could be changed: %v", err)
	}
	m, err := unix.Mmap(fd, 0, 1<<16, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatalf("the driver cannot map the ring read-only: %v", err)
	}
	defer unix.Munmap(m)
	// What the host writes, the driver reads.
	reg, ok := putSpans(r, []core.Span{{TraceID: core.TraceID{Low: 9}, SpanID: 9, Name: "seen"}})
	if !ok {
		t.Fatal("put refused a small batch")
	}
	b, err := wire.RingBatch(m, reg)
	if err != nil {
		t.Fatal(err)
	}
	spans, err := wire.DecodeBatch(nil, b, reg.Count, time.Now)
	if err != nil || len(spans) != 1 || spans[0].Name != "seen" {
		t.Fatalf("the driver read %v, %v", spans, err)
	}
}

// A region is never rewritten while an Export names it; when nothing is in
// flight every batch starts at the ring's start; a batch that fits nowhere
// is refused (it then goes inside the Export).
func TestRingRegions(t *testing.T) {
	r, err := newSpanRing(8 << 10)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	batch := func(n int) []core.Span {
		s := make([]core.Span, n)
		for i := range s {
			s[i] = core.Span{TraceID: core.TraceID{Low: uint64(i + 1)}, SpanID: core.SpanID(i + 1), Name: "a-span-of-some-length"}
		}
		return s
	}
	a, ok := putSpans(r, batch(20))
	if !ok || a.Offset != 0 {
		t.Fatalf("first region %+v, %v", a, ok)
	}
	r.release(a)
	b, _ := putSpans(r, batch(20))
	if b.Offset != 0 || b.Seq == a.Seq {
		t.Fatalf("with nothing in flight, the next batch goes at 0 with a new sequence: %+v after %+v", b, a)
	}
	// b is in flight (its Export has not returned): c goes after it.
	c, ok := putSpans(r, batch(20))
	if !ok || c.Offset < b.Offset+wire.RingHeaderBytes+b.Length || c.Offset%8 != 0 {
		t.Fatalf("c %+v overlaps b %+v or is misaligned", c, b)
	}
	if seq := wire.RingSeq(r.mem, b.Offset); seq != b.Seq {
		t.Fatalf("b was rewritten while in flight: sequence %d, want %d", seq, b.Seq)
	}
	// Fill what is left: a batch that fits nowhere is refused.
	if _, ok := putSpans(r, batch(400)); ok {
		t.Fatal("a batch larger than the free room was placed")
	}
	r.release(b)
	// b's room at the start is free again; c is still busy.
	d, ok := putSpans(r, batch(20))
	if !ok {
		t.Fatal("no room after b was released")
	}
	if d.Offset < c.Offset+wire.RingHeaderBytes+c.Length && d.Offset+wire.RingHeaderBytes+d.Length > c.Offset {
		t.Fatalf("d %+v overlaps c %+v, still in flight", d, c)
	}
}

// putSpans puts spans into r as the pipeline's batches arrive: encoded.
func putSpans(r *spanRing, spans []core.Span) (wire.RingRegion, bool) {
	return r.put(len(spans), func(dst []byte) []byte { return wire.AppendBatch(dst, spans) })
}
