package proxy

// TLS glue: where the listener meets proxy/internal/tlsconf. The material
// itself (pairs re-read on change, configs, failure reasons, client
// identity) lives there; TLS to upstreams is proxy/internal/upstream's.

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/tracehop/tracehop/proxy/config"
	"github.com/tracehop/tracehop/proxy/internal/tlsconf"
)

// handshake runs the server side of a TLS handshake on c, bounded by the
// listener's handshake timeout, so that a client that stalls in it holds
// nothing but its own goroutine for that long. A failure is counted by
// reason and logged at debug level only: the internet is full of scanners.
// A plaintext HTTP request gets net/http's 400 before the close.
func (l *frontend) handshake(c net.Conn) (*tls.Conn, *connTLS, bool) {
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
