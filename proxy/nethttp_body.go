package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// routeTimer is a route timeout that can pause while tracehop waits for
// the client rather than the upstream.
type routeTimer struct {
	mu     sync.Mutex
	d      time.Duration
	t      *time.Timer
	done   bool // the response head is here (or the round trip failed)
	fired  bool
	cancel context.CancelCauseFunc
}

func (rt *routeTimer) resume() {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.done {
		return
	}
	if rt.t == nil {
		rt.t = time.AfterFunc(rt.d, rt.fire)
	} else {
		rt.t.Reset(rt.d)
	}
}

func (rt *routeTimer) pause() {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.t != nil {
		rt.t.Stop()
	}
}

func (rt *routeTimer) fire() {
	rt.mu.Lock()
	if rt.done {
		rt.mu.Unlock()
		return
	}
	rt.fired = true
	rt.mu.Unlock()
	rt.cancel(errUpstreamTimeout)
}

// stop ends the timer for good and reports whether it had fired.
func (rt *routeTimer) stop() bool {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.done = true
	if rt.t != nil {
		rt.t.Stop()
	}
	return rt.fired
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelCauseFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel(nil)
	return err
}

// countingBody is a request body on the net/http path: it counts bytes,
// bounds each wait for the client by body_read_timeout, pauses the route
// timeout meanwhile, and notes a failure as the client's, so that it is
// answered 400 or 408 rather than blamed on the upstream.
type countingBody struct {
	io.ReadCloser
	bytes   *atomic.Int64 // the request's reqBytes
	fault   *atomic.Int32 // the request's clientFault
	rc      *http.ResponseController
	timeout time.Duration
	timer   *routeTimer // set by RoundTrip when the route has a timeout
	limit   int64       // max_request_body_bytes (0: none)
	// The transport may still read the body after the handler returned
	// (an upstream that answered before the body was sent), when the
	// server is done with the ResponseWriter: its deadline is then no
	// longer set. mu orders Read's deadline against handlerDone.
	mu    sync.Mutex
	ended bool
}

// handlerDone says the handler is returning: from now on Read leaves the
// ResponseWriter alone.
func (c *countingBody) handlerDone() {
	c.mu.Lock()
	c.ended = true
	c.mu.Unlock()
}

// errBodyTooLarge ends a request body read past max_request_body_bytes.
var errBodyTooLarge = errors.New("the request body is larger than max_request_body_bytes")

func (c *countingBody) Read(p []byte) (int, error) {
	if c.timeout > 0 {
		c.mu.Lock()
		if !c.ended {
			c.rc.SetReadDeadline(time.Now().Add(c.timeout))
		}
		c.mu.Unlock()
	}
	if c.timer != nil {
		c.timer.pause()
	}
	n, err := c.ReadCloser.Read(p)
	if c.timer != nil {
		c.timer.resume()
	}
	if total := c.bytes.Add(int64(n)); c.limit > 0 && total > c.limit {
		// A body of no announced length (chunked, HTTP/2) counted past
		// the bound: cut, answered 413.
		c.fault.CompareAndSwap(0, clientBodyTooLarge)
		return 0, errBodyTooLarge
	}
	if err != nil && err != io.EOF {
		kind := clientBodyBroken
		if errors.Is(err, os.ErrDeadlineExceeded) {
			kind = clientBodyTimeout
		}
		c.fault.CompareAndSwap(0, kind)
	}
	return n, err
}

// What clientFault records.
const (
	clientBodyBroken   int32 = 1 + iota // ended early or malformed
	clientBodyTimeout                   // stalled past body_read_timeout
	clientBodyTooLarge                  // longer than max_request_body_bytes
)
