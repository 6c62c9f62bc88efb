package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"

	"github.com/tracehop/tracehop/proxy/config"
)

// ServerConfig builds a listener's tls.Config. Its certificates are Pairs,
// chosen per handshake (GetCertificate), so a rotated file is picked up
// without a new listener; established connections keep theirs.
func ServerConfig(c *config.ListenerTLS, log *slog.Logger) (*tls.Config, error) {
	var pairs []*Pair
	for _, cp := range c.Pairs() {
		p, err := LoadPair(cp.CertFile, cp.KeyFile, log)
		if err != nil {
			return nil, err
		}
		pairs = append(pairs, p)
	}
	if len(pairs) == 0 {
		return nil, errors.New("no certificate")
	}
	tc := &tls.Config{
		MinVersion: config.TLSVersion(c.MinVersion),
		NextProtos: slices.Clone(c.ALPN),
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			return pick(pairs, hello.ServerName), nil
		},
	}
	if c.ClientCAFile != "" {
		pool, err := loadPool(c.ClientCAFile)
		if err != nil {
			return nil, err
		}
		tc.ClientCAs = pool
	}
	switch {
	case c.ClientAuth == config.ClientAuthRequire:
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	case c.ClientAuth == config.ClientAuthRequest && tc.ClientCAs != nil:
		tc.ClientAuth = tls.VerifyClientCertIfGiven
	case c.ClientAuth == config.ClientAuthRequest:
		// No CA to verify against: the certificate is taken as sent, and
		// its identity is never forwarded (see Identity).
		tc.ClientAuth = tls.RequestClientCert
	}
	return tc, nil
}

// pick returns the certificate for an SNI name: the first whose names
// hold it, else the first (the default, for clients that send no SNI or a
// name tracehop has no certificate for, as nginx's default server does).
func pick(pairs []*Pair, name string) *tls.Certificate {
	if len(pairs) > 1 && name != "" {
		for _, p := range pairs {
			if c := p.Certificate(); c.Leaf != nil && c.Leaf.VerifyHostname(name) == nil {
				return c
			}
		}
	}
	return pairs[0].Certificate()
}

func loadPool(file string) (*x509.CertPool, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(raw) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return pool, nil
}
