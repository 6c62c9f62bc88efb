package pipeline

import (
	"sync/atomic"
	"time"
)

// DropReason says why a span never reached a back end.
type DropReason int

// The reasons a span is dropped.
const (
	// DropQueueFull: the driver's queue was full when the span was enqueued.
	DropQueueFull DropReason = iota
	// DropRetriesExhausted: the batch failed with retryable errors for
	// longer than Config.RetryFor.
	DropRetriesExhausted
	// DropRejected: the driver said the batch can never succeed.
	DropRejected
	// DropShutdown: the pipeline stopped before the span could be sent.
	DropShutdown
	// DropInvalid: the span has a zero trace or span id, which every back
	// end refuses (and would refuse its whole batch for).
	DropInvalid
	numDropReasons
)

var dropReasonNames = [numDropReasons]string{"queue_full", "retries_exhausted", "rejected", "shutdown", "invalid"}

// String returns the reason's metric label.
func (r DropReason) String() string {
	if r >= 0 && r < numDropReasons {
		return dropReasonNames[r]
	}
	return "unknown"
}

// DropReasons lists every reason, in a stable order, for metrics exporters
// that want a zero series for each.
func DropReasons() []DropReason {
	return []DropReason{DropQueueFull, DropRetriesExhausted, DropRejected, DropShutdown, DropInvalid}
}

// LatencyBuckets are the upper bounds of the Export latency histogram.
var LatencyBuckets = []time.Duration{
	time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond,
	50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

type counters struct {
	enqueued, exported, exportErrors, batches atomic.Uint64
	dropped                                   [numDropReasons]atomic.Uint64
	latencyCounts                             [13]atomic.Uint64 // len(LatencyBuckets)+1, the last is +Inf
	latencySumNanos                           atomic.Int64
}

func (c *counters) observeLatency(d time.Duration) {
	i := 0
	for i < len(LatencyBuckets) && d > LatencyBuckets[i] {
		i++
	}
	c.latencyCounts[i].Add(1)
	c.latencySumNanos.Add(int64(d))
}

// Latency is a snapshot of the Export latency histogram.
type Latency struct {
	// Counts[i] is the number of Export calls that took at most
	// LatencyBuckets[i] (and more than the previous bound); the last entry
	// counts the slower ones.
	Counts []uint64
	Sum    time.Duration
}

// DriverStats is a snapshot of one driver's counters.
type DriverStats struct {
	Name string
	// Enqueued counts spans accepted into the queue.
	Enqueued uint64
	// Exported counts spans the driver acknowledged.
	Exported uint64
	// Dropped counts spans lost, by reason.
	Dropped [numDropReasons]uint64
	// ExportErrors counts failed Export calls, retried or not.
	ExportErrors uint64
	// Batches counts successful Export calls.
	Batches            uint64
	QueueLen, QueueCap int
	Latency            Latency
	// Restarts and Up come from a supervised (plugin) driver; an
	// in-process driver is always up and never restarts.
	Restarts uint64
	Up       bool
}

// DroppedTotal sums Dropped over every reason.
func (s DriverStats) DroppedTotal() uint64 {
	var n uint64
	for _, d := range s.Dropped {
		n += d
	}
	return n
}

// Supervised is implemented by drivers that run in a process that can die
// and be restarted (core/driverhost's processes); the pipeline reports its
// numbers in DriverStats.
type Supervised interface {
	Restarts() uint64
	Up() bool
}

// StatsSource is what the proxy's metrics read: a snapshot of every
// driver's counters.
type StatsSource interface {
	Stats() []DriverStats
}
