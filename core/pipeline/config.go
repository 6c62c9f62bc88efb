package pipeline

import (
	"errors"
	"fmt"
	"time"
)

// Config is the pipeline's one block of delivery settings. The zero value of
// each field means its default.
type Config struct {
	// QueueSize is the number of spans each driver's queue holds before new
	// spans are dropped (default 8192).
	QueueSize int
	// BatchSize is the most spans sent in one Export call (default 1024).
	// What a batch costs as such (the Export call, the back end's request,
	// waking the driver) is paid per batch, about 230 µs of the driver's
	// CPU and 80 µs of tracehop's: at 512 that was a quarter of the
	// driver's cost per span under load. A quiet proxy's batches are cut
	// by BatchDelay long before either size.
	BatchSize int
	// BatchDelay is how long a partly filled batch waits for more spans
	// before it is sent anyway (default 200ms).
	BatchDelay time.Duration
	// ExportTimeout bounds one Export call (default 10s).
	ExportTimeout time.Duration
	// RetryInitial and RetryMax bound the backoff between retries of a
	// failed batch (defaults 100ms and 5s).
	RetryInitial, RetryMax time.Duration
	// RetryFor is how long a batch is retried before it is dropped and
	// counted (default 5m). Memory is bounded by the queue whatever it is:
	// while the batch waits, new spans fill the queue and, once it is full,
	// are dropped and counted. So a long retry only means that an outage
	// shorter than the queue's worth of traffic loses nothing.
	RetryFor time.Duration
	// ErrorLogInterval is the shortest time between two log lines about
	// failed exports of one driver (default 10s); failures in between are
	// counted and summed up in the next line.
	ErrorLogInterval time.Duration
}

// Defaults for Config.
const (
	DefaultQueueSize        = 8192
	DefaultBatchSize        = 1024
	DefaultBatchDelay       = 200 * time.Millisecond
	DefaultExportTimeout    = 10 * time.Second
	DefaultRetryInitial     = 100 * time.Millisecond
	DefaultRetryMax         = 5 * time.Second
	DefaultRetryFor         = 5 * time.Minute
	DefaultErrorLogInterval = 10 * time.Second
)

func (c Config) withDefaults() Config {
	set := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	set(&c.BatchDelay, DefaultBatchDelay)
	set(&c.ExportTimeout, DefaultExportTimeout)
	set(&c.RetryInitial, DefaultRetryInitial)
	set(&c.RetryMax, DefaultRetryMax)
	set(&c.RetryFor, DefaultRetryFor)
	set(&c.ErrorLogInterval, DefaultErrorLogInterval)
	return c
}

// Validate reports every out-of-range setting, each named by its config key.
func (c Config) Validate() error {
	var errs []error
	if c.QueueSize < 0 {
		errs = append(errs, fmt.Errorf("queue_size: must not be negative, got %d", c.QueueSize))
	}
	if c.BatchSize < 0 {
		errs = append(errs, fmt.Errorf("batch_size: must not be negative, got %d", c.BatchSize))
	}
	if c.QueueSize > 0 && c.BatchSize > c.QueueSize {
		errs = append(errs, fmt.Errorf("batch_size: must not exceed queue_size (%d), got %d", c.QueueSize, c.BatchSize))
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"batch_delay", c.BatchDelay}, {"export_timeout", c.ExportTimeout}, {"retry_initial", c.RetryInitial}, {"retry_max", c.RetryMax}, {"retry_for", c.RetryFor}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s: must not be negative, got %s", d.key, d.v))
		}
	}
	return errors.Join(errs...)
}
