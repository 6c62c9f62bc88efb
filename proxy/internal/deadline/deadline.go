package deadline

import (
	"net"
	"time"
)

// Read moves a connection's read deadline only when it has to. A
// deadline already within [want, want+slack] is kept, so that a busy
// keep-alive connection re-arms its runtime timer about once per slack
// rather than for every request: a timeout then fires up to slack late,
// never early. Whoever else sets the deadline (drain) leaves this stale,
// which errs toward an earlier wake-up only.
//
// The zero value is a connection with no deadline. A Read belongs to one
// connection and is used by one goroutine at a time.
type Read struct{ at time.Time }

// Set makes sure c's reads time out no earlier than timeout from now and
// at most a slack later.
func (d *Read) Set(c net.Conn, timeout time.Duration) {
	slack := min(timeout/32, 250*time.Millisecond)
	want := time.Now().Add(timeout)
	if !d.at.Before(want) && d.at.Sub(want) <= slack {
		return
	}
	d.at = want.Add(slack)
	c.SetReadDeadline(d.at)
}

// Forget records that someone else set the deadline (a request body's
// upload): the next Set or Clear moves it, whatever it was.
func (d *Read) Forget() { d.at = unknownDeadline }

// unknownDeadline is far enough ahead that Set always moves it, and not
// zero, so that Clear always clears.
var unknownDeadline = time.Unix(1<<40, 0)

// Clear removes c's read deadline, unless it has none already.
func (d *Read) Clear(c net.Conn) {
	if !d.at.IsZero() {
		d.at = time.Time{}
		c.SetReadDeadline(time.Time{})
	}
}
