//go:build !arm64

package wire

import "sync/atomic"

// storeFence and loadFence order the span ring's plain stores (loads)
// around its sequence number; see fence_arm64.go. On amd64 the processor
// keeps stores in order, and loads in order, by itself, so what is left
// is the compiler's reordering, which an atomic operation stops (and
// LOCK XADD is a full barrier besides). Elsewhere the same atomic add is
// the barrier Go's sync/atomic gives, sequentially consistent for atomic
// operations though not, in every processor's model, for the plain ones
// around it: the ring's check of a late reader is exact on amd64 and
// arm64, the platforms tracehop builds for.
func storeFence() { fenceWord.Add(1) }

func loadFence() { fenceWord.Add(1) }

// fenceWord is what the fences write: its value means nothing.
var fenceWord atomic.Uint32
