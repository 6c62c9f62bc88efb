package sdk

import (
	"sync"
	"sync/atomic"
)

// ShutdownOnce makes a driver's Shutdown idempotent, as the Driver
// interface requires: give the driver a field of this type (its zero value
// is ready) and write
//
//	func (d *Driver) Shutdown(ctx context.Context) error {
//		return d.shutdown.Do(func() error {
//			// flush and release the client, once
//		})
//	}
//
// and refuse work after it in Export:
//
//	if d.shutdown.Done() {
//		return sdk.Permanent(errors.New("mydriver is shut down"))
//	}
//
// Done takes no lock, so Export may ask it while holding the driver's own
// mutex, and release may take that mutex to wait for an Export in flight.
type ShutdownOnce struct {
	mu   sync.Mutex // held while release runs, so a second Shutdown waits for the first
	done atomic.Bool
}

// Do runs release the first time it is called and returns its error;
// later calls wait until that first call has returned, then return nil
// without running release. Done reports true from the moment the first
// call begins.
func (s *ShutdownOnce) Do(release func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done.Load() {
		return nil
	}
	s.done.Store(true)
	return release()
}

// Done reports whether Shutdown has begun: Export refuses work from then on.
func (s *ShutdownOnce) Done() bool { return s.done.Load() }
