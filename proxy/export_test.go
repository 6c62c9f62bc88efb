package proxy

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
