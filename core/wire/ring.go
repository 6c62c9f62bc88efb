package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"
)

// The shared-memory span transport ("shm").
//
// Over gRPC, a batch of spans is copied into a protobuf message, framed by
// HTTP/2, encrypted by TLS, and the same again backwards in the driver:
// about 2.5 µs of CPU per span between the two processes. With the
// shared-memory transport the host writes each batch once, in the batch
// layout, into a span ring: memory it owns, shared with the driver
// process, which maps it read-only. The Export RPC then carries only where
// the batch is (ExportRequest.ring_offset, ring_length, ring_seq); the
// driver decodes the batch where it lies, without a copy, and the RPC's
// answer is the acknowledgement. Everything else (Configure, Shutdown,
// errors and their classes, health) stays on the gRPC connection.
//
// The ring: the host creates an anonymous memory file (Linux memfd_create),
// sizes it, maps it read-write, then seals it (F_SEAL_SHRINK, F_SEAL_GROW,
// F_SEAL_FUTURE_WRITE, F_SEAL_SEAL), so that the driver, which inherits the
// descriptor, can map it read-only and cannot write to it, resize it or
// unseal it. The descriptor is the driver process's file descriptor number
// RingFDEnv names (3: the first after stdin, stdout and stderr). At
// Configure the host offers the ring (ConfigureRequest.span_ring_bytes, its
// size); a driver that mapped it says so (ConfigureResponse.span_ring). A
// driver that does not (an SDK older than the transport, a language
// without shared memory) gets its batches in ExportRequest.spans, as
// before: nothing else differs.
//
// A batch is a region of the ring, 8-byte aligned: a RingHeaderBytes
// header (below), then the batch layout. The host writes a region while
// no Export it sent is still reading it: a region is reused only after the
// RPC that named it has returned (answered, failed, or the driver process
// died). A driver that goes on reading a region after its Export returned
// (one that ignored its deadline) could see the host reuse it: so the
// header carries a sequence number, written last by the host with an
// atomic store, which the driver checks before it decodes and again after
// the driver's Export returns; if it changed, the driver's result stands
// on spans that may have been overwritten, and the SDK reports the batch
// as failed (permanent) and logs it.
//
// Nothing in the ring is ever read by the host: a hostile or broken
// driver can only answer an RPC, which the host validates as any other.
// A driver that dies mid-batch leaves the batch in the host's memory; the
// host's pipeline sends it again to the restarted driver (at least once,
// with the same batch id, as over gRPC).

// Transports a driver's batches may take (tracing.driver.transport).
const (
	// TransportAuto uses the span ring when the platform and the driver
	// both can, else gRPC. It is the default.
	TransportAuto = "auto"
	// TransportShm requires the span ring: a driver that does not take it
	// fails to start.
	TransportShm = "shm"
	// TransportGRPC sends every batch inside its Export RPC.
	TransportGRPC = "grpc"
)

// Transports lists the transport names a config may give.
var Transports = []string{TransportAuto, TransportShm, TransportGRPC}

// RingFDEnv is the environment variable that names, in the driver process,
// the file descriptor of the span ring the host passed to it.
const RingFDEnv = "TRACEHOP_SPAN_RING_FD"

// RingHeaderBytes is the size of a region's header. The header is, in
// little-endian: sequence number u64 | batch length u32 | span count u32.
// The sequence number is never 0 in a region ready to read: the host
// stores 0 there first when it reuses a region, and the region's number
// last.
const RingHeaderBytes = 16

// RingRegion is where one batch lies in a span ring.
type RingRegion struct {
	Offset int    // of the header, from the ring's start; a multiple of 8
	Length int    // of the batch, after the header
	Count  int    // spans in the batch
	Seq    uint64 // the header's sequence number
}

// ErrRingRegion is wrapped by every error of CheckRegion and RingBatch.
var ErrRingRegion = errors.New("bad span ring region")

// RingSeq reads the sequence number of the region at off, atomically: the
// host may be storing it.
func RingSeq(ring []byte, off int) uint64 {
	return atomic.LoadUint64((*uint64)(unsafe.Pointer(&ring[off])))
}

// RingSeqAgain reads the sequence number of the region at off once more,
// after the batch's bytes were read: the reader's check that the host did
// not reuse the region meanwhile. An acquire load alone would not do: it
// keeps later loads after it, not earlier ones, so a load of the batch
// could be performed after it (arm64) and see the new region's bytes
// while it still saw the old number. loadFence keeps them ahead, once per
// batch.
func RingSeqAgain(ring []byte, off int) uint64 {
	loadFence()
	return RingSeq(ring, off)
}

// SetRingSeq stores the sequence number of the region at off, atomically,
// after the rest of the region is written: a release, so a reader that
// sees the number sees every byte written before it.
func SetRingSeq(ring []byte, off int, seq uint64) {
	atomic.StoreUint64((*uint64)(unsafe.Pointer(&ring[off])), seq)
}

// ClearRingSeq stores 0 into the sequence number of the region at off,
// before the region is rewritten, so that a reader still looking at the
// old region sees it go. The atomic store is a release, which keeps the
// stores before it ahead of it but lets the new region's stores that
// follow pass it (arm64): storeFence keeps those after it.
func ClearRingSeq(ring []byte, off int) {
	SetRingSeq(ring, off, 0)
	storeFence()
}

// RingBatch returns the batch of region r in ring, after checking that r
// lies within the ring and that the header there says what r says (so the
// host wrote it and has not reused it). The bytes alias ring.
func RingBatch(ring []byte, r RingRegion) ([]byte, error) {
	if r.Offset < 0 || r.Offset%8 != 0 || r.Length < 0 || r.Offset > len(ring)-RingHeaderBytes ||
		r.Length > len(ring)-r.Offset-RingHeaderBytes {
		return nil, fmt.Errorf("%w: offset %d, length %d in a ring of %d bytes", ErrRingRegion, r.Offset, r.Length, len(ring))
	}
	if seq := RingSeq(ring, r.Offset); seq == 0 || seq != r.Seq {
		return nil, fmt.Errorf("%w: sequence %d where the Export says %d (the region was rewritten)", ErrRingRegion, seq, r.Seq)
	}
	h := ring[r.Offset : r.Offset+RingHeaderBytes]
	if n, c := binary.LittleEndian.Uint32(h[8:]), binary.LittleEndian.Uint32(h[12:]); int(n) != r.Length || int(c) != r.Count {
		return nil, fmt.Errorf("%w: the header says %d bytes and %d spans, the Export %d and %d", ErrRingRegion, n, c, r.Length, r.Count)
	}
	start := r.Offset + RingHeaderBytes
	return ring[start : start+r.Length : start+r.Length], nil
}

// PutRingHeader writes the length and count of the region at off; its
// sequence number is written last, with SetRingSeq.
func PutRingHeader(ring []byte, off, length, count int) {
	binary.LittleEndian.PutUint32(ring[off+8:], uint32(length))
	binary.LittleEndian.PutUint32(ring[off+12:], uint32(count))
}
