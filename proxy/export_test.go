package proxy

import (
	"net/http/httptest"
	"strings"
)

// SlowPathOnly makes every listener of s hand each request to net/http
// after the fast path's first checks (as a connection it hands off is
// served), so that tests can run the same cases through both paths. Call
// it before Start.
func SlowPathOnly(s *Server) {
	s.slowPathOnly = true
	for _, l := range s.snap.Load().listeners {
		l.slowPathOnly = true
	}
}

// HandedOff returns how many connections the listener named name has
// handed from the fast path to net/http: tests check by it which path
// served them.
func HandedOff(s *Server, name string) int64 {
	for _, l := range s.snap.Load().listeners {
		if l.name == name && l.handoff != nil {
			return l.handoff.given.Load()
		}
	}
	return -1
}

// Metrics returns the server's /metrics text.
func Metrics(s *Server) string {
	var b strings.Builder
	h := s.adminHandler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b.WriteString(rec.Body.String())
	return b.String()
}
