package tlsconf

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"time"

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
		MinVersion:   config.TLSVersion(c.MinVersion),
		NextProtos:   slices.Clone(c.ALPN),
		CipherSuites: config.CipherSuiteIDs(c.CipherSuites),
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			return pick(pairs, hello.ServerName), nil
		},
		SessionTicketsDisabled: !c.Tickets(),
	}
	if c.Tickets() && c.SessionTicketLifetime > 0 {
		boundTicketAge(tc, c.SessionTicketLifetime)
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

// boundTicketAge makes tc refuse session tickets older than lifetime: a
// ticket carries when it was issued (in SessionState.Extra, which
// crypto/tls keeps for such uses), and an older one is no resumption, a
// full handshake instead. Go's own bound (7 days) and key rotation stay.
func boundTicketAge(tc *tls.Config, lifetime time.Duration) {
	tc.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
		ss.Extra = append(ss.Extra, binary.BigEndian.AppendUint64(append([]byte(nil), ticketIssued...), uint64(time.Now().Unix())))
		return tc.EncryptTicket(cs, ss)
	}
	tc.UnwrapSession = func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
		ss, err := tc.DecryptTicket(identity, cs)
		if err != nil || ss == nil {
			return nil, err
		}
		for _, e := range ss.Extra {
			if at, ok := bytes.CutPrefix(e, ticketIssued); ok && len(at) == 8 {
				if time.Since(time.Unix(int64(binary.BigEndian.Uint64(at)), 0)) <= lifetime {
					return ss, nil
				}
			}
		}
		return nil, nil // too old, or issued before the bound: a full handshake
	}
}

// ticketIssued marks the Extra entry that says when a ticket was issued.
var ticketIssued = []byte("tracehop-issued:")

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
