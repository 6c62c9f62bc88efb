package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tracehop/tracehop/proxy/config"
)

// cluster is a set of upstream endpoints reached through one pooled
// transport, picked round robin.
type cluster struct {
	cfg       config.Cluster // a reload keeps the cluster when this is unchanged
	name      string
	endpoints []endpoint
	next      atomic.Uint64
	transport *http.Transport // for requests net/http serves
	dialer    *net.Dialer     // for the fast path's connections
	h2c       bool
}

type endpoint struct {
	url  *url.URL
	addr string         // host:port, for the upstream_address tag
	ip   netip.AddrPort // for the span's remote endpoint, when literal
	pool *connPool      // the fast path's idle connections
}

func newCluster(c config.Cluster, log *slog.Logger) *cluster {
	cl := &cluster{cfg: c, name: c.Name}
	for _, ep := range c.Endpoints {
		e := endpoint{url: &url.URL{Scheme: "http", Host: ep}, addr: ep, pool: &connPool{addr: ep, log: log, maxIdle: 256, idleTimeout: upstreamIdleTimeout}}
		e.ip, _ = netip.ParseAddrPort(ep)
		cl.endpoints = append(cl.endpoints, e)
	}
	dialer := &net.Dialer{Timeout: c.ConnectTimeout, KeepAlive: 30 * time.Second}
	cl.dialer = dialer
	t := &http.Transport{
		DialContext:           dialer.DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		// The proxy passes bodies through as they are.
		DisableCompression: true,
		// Bounds a response head and the 1xx heads before it together
		// (net/http counts both), near the fast path's 16 KiB head.
		MaxResponseHeaderBytes: maxResponseHeaderBytes,
	}
	if c.Protocol == config.H2C {
		cl.h2c = true
		p := new(http.Protocols)
		p.SetUnencryptedHTTP2(true)
		t.Protocols = p
	}
	cl.transport = t
	return cl
}

// maxResponseHeaderBytes bounds the response heads net/http reads from an
// upstream, 1xx heads included.
const maxResponseHeaderBytes = 64 << 10

// close closes the cluster's idle connections, and those given back to it
// later: a reload removed or replaced it, or tracehop is stopping.
func (c *cluster) close() {
	c.transport.CloseIdleConnections()
	for i := range c.endpoints {
		c.endpoints[i].pool.closeIdle()
	}
}

func (c *cluster) pick() *endpoint {
	n := c.next.Add(1) - 1
	return &c.endpoints[n%uint64(len(c.endpoints))]
}

// errUpstreamTimeout is the cause of a request cancelled by its route
// timeout.
var errUpstreamTimeout = errors.New("upstream did not answer within the route timeout")

// upstreamStatus maps an upstream failure to the status the client gets and
// a short reason: a timeout is 504, a failed connect 503 (Envoy's
// "upstream connect error"), anything else 502.
func upstreamStatus(err error) (int, string) {
	var op *net.OpError
	switch {
	case errors.Is(err, errUpstreamTimeout), errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, "upstream request timeout"
	case errors.Is(err, syscall.ECONNREFUSED), errors.As(err, &op) && op.Op == "dial":
		return http.StatusServiceUnavailable, "upstream connect error"
	}
	return http.StatusBadGateway, "upstream error"
}
