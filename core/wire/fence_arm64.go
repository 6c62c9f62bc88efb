package wire

// storeFence keeps every store before it ahead of every store after it,
// as another processor sees them (DMB ISHST). sync/atomic has no fence:
// its store is a release (STLR), which later plain stores may pass.
//
//go:noescape
func storeFence()

// loadFence keeps every load before it ahead of every load after it
// (DMB ISHLD): an acquire load (LDAR) keeps later loads after it, not
// earlier ones.
//
//go:noescape
func loadFence()
