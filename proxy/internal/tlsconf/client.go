package tlsconf

import (
	"crypto/tls"
	"log/slog"
	"net"

	"github.com/tracehop/tracehop/proxy/config"
)

// ClientConfig builds the tls.Config tracehop dials one endpoint of a
// cluster with: verification against ca_file (else the system's roots),
// SNI and the verified name from server_name (else the endpoint's host),
// a client certificate re-read when its files change, ALPN for the
// cluster's protocol, and a session cache of its own, so that a new
// connection to the endpoint resumes rather than handshakes in full.
func ClientConfig(c *config.ClusterTLS, protocol, endpoint string, log *slog.Logger) (*tls.Config, error) {
	tc := &tls.Config{
		MinVersion:         config.TLSVersion(c.MinVersion),
		ServerName:         c.ServerName,
		InsecureSkipVerify: c.InsecureSkipVerify,
		ClientSessionCache: tls.NewLRUClientSessionCache(64),
	}
	if tc.ServerName == "" {
		host, _, err := net.SplitHostPort(endpoint)
		if err != nil {
			host = endpoint
		}
		tc.ServerName = host
	}
	if protocol == config.H2 {
		tc.NextProtos = []string{"h2"}
	} else {
		tc.NextProtos = []string{"http/1.1"}
	}
	if c.CAFile != "" {
		pool, err := loadPool(c.CAFile)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" {
		p, err := LoadPair(c.CertFile, c.KeyFile, log)
		if err != nil {
			return nil, err
		}
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return p.Certificate(), nil
		}
	}
	return tc, nil
}
