package upstream

// TLS to upstreams: the client side of a cluster's tls block. The
// configs themselves come from proxy/internal/tlsconf.

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/tracehop/tracehop/proxy/internal/tlsconf"
)

// upstreamTLS is how a pool dials its endpoint over TLS.
type upstreamTLS struct {
	config  *tls.Config
	cluster string
	timeout time.Duration // connect_timeout: the connect and the handshake
	// lastWarn (Unix ns) spaces the warnings of failed handshakes: one per
	// endpoint every tlsWarnEvery, the rest at debug level.
	lastWarn atomic.Int64
}

const tlsWarnEvery = 10 * time.Second

// TLSError is a failed handshake with an upstream: which endpoint, which
// name, why. The data plane tells it from other failures (errors.As) to
// answer it apart: the upstream is there but is not who it should be, or
// does not speak TLS, and another try would fail alike.
type TLSError struct {
	endpoint, serverName string
	err                  error
}

// Error names the endpoint and the server name checked, and says why in
// words an operator can act on (tlsconf.VerifyReason).
func (e *TLSError) Error() string {
	if why := tlsconf.VerifyReason(e.err); why != "" {
		return fmt.Sprintf("the certificate of %s (server name %q) failed verification: %s", e.endpoint, e.serverName, why)
	}
	return fmt.Sprintf("the TLS handshake with %s (server name %q) failed: %v", e.endpoint, e.serverName, e.err)
}

// Unwrap gives the handshake's own error, for errors.Is and errors.As.
func (e *TLSError) Unwrap() error { return e.err }

// dialTLS connects to the pool's endpoint and runs the client handshake,
// both within connect_timeout. It returns the TLS connection and the TCP
// connection under it (whose descriptor the idle check peeks at: a TLS
// record that arrives unasked, a close_notify or anything else, is bytes
// nobody asked for, as in plaintext).
func (p *connPool) dialTLS(ctx context.Context) (net.Conn, error) {
	tc, _, err := p.dialTLSRaw(ctx)
	if err != nil {
		return nil, err
	}
	return tc, nil
}

func (p *connPool) dialTLSRaw(ctx context.Context) (*tls.Conn, net.Conn, error) {
	ut := p.tls
	deadline := time.Now().Add(ut.timeout)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	raw, err := p.dialer.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, nil, err
	}
	tc := tls.Client(raw, ut.config)
	raw.SetDeadline(deadline)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		terr := &TLSError{endpoint: p.addr, serverName: ut.config.ServerName, err: err}
		if p.log != nil {
			level := slog.LevelDebug
			if now := time.Now().UnixNano(); now-ut.lastWarn.Load() >= int64(tlsWarnEvery) {
				ut.lastWarn.Store(now)
				level = slog.LevelWarn
			}
			p.log.Log(ctx, level, "TLS handshake with an upstream failed", "cluster", ut.cluster, "endpoint", p.addr,
				"server_name", ut.config.ServerName, "error", terr.Error())
		}
		return nil, nil, terr
	}
	raw.SetDeadline(time.Time{})
	return tc, raw, nil
}
