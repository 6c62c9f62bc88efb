package proxy

import (
	"bytes"
	"os"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

// The limits of the process as a whole (issue 26): how many downstream
// connections it may hold, and the measures the overload signal reads
// (resident memory, the container's memory limit). What a listener does
// at its limits is listener.go's; what /ready says, server.go's.

// connCount counts the downstream connections of a listener or of the
// process against a maximum (0: none).
type connCount struct {
	n   atomic.Int64
	max atomic.Int64
	// peak is the most n reached since releaseAfterFloods last looked
	// (updated without a lock: it may miss a little).
	peak atomic.Int64
}

// full reports whether one more connection would go over the maximum.
func (c *connCount) full() bool {
	m := c.max.Load()
	return m > 0 && c.n.Load() >= m
}

// connSlot is an admitted connection's place in its listener's count and
// the process's: released once, when the connection closes (or when it
// is closed to make room, so that the room is there at once).
type connSlot struct {
	released atomic.Bool
	counts   [2]*connCount
}

func newConnSlot(listener, process *connCount) *connSlot {
	s := &connSlot{counts: [2]*connCount{listener, process}}
	for _, c := range s.counts {
		if n := c.n.Add(1); n > c.peak.Load() {
			c.peak.Store(n)
		}
	}
	return s
}

// floodDrop is how far the process's client connections must fall from
// their peak for releaseAfterFloods to hand memory back: a few MiB.
const floodDrop = 256

// releaseAfterFloods gives freed memory back to the system once a flood of
// client connections has left. The Go runtime keeps freed memory for
// reuse and returns it only gradually, and with nothing allocating, no
// collection even frees it: RSS would stay at the flood's height for
// minutes (issue 26: 322 MiB 30 s after the flood). Every period, if the
// count fell by floodDrop or more from its peak, to under half of it,
// debug.FreeOSMemory collects and returns what is free: a few ms of CPU,
// after floods only.
func releaseAfterFloods(c *connCount, every time.Duration, stop <-chan struct{}) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		n := c.n.Load()
		if peak := c.peak.Swap(n); peak-n >= floodDrop && n < peak/2 {
			debug.FreeOSMemory()
		}
	}
}

// given reports whether the slot was given up while its connection
// still serves: it was closed to make room as its request arrived (see
// fastConn.waitIdle), and that request is its last.
func (s *connSlot) given() bool { return s != nil && s.released.Load() }

func (s *connSlot) release() {
	if s == nil || !s.released.CompareAndSwap(false, true) {
		return
	}
	for _, c := range s.counts {
		c.n.Add(-1)
	}
}

// connLife is what a client connection's limits read, on whichever path
// serves it: when it was accepted, how many requests it carried
// (max_requests_per_connection, max_connection_age), its place in the
// counts.
type connLife struct {
	born     time.Time
	requests atomic.Int64
	slot     *connSlot
}

// lifeCarrier is a connection wrapper that carries its connLife (the fast
// path's replayConn, handed to net/http).
type lifeCarrier interface{ lifeOf() *connLife }

// fdReserve is what the default process maximum leaves of RLIMIT_NOFILE
// for everything but client connections: the listening sockets, the admin
// server and its clients, driver processes (pipes, the gRPC socket), the
// config and certificate files, logs.
const fdReserve = 128

// defaultMaxConnections is the process's downstream connection maximum
// when the config sets none: of the descriptors RLIMIT_NOFILE allows (the
// soft limit, which Go raises to the hard one at start), fdReserve is kept
// back and half of the rest goes to clients, since each client connection
// may hold an upstream connection too (nginx's worker_connections counts
// both sides the same way). 0 when the limit cannot be read.
func defaultMaxConnections() int64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == 0 {
		return 0
	}
	if rl.Cur > 1<<40 { // RLIM_INFINITY
		return 0
	}
	return max(16, (int64(rl.Cur)-fdReserve)/2)
}

// residentBytes is the process's resident memory (Linux: /proc/self/statm;
// 0 elsewhere).
func residentBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(string(f[1]), 10, 64)
	return pages * int64(os.Getpagesize())
}

// containerMemoryLimit is the memory limit of the cgroup tracehop runs in
// (a Kubernetes container's limits.memory), or 0 without one.
func containerMemoryLimit() int64 {
	for _, f := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		n, err := strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64)
		if err != nil || n <= 0 || n >= 1<<60 { // "max", or v1's "unlimited"
			return 0
		}
		return n
	}
	return 0
}
