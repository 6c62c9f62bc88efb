package proxy

// TLS glue: where the listener and the fast path's pools meet
// proxy/internal/tlsconf. The material itself (pairs re-read on change,
// configs, failure reasons, client identity) lives there.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/tracehop/tracehop/proxy/config"
	"github.com/tracehop/tracehop/proxy/internal/tlsconf"
)

// headerXFCC is Envoy's x-forwarded-client-cert: who the client's
// verified certificate names, for the upstream to authorize by.
const headerXFCC = "X-Forwarded-Client-Cert"

// connTLS is what a TLS client connection tells about itself, worked out
// once per connection.
type connTLS struct {
	id *tlsconf.Identity // nil without a verified client certificate
}

// handshake runs the server side of a TLS handshake on c, bounded by the
// listener's handshake timeout, so that a client that stalls in it holds
// nothing but its own goroutine for that long. A failure is counted by
// reason and logged at debug level only: the internet is full of scanners.
// A plaintext HTTP request gets net/http's 400 before the close.
func (l *listener) handshake(c net.Conn) (*tls.Conn, *connTLS, bool) {
	tc := tls.Server(c, l.tls)
	if l.handshakeTimeout > 0 {
		c.SetDeadline(time.Now().Add(l.handshakeTimeout))
	}
	if err := tc.Handshake(); err != nil {
		reason := tlsconf.Classify(err)
		l.tlsFailures.WithLabelValues(l.name, reason).Inc()
		l.log.Debug("TLS handshake failed", "listener", l.name, "peer", c.RemoteAddr().String(), "reason", reason, "error", err)
		var rhe tls.RecordHeaderError
		if reason == tlsconf.ReasonPlaintext && errors.As(err, &rhe) && rhe.Conn != nil {
			c.SetDeadline(time.Now().Add(time.Second))
			if _, err := c.Write([]byte(tlsconf.PlaintextAnswer)); err == nil {
				lingerClose(c)
				return nil, nil, false
			}
		}
		c.Close()
		return nil, nil, false
	}
	c.SetDeadline(time.Time{})
	cs := tc.ConnectionState()
	return tc, &connTLS{id: tlsconf.ClientIdentity(&cs)}, true
}

// tlsReplayConn is a TLS connection the fast path hands to net/http after
// reading from it: ConnectionState makes net/http set Request.TLS, as it
// does for a *tls.Conn (X-Forwarded-Proto, the client's identity).
type tlsReplayConn struct {
	replayConn
	tc *tls.Conn
}

func (c *tlsReplayConn) ConnectionState() tls.ConnectionState { return c.tc.ConnectionState() }

// forwardClientXFCC reports whether an x-forwarded-client-cert the client
// sent is passed on (forward_client_cert: forward_only); otherwise it is
// removed, never trusted.
func (l *listener) forwardClientXFCC() bool { return l.xfcc == config.XFCCForwardOnly }

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

// upstreamTLSError is a failed handshake with an upstream: which
// endpoint, which name, why.
type upstreamTLSError struct {
	endpoint, serverName string
	err                  error
}

func (e *upstreamTLSError) Error() string {
	if why := tlsconf.VerifyReason(e.err); why != "" {
		return fmt.Sprintf("the certificate of %s (server name %q) failed verification: %s", e.endpoint, e.serverName, why)
	}
	return fmt.Sprintf("the TLS handshake with %s (server name %q) failed: %v", e.endpoint, e.serverName, e.err)
}

func (e *upstreamTLSError) Unwrap() error { return e.err }

// dialTLS connects to the pool's endpoint and runs the client handshake,
// both within connect_timeout. It returns the TLS connection and the TCP
// connection under it (whose descriptor the idle check peeks at: a TLS
// record that arrives unasked, a close_notify or anything else, is bytes
// nobody asked for, as in plaintext).
func (p *connPool) dialTLS(ctx context.Context, d *net.Dialer) (net.Conn, error) {
	tc, _, err := p.dialTLSRaw(ctx, d)
	if err != nil {
		return nil, err
	}
	return tc, nil
}

func (p *connPool) dialTLSRaw(ctx context.Context, d *net.Dialer) (*tls.Conn, net.Conn, error) {
	ut := p.tls
	deadline := time.Now().Add(ut.timeout)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	raw, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, nil, err
	}
	tc := tls.Client(raw, ut.config)
	raw.SetDeadline(deadline)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		terr := &upstreamTLSError{endpoint: p.addr, serverName: ut.config.ServerName, err: err}
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

// CertificateInfo describes one certificate a config uses, for tracehop
// validate. Nothing of a key is in it.
type CertificateInfo struct {
	Key      string // the config key naming the file, e.g. listeners[0].tls.cert_file
	File     string
	Subject  string
	Names    []string
	NotAfter time.Time
	// Warning is set for a certificate that expired or expires within
	// ExpiryWarning.
	Warning string
}

// ExpiryWarning is how close to its expiry a certificate gets a warning.
const ExpiryWarning = 30 * 24 * time.Hour

// Certificates reads every certificate cfg names (a pair's leaf; every CA
// in a CA file) and says when each expires. config.Load has checked that
// the files load and the pairs match.
func Certificates(cfg *config.Config, now time.Time) ([]CertificateInfo, error) {
	var out []CertificateInfo
	var errs []error
	add := func(key, file string, all bool) {
		certs, err := tlsconf.ReadCertificates(file)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
			return
		}
		if !all {
			certs = certs[:1]
		}
		for _, c := range certs {
			ci := CertificateInfo{Key: key, File: file, Subject: c.Subject.String(), Names: tlsconf.Names(c), NotAfter: c.NotAfter}
			switch left := c.NotAfter.Sub(now); {
			case left <= 0:
				ci.Warning = fmt.Sprintf("expired on %s", c.NotAfter.UTC().Format(time.DateOnly))
			case left <= ExpiryWarning:
				ci.Warning = fmt.Sprintf("expires on %s, in %d days", c.NotAfter.UTC().Format(time.DateOnly), int(left.Hours()/24))
			}
			out = append(out, ci)
		}
	}
	for i, l := range cfg.Listeners {
		if l.TLS == nil {
			continue
		}
		key := fmt.Sprintf("listeners[%d].tls", i)
		if l.TLS.CertFile != "" {
			add(key+".cert_file", l.TLS.CertFile, false)
		}
		for j, p := range l.TLS.Certificates {
			add(fmt.Sprintf("%s.certificates[%d].cert_file", key, j), p.CertFile, false)
		}
		if l.TLS.ClientCAFile != "" {
			add(key+".client_ca_file", l.TLS.ClientCAFile, true)
		}
	}
	for i, c := range cfg.Clusters {
		if c.TLS == nil {
			continue
		}
		key := fmt.Sprintf("clusters[%d].tls", i)
		if c.TLS.CertFile != "" {
			add(key+".cert_file", c.TLS.CertFile, false)
		}
		if c.TLS.CAFile != "" {
			add(key+".ca_file", c.TLS.CAFile, true)
		}
	}
	return out, errors.Join(errs...)
}
