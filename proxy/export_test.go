package proxy

import (
	"net/http/httptest"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// SlowPathOnly makes every listener of s hand each request to net/http
// after the fast path's first checks (as a connection it hands off is
// served), so that tests can run the same cases through both paths. Call
// it before Start.
func SlowPathOnly(s *Server) {
	s.slowPathOnly = true
	for _, l := range s.snap.Load().frontends {
		l.slowPathOnly = true
	}
}

// HandedOff returns how many connections the listener named name has
// handed from the fast path to net/http: tests check by it which path
// served them.
func HandedOff(s *Server, name string) int64 {
	for _, l := range s.snap.Load().frontends {
		if l.name == name && l.handoff != nil {
			return l.handoff.given.Load()
		}
	}
	return -1
}

// Metrics returns the server's metrics in the text format /metrics serves.
func Metrics(s *Server) string {
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(s.Gatherer(), promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

// AfterIdleRead makes f run on a TLS connection's goroutine right after
// its idle wait read, before the connection marks itself busy (nil: no
// hook), so that a test can land an eviction in that window.
func AfterIdleRead(f func()) { setHook(&afterIdleRead, f) }

// WhileEvicting makes f run on the evicting goroutine after a connection
// is marked as being evicted and before its read deadline is set (nil: no
// hook), so that a test can let the connection run ahead of its evictor.
func WhileEvicting(f func()) { setHook(&whileEvicting, f) }

// setHook sets a test hook, or clears it when f is nil.
func setHook(h *atomic.Pointer[func()], f func()) {
	if f == nil {
		h.Store(nil)
		return
	}
	h.Store(&f)
}

// EvictIdle closes up to n idle connections of the listener named name,
// as a new connection over its limit does, and returns how many it
// closed.
func EvictIdle(s *Server, name string, n int) int {
	for _, l := range s.peers() {
		if l.name == name {
			return l.evictIdle(n)
		}
	}
	return 0
}
