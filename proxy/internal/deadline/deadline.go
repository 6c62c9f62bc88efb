package deadline

import (
	"math"
	"net"
	"time"
)

// Mono returns a reading of the monotonic clock: how long ago the package
// was loaded. It reads one clock where time.Now reads two (the wall clock
// too), which is about 40 ns less on these machines, several times per
// request; it is for the fast path's intervals that are only compared
// (deadlines kept, how long a pooled connection has been idle), never
// shown.
func Mono() time.Duration { return time.Since(epoch) }

// epoch carries a monotonic reading, so time.Since(epoch) reads only the
// monotonic clock.
var epoch = time.Now()

// Read moves a connection's read deadline only when it has to. A
// deadline already within [want, want+slack] is kept, so that a busy
// keep-alive connection re-arms its runtime timer about once per slack
// rather than for every request: a timeout then fires up to slack late,
// never early. Whoever else sets the deadline (drain) leaves this stale,
// which errs toward an earlier wake-up only.
//
// The zero value is a connection with no deadline. A Read belongs to one
// connection and is used by one goroutine at a time.
type Read struct {
	// at is the deadline set, on Mono's clock: 0 is none.
	at time.Duration
}

// Set makes sure c's reads time out no earlier than timeout from now and
// at most a slack later.
func (d *Read) Set(c net.Conn, timeout time.Duration) {
	slack := min(timeout/32, 250*time.Millisecond)
	want := Mono() + timeout
	if d.at >= want && d.at-want <= slack {
		return
	}
	// The wall-clock deadline is read after want: it is no earlier.
	d.at = want + slack
	c.SetReadDeadline(time.Now().Add(timeout + slack))
}

// Forget records that someone else set the deadline (a request body's
// upload): the next Set or Clear moves it, whatever it was.
func (d *Read) Forget() { d.at = unknownDeadline }

// unknownDeadline is far enough ahead that Set always moves it, and not
// zero, so that Clear always clears.
const unknownDeadline = time.Duration(math.MaxInt64 / 2)

// Clear removes c's read deadline, unless it has none already.
func (d *Read) Clear(c net.Conn) {
	if d.at != 0 {
		d.at = 0
		c.SetReadDeadline(time.Time{})
	}
}
