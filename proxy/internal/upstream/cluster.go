package upstream

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/tracehop/tracehop/proxy/config"
	"github.com/tracehop/tracehop/proxy/internal/tlsconf"
)

// Cluster is a set of upstream endpoints reached through one pooled
// transport, picked round robin. Its config never changes: a reload that
// changes it builds another cluster, and one that does not keeps this one
// with its pooled connections.
type Cluster struct {
	cfg       config.Cluster // a reload keeps the cluster when this is unchanged
	name      string
	endpoints []Endpoint
	next      atomic.Uint64
	transport *http.Transport // for requests net/http serves
	h2        bool            // h2c or h2: net/http serves every request
}

// NewCluster builds the cluster c describes; log takes the failures of
// TLS handshakes with its endpoints. It fails only when c's TLS material
// does not load.
func NewCluster(c config.Cluster, log *slog.Logger) (*Cluster, error) {
	cl := &Cluster{cfg: c, name: c.Name}
	dialer := &net.Dialer{Timeout: c.ConnectTimeout, KeepAlive: 30 * time.Second}
	for _, ep := range c.Endpoints {
		e := Endpoint{url: &url.URL{Scheme: "http", Host: ep}, addr: ep, pool: &connPool{addr: ep, log: log, dialer: dialer, maxIdle: 256, idleTimeout: upstreamIdleTimeout}}
		e.ip, _ = netip.ParseAddrPort(ep)
		if c.TLS != nil {
			tc, err := tlsconf.ClientConfig(c.TLS, c.Protocol, ep, log)
			if err != nil {
				return nil, fmt.Errorf("cluster %q: %w", c.Name, err)
			}
			e.url.Scheme = "https"
			e.pool.tls = &upstreamTLS{config: tc, cluster: c.Name, timeout: c.ConnectTimeout}
		}
		cl.endpoints = append(cl.endpoints, e)
	}
	t := &http.Transport{
		DialContext:           dialer.DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		// The proxy passes bodies through as they are.
		DisableCompression: true,
		// Bounds a response head and the 1xx heads before it together
		// (net/http counts both); the fast path bounds each head at 16
		// KiB (its read buffer), and at most 5 1xx.
		MaxResponseHeaderBytes: maxResponseHeaderBytes,
	}
	switch c.Protocol {
	case config.H2C:
		cl.h2 = true
		p := new(http.Protocols)
		p.SetUnencryptedHTTP2(true)
		t.Protocols = p
	case config.H2:
		cl.h2 = true
		p := new(http.Protocols)
		p.SetHTTP2(true)
		t.Protocols = p
	}
	if c.TLS != nil {
		// net/http dials through the fast path's pools' TLS dialer: one
		// handshake, one way of logging a failed verification.
		byAddr := map[string]*connPool{}
		for i := range cl.endpoints {
			byAddr[cl.endpoints[i].addr] = cl.endpoints[i].pool
		}
		t.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			p := byAddr[addr]
			if p == nil {
				return nil, fmt.Errorf("no endpoint %s in cluster %q", addr, c.Name)
			}
			return p.dialTLS(ctx)
		}
	}
	cl.transport = t
	return cl, nil
}

// maxResponseHeaderBytes bounds the response heads net/http reads from an
// upstream, 1xx heads included.
const maxResponseHeaderBytes = 64 << 10

// Close closes the cluster's idle connections, and, on the fast path's
// pools, those given back to them later (net/http's Transport closes only
// what is idle now; what it gets back later closes after its 90 s idle
// timeout): a reload removed or replaced it, or tracehop is stopping.
func (c *Cluster) Close() {
	c.transport.CloseIdleConnections()
	for i := range c.endpoints {
		c.endpoints[i].pool.closeIdle()
	}
}

// Pick chooses the endpoint for a request, round robin.
func (c *Cluster) Pick() *Endpoint {
	n := c.next.Add(1) - 1
	return &c.endpoints[n%uint64(len(c.endpoints))]
}

// Name is the cluster's name in the config, for tags, metric labels and
// answers that blame it.
func (c *Cluster) Name() string { return c.name }

// Config is what the cluster was built from: a reload keeps the cluster
// when the new config's is the same.
func (c *Cluster) Config() config.Cluster { return c.cfg }

// Transport carries the requests net/http serves (the fast path's go
// through the endpoints' pools). Its connections are the cluster's own.
func (c *Cluster) Transport() *http.Transport { return c.transport }

// HTTP2 reports whether the cluster speaks HTTP/2 (h2c or h2): net/http
// then serves every request to it, since the fast path speaks HTTP/1.1
// only.
func (c *Cluster) HTTP2() bool { return c.h2 }
