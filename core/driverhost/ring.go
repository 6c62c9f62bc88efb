package driverhost

import (
	"os"
	"sync"

	"github.com/tracehop/tracehop/core/wire"
)

// DefaultRingBytes is the size of a driver's span ring: room for several
// batches of the largest kind the pipeline cuts by default (1,024 spans of
// a few hundred bytes each); a batch that fits nowhere goes inside its
// Export request. Only the pages a batch touched are resident: with
// one batch in flight at a time, every batch starts at the ring's start.
const DefaultRingBytes = 4 << 20

// spanRing is the host's side of a span ring: it places batches in
// regions that no Export in flight is reading.
type spanRing struct {
	file *os.File // handed to every launch of the driver
	mem  []byte

	mu   sync.Mutex
	seq  uint64
	busy []wire.RingRegion // regions named by an Export that has not returned
	next int               // where the next region goes when some are busy
}

func newSpanRing(size int) (*spanRing, error) {
	f, mem, err := openRing(size)
	if err != nil {
		return nil, err
	}
	return &spanRing{file: f, mem: mem}, nil
}

// put writes a batch of count spans, which fill appends, into a free region
// and returns it; false when the batch does not fit beside the regions
// still being read (then it goes in the Export itself). A region is busy
// until release.
func (r *spanRing) put(count int, fill func(dst []byte) []byte) (wire.RingRegion, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	// Most of the time nothing is busy (a driver's batches go one at a
	// time): start at 0, so that only the pages one batch needs are used.
	off := 0
	if len(r.busy) > 0 {
		off = r.next
	}
	reg, ok := r.write(off, count, fill)
	if !ok && off != 0 {
		reg, ok = r.write(0, count, fill) // wrap around
	}
	if !ok {
		return wire.RingRegion{}, false
	}
	r.busy = append(r.busy, reg)
	r.next = (reg.Offset + wire.RingHeaderBytes + reg.Length + 7) &^ 7
	return reg, true
}

// write fills the region at off when it fits before the ring's end and
// overlaps no busy region.
func (r *spanRing) write(off, count int, fill func(dst []byte) []byte) (wire.RingRegion, bool) {
	end := len(r.mem)
	for _, b := range r.busy {
		if b.Offset >= off {
			end = min(end, b.Offset)
		}
		if b.Offset < off && off < b.Offset+wire.RingHeaderBytes+b.Length {
			return wire.RingRegion{}, false
		}
	}
	start := off + wire.RingHeaderBytes
	if start > end {
		return wire.RingRegion{}, false
	}
	wire.ClearRingSeq(r.mem, off) // a reader that still looks sees it go
	dst := r.mem[start:start:end]
	out := fill(dst)
	if len(out) > 0 && &out[0] != &r.mem[start] || len(out) > end-start {
		return wire.RingRegion{}, false // it grew elsewhere: too large here
	}
	r.seq++
	reg := wire.RingRegion{Offset: off, Length: len(out), Count: count, Seq: r.seq}
	wire.PutRingHeader(r.mem, off, reg.Length, reg.Count)
	wire.SetRingSeq(r.mem, off, reg.Seq)
	return reg, true
}

// release frees a region once the Export that named it has returned. It
// clears the region's number first: the next region written over these
// bytes may start elsewhere (regions vary in length), and then its plain
// stores, not its 0, would land on this header, where a driver still
// reading (one that outlived its deadline) might find the number intact.
func (r *spanRing) release(reg wire.RingRegion) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, b := range r.busy {
		if b.Seq == reg.Seq {
			wire.ClearRingSeq(r.mem, b.Offset)
			r.busy = append(r.busy[:i], r.busy[i+1:]...)
			return
		}
	}
}

// close unmaps the ring; only once no driver process uses it.
func (r *spanRing) close() {
	closeRing(r.file, r.mem)
}
