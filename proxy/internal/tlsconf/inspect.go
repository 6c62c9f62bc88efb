package tlsconf

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
)

// ReadCertificates returns every certificate in a PEM file, in order (a
// pair's leaf first, then its chain). Other blocks (a key in the same
// file) are skipped unread.
func ReadCertificates(file string) ([]*x509.Certificate, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		b, raw = pem.Decode(raw)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return certs, nil
}

// Names lists what a certificate is valid for: its DNS names, IP
// addresses and URIs (the common name only when it has none of them:
// verifiers ignore it otherwise).
func Names(c *x509.Certificate) []string {
	var n []string
	n = append(n, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		n = append(n, ip.String())
	}
	for _, u := range c.URIs {
		n = append(n, u.String())
	}
	if len(n) == 0 && c.Subject.CommonName != "" {
		n = append(n, c.Subject.CommonName)
	}
	return n
}
