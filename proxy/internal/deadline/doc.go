// Package deadline keeps a connection's read deadline where it must be
// while touching it as seldom as it can: on a busy keep-alive connection a
// new deadline per request re-arms a runtime timer per request, a cost the
// fast path measures.
//
// It is its own package because both sides of the fast path use it: the
// client's connections (idle, head and body timeouts) in proxy, and the
// upstream connections (the route timeout) in proxy/internal/upstream. It
// does not decide any timeout; the caller passes the one in force.
package deadline
