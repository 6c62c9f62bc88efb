//go:build race

package proxy_test

// raceEnabled: the race detector's sync.Pool drops one item put in four at
// random (on purpose, to shake out code that relies on them), so the fast
// path's pooled read buffer is allocated again now and then: about half an
// allocation per request.
const raceEnabled = true
