package proxy

import (
	"testing"
	"time"
)

// since stands in for time.Now at a request's end: it must move on from
// the start by what the monotonic clock measured, keep a monotonic
// reading for the durations taken from it, and fall back to the clock
// for a request that has no start.
func TestSinceReadsTheClock(t *testing.T) {
	start := time.Now()
	time.Sleep(2 * time.Millisecond)
	before := time.Now()
	end := since(start)
	after := time.Now()
	if end.Before(before) || end.After(after) {
		t.Errorf("since(start) = %v, want between %v and %v", end, before, after)
	}
	if d := end.Sub(start); d < 2*time.Millisecond {
		t.Errorf("end - start = %v, want at least the 2ms slept", d)
	}
	if end.Round(0) == end {
		t.Errorf("since dropped the monotonic reading: %v", end)
	}
	if z := since(time.Time{}); z.Before(before) {
		t.Errorf("since(zero) = %v, want now (after %v)", z, before)
	}
	// A start without a monotonic reading (a time built from numbers)
	// still gives the wall clock's now.
	wall := time.Unix(0, start.UnixNano())
	if w := since(wall); w.Before(before) || w.After(time.Now()) {
		t.Errorf("since(wall-clock start) = %v, want now", w)
	}
}
