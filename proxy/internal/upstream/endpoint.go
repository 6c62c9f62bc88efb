package upstream

import (
	"net/netip"
	"net/url"
	"time"
)

// Endpoint is one address of a cluster. The fast path borrows its pooled
// connections (Get, Put); net/http reaches it through the cluster's
// Transport, at URL.
type Endpoint struct {
	url  *url.URL
	addr string         // host:port, for the upstream_address tag
	ip   netip.AddrPort // for the span's remote endpoint, when literal
	pool *connPool      // the fast path's idle connections (and the TLS dialer)
}

// URL is where net/http's requests to the endpoint go (http or https).
func (e *Endpoint) URL() *url.URL { return e.url }

// Addr is the endpoint's host:port as the config wrote it, for logs and
// the upstream_address tag.
func (e *Endpoint) Addr() string { return e.addr }

// AddrPort is the endpoint's address when the config wrote it as an IP
// and a port, for the span's remote endpoint; otherwise it is not valid.
func (e *Endpoint) AddrPort() netip.AddrPort { return e.ip }

// Get lends a connection to the endpoint for one request: the most
// recently used idle one that is still fit for it (see connPool.get), else
// a new one. The borrower gives it back with Put, or closes it.
func (e *Endpoint) Get() (*Conn, error) { return e.pool.get() }

// Dial opens a new connection for one request, bypassing the idle ones:
// for another try after a kept-alive connection turned out closed.
func (e *Endpoint) Dial() (*Conn, error) { return e.pool.dial() }

// Put gives back a connection whose response was read to its end and
// that may serve another request. It is kept only if nothing more came
// after the response, and closed if the pool is full or closed.
func (e *Endpoint) Put(uc *Conn) { e.pool.put(uc) }

// DropIdleSince closes the idle connections that went back to the pool
// at t (on deadline.Mono's clock) or before: one of that age turned out
// closed by the upstream (an idle timeout, a restart), and the ones older
// than it went through the same.
func (e *Endpoint) DropIdleSince(t time.Duration) { e.pool.dropIdleSince(t) }
