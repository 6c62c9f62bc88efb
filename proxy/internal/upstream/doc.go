// Package upstream is how tracehop reaches a cluster's endpoints: the
// clusters built from the config, their endpoints picked round robin, the
// Transport each cluster's requests on the net/http path go through, and
// the fast path's pools of kept-alive HTTP/1.1 connections, with what it
// takes to fill them (dialing, the client side of TLS, a failed
// handshake's error and its rate-limited warning) and to keep them clean.
//
// It is its own package because the pools have invariants of their own,
// which the data plane must not have to hold in mind: a pooled connection
// is lent again only when it is idle and clean as far as can be seen
// (nothing was left in its buffer when it came back, and, once it has
// been idle long enough for bytes to arrive unseen, a non-blocking peek at
// the socket finds neither bytes nor a close; one back from an answer
// without a body, where a wrong upstream writes one anyway, is parked a
// moment before that), so that no client gets
// another's response and no request is written into a connection the
// upstream closed; connections idle too long are reaped, and a closed
// cluster's are closed as they come back. The data plane only asks an
// endpoint for a connection (Endpoint.Get), writes the request and reads
// the response through it, and gives it back (Endpoint.Put) or closes it.
// A request held whole goes through Conn.Send, which on Linux writes it
// in the read of its answer: the poller is asked once per request, with
// no read before the answer can have come.
//
// It is not the data plane: it writes no request and parses no response
// (the data plane does both, through a Conn), and it does not decide what a
// client is told when an upstream fails (proxy maps errors to statuses,
// with TLSError as one case). It does not load TLS material either:
// proxy/internal/tlsconf builds the client configs it dials with.
package upstream
