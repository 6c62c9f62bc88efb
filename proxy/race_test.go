//go:build race

package proxy_test

// raceEnabled: the race detector's sync.Pool drops pooled items at random
// (on purpose, to shake out code that relies on them), so the fast path's
// pooled read buffer is allocated again on most requests.
const raceEnabled = true
