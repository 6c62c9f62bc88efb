package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tracehop/tracehop/internal/tlstest"
)

// A Pair reads its files again when they change; a new pair that does not
// load is refused and the old one kept, until a good one comes.
func TestPairReload(t *testing.T) {
	old := CheckEvery
	CheckEvery = 0
	t.Cleanup(func() { CheckEvery = old })
	dir := t.TempDir()
	ca, _ := tlstest.NewCA("ca")
	crt, key, err := ca.WritePair(dir, "p", tlstest.Localhost("first"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := LoadPair(crt, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	cn := func() string { return p.Certificate().Leaf.Subject.CommonName }
	if cn() != "first" {
		t.Fatalf("cn %s", cn())
	}
	// Half a rotation: a new certificate beside the old key.
	certPEM, _, _ := ca.Issue(tlstest.Localhost("second"))
	os.WriteFile(crt, certPEM, 0o600)
	touch(t, crt)
	if cn() != "first" {
		t.Errorf("a certificate without its key replaced the pair: %s", cn())
	}
	if _, _, err := ca.WritePair(dir, "p", tlstest.Localhost("third")); err != nil {
		t.Fatal(err)
	}
	touch(t, crt)
	if cn() != "third" {
		t.Errorf("after a whole rotation: %s", cn())
	}
}

// touch moves a file's time ahead, so that a rewrite within the file
// system's time resolution still shows.
func touch(t *testing.T, f string) {
	now := time.Now().Add(time.Duration(time.Now().UnixNano()%1000) * time.Millisecond)
	if err := os.Chtimes(f, now, now); err != nil {
		t.Fatal(err)
	}
}

func TestSNIPick(t *testing.T) {
	dir := t.TempDir()
	ca, _ := tlstest.NewCA("ca")
	var pairs []*Pair
	for _, n := range []string{"a", "b"} {
		crt, key, _ := ca.WritePair(dir, n, tlstest.Leaf{CommonName: n, DNS: []string{n + ".test", "*." + n + ".test"}})
		p, err := LoadPair(crt, key, nil)
		if err != nil {
			t.Fatal(err)
		}
		pairs = append(pairs, p)
	}
	for name, want := range map[string]string{"a.test": "a", "b.test": "b", "x.b.test": "b", "": "a", "other.test": "a"} {
		if got := pick(pairs, name).Leaf.Subject.CommonName; got != want {
			t.Errorf("SNI %q: %s, want %s", name, got, want)
		}
	}
}

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{tls.RecordHeaderError{RecordHeader: [5]byte{'G', 'E', 'T', ' ', '/'}}, ReasonPlaintext},
		{tls.RecordHeaderError{RecordHeader: [5]byte{'S', 'S', 'H', '-', '2'}}, ReasonNotTLS},
		{fmt.Errorf("read: %w", os.ErrDeadlineExceeded), ReasonTimeout},
		{&tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, ReasonUnknownCA},
		{&tls.CertificateVerificationError{Err: x509.CertificateInvalidError{Reason: x509.Expired}}, ReasonBadClientCert},
		{errors.New("tls: client didn't provide a certificate"), ReasonNoClientCert},
		{errors.New("tls: client offered only unsupported versions: [301]"), ReasonProtocolVersion},
		{errors.New(`tls: client requested unsupported application protocols (["h3"])`), ReasonNoALPN},
		{&net.OpError{Op: "remote error", Err: errors.New("tls: bad certificate")}, ReasonRejected},
		{&net.OpError{Op: "read", Err: os.ErrClosed}, ReasonOther},
		{fmt.Errorf("x: %w", net.ErrClosed), ReasonClosed},
	} {
		if got := Classify(c.err); got != c.want {
			t.Errorf("Classify(%v) = %s, want %s", c.err, got, c.want)
		}
	}
}

// XFCC quotes the subject and escapes its backslashes and quotes (the
// RFC 2253 form has its own), and quotes a URI with a separator in it.
func TestXFCC(t *testing.T) {
	u, _ := url.Parse("spiffe://mesh/ns/a;b")
	c := &x509.Certificate{Raw: []byte("der"), URIs: []*url.URL{u}, DNSNames: []string{"svc"}}
	c.Subject.CommonName = `odd "name"`
	id := identityOf(c)
	if !strings.HasPrefix(id.XFCC, "Hash=") || !strings.Contains(id.XFCC, `;Subject="CN=odd \\\"name\\\""`) ||
		!strings.Contains(id.XFCC, `;URI="spiffe://mesh/ns/a;b";DNS=svc`) || id.Name != "spiffe://mesh/ns/a;b" {
		t.Errorf("XFCC %s, name %s", id.XFCC, id.Name)
	}
	if ClientIdentity(&tls.ConnectionState{PeerCertificates: []*x509.Certificate{c}}) != nil {
		t.Error("an unverified certificate has an identity")
	}
}

func TestReadCertificates(t *testing.T) {
	dir := t.TempDir()
	ca, _ := tlstest.NewCA("ca")
	crt, _, _ := ca.WritePair(dir, "p", tlstest.Localhost("x"))
	certs, err := ReadCertificates(crt)
	if err != nil || len(certs) != 1 || strings.Join(Names(certs[0]), ",") != "localhost,127.0.0.1" {
		t.Errorf("%v %v", certs, err)
	}
	if _, err := ReadCertificates(filepath.Join(dir, "p.key")); err == nil {
		t.Error("a key file read as certificates")
	}
}
