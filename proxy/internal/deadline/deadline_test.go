package deadline

import (
	"net"
	"testing"
	"time"
)

// A busy connection keeps its read deadline while it is within the slack,
// moves it when a shorter timeout asks for an earlier one, and never sets
// it earlier than asked.
func TestReadDeadlineMovesOnlyWhenItMust(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	var d Read
	d.Set(a, time.Minute)
	first := d.at
	if until := first - Mono(); until < time.Minute {
		t.Fatalf("deadline in %s, want at least the timeout", until)
	}
	d.Set(a, time.Minute)
	if d.at != first {
		t.Errorf("a second request within the slack moved the deadline")
	}
	d.Set(a, time.Second)
	if d.at >= first || d.at-Mono() < time.Second {
		t.Errorf("a shorter timeout left the deadline at %s", d.at-Mono())
	}
	d.Clear(a)
	// The deadline is really gone: a write from the other side is read.
	go b.Write([]byte("x"))
	d.Set(a, 50*time.Millisecond)
	d.Clear(a)
	time.Sleep(100 * time.Millisecond)
	buf := make([]byte, 1)
	if _, err := a.Read(buf); err != nil {
		t.Fatalf("read after clear: %v", err)
	}
}
