package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tracehop/tracehop/sdk"
)

// Release runs once however many Shutdowns race, each returns only once
// it has finished, and Done is true from the start of the first.
func TestShutdownOnce(t *testing.T) {
	var s sdk.ShutdownOnce
	if s.Done() {
		t.Fatal("done before any Shutdown")
	}
	var runs atomic.Int32
	var finished atomic.Bool
	started := make(chan struct{})
	release := func() error {
		runs.Add(1)
		close(started)
		if !s.Done() {
			t.Error("not done while releasing")
		}
		time.Sleep(20 * time.Millisecond)
		finished.Store(true)
		return errors.New("flush failed")
	}
	first := make(chan error)
	go func() { first <- s.Do(release) }()
	<-started
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if err := s.Do(release); err != nil {
				t.Errorf("a later Shutdown returned %v, want nil", err)
			}
			if !finished.Load() {
				t.Error("a later Shutdown returned before the first had released")
			}
		})
	}
	wg.Wait()
	if err := <-first; err == nil || err.Error() != "flush failed" {
		t.Fatalf("the first Shutdown returned %v, want release's error", err)
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("release ran %d times", n)
	}
}

// An Export holding the driver's own mutex may ask Done while Shutdown,
// inside Do, waits for that mutex: no deadlock.
func TestShutdownOnceWithDriverMutex(t *testing.T) {
	var (
		s  sdk.ShutdownOnce
		mu sync.Mutex
	)
	mu.Lock() // an Export in flight
	done := make(chan error)
	go func() {
		done <- s.Do(func() error { mu.Lock(); defer mu.Unlock(); return nil })
	}()
	for !s.Done() {
		time.Sleep(time.Millisecond)
	}
	mu.Unlock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

type client struct{ closed int }

func (c *client) Close() error { c.closed++; return nil }

// exampleDriver shows the guard in a driver: Shutdown releases the client
// once, and Export refuses work after it.
type exampleDriver struct {
	client   *client
	shutdown sdk.ShutdownOnce
}

func (d *exampleDriver) Export(context.Context, []sdk.Span) error {
	if d.shutdown.Done() {
		return sdk.Permanent(errors.New("example driver is shut down"))
	}
	return nil
}

func (d *exampleDriver) Shutdown(context.Context) error {
	return d.shutdown.Do(func() error {
		return d.client.Close()
	})
}

func ExampleShutdownOnce() {
	d := &exampleDriver{client: &client{}}
	ctx := context.Background()
	fmt.Println(d.Shutdown(ctx), d.Shutdown(ctx), d.client.closed)
	fmt.Println(d.Export(ctx, nil))
	// Output:
	// <nil> <nil> 1
	// example driver is shut down
}
