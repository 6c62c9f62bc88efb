package tlsconf

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"strings"
)

// Identity is who a verified client certificate names.
type Identity struct {
	// Subject is the certificate's subject (RFC 2253 form).
	Subject string
	// Name is what a span tag shows: the first URI SAN (a SPIFFE id in a
	// mesh), else the first DNS SAN, else the subject.
	Name string
	// XFCC is the identity as Envoy's x-forwarded-client-cert element:
	// Hash=...;Subject="...";URI=...;DNS=...
	XFCC string
}

// ClientIdentity returns the identity of the client certificate a
// handshake verified, or nil: none was sent, or it was not verified
// (client_auth: request without a CA), and an unverified certificate
// names nobody.
func ClientIdentity(cs *tls.ConnectionState) *Identity {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.PeerCertificates) == 0 {
		return nil
	}
	return identityOf(cs.PeerCertificates[0])
}

func identityOf(c *x509.Certificate) *Identity {
	id := &Identity{Subject: c.Subject.String()}
	sum := sha256.Sum256(c.Raw)
	var b strings.Builder
	b.WriteString("Hash=")
	b.WriteString(hex.EncodeToString(sum[:]))
	b.WriteString(`;Subject="`)
	b.WriteString(xfccEscape(id.Subject))
	b.WriteByte('"')
	for _, u := range c.URIs {
		b.WriteString(";URI=")
		b.WriteString(xfccValue(u.String()))
		if id.Name == "" {
			id.Name = u.String()
		}
	}
	for _, d := range c.DNSNames {
		b.WriteString(";DNS=")
		b.WriteString(xfccValue(d))
		if id.Name == "" {
			id.Name = d
		}
	}
	if id.Name == "" {
		id.Name = id.Subject
	}
	id.XFCC = b.String()
	return id
}

// xfccEscape escapes a quoted XFCC value: a backslash and a double quote
// are backslash-escaped.
func xfccEscape(s string) string {
	if !strings.ContainsAny(s, `"\`) {
		return s
	}
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s)
}

// xfccValue quotes a value that holds one of XFCC's separators.
func xfccValue(s string) string {
	if strings.ContainsAny(s, `,;="\`) {
		return `"` + xfccEscape(s) + `"`
	}
	return s
}
