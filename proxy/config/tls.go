package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// ListenerTLS makes a listener HTTPS.
type ListenerTLS struct {
	// CertFile and KeyFile are a PEM certificate (its chain after it) and
	// its private key. Certificates lists more pairs, chosen by the
	// client's SNI; the first pair (CertFile's, else Certificates[0]) is
	// the default for a name no certificate holds. Files are read again
	// when they change (checked at most once a second, on a handshake):
	// new handshakes get the new pair, a bad new pair is logged and the
	// old one kept.
	CertFile     string     `yaml:"cert_file"`
	KeyFile      string     `yaml:"key_file"`
	Certificates []CertPair `yaml:"certificates"`
	// ClientCAFile verifies client certificates (mutual TLS); ClientAuth
	// says whether one is required (require, the default when a CA is
	// set) or verified only when the client sends one (request).
	ClientCAFile string `yaml:"client_ca_file"`
	ClientAuth   string `yaml:"client_auth"`
	// MinVersion is 1.2 (default) or 1.3.
	MinVersion string `yaml:"min_version"`
	// ALPN lists the protocols offered, by preference: h2 and http/1.1
	// (the default, both).
	ALPN []string `yaml:"alpn"`
	// HandshakeTimeout (default 10s) bounds a client's handshake: a
	// client that stalls in it is cut off.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	// ForwardClientCert says what happens to the x-forwarded-client-cert
	// header (Envoy's XFCC): sanitize (default) removes what the client
	// sent and adds nothing; sanitize_set removes it and sets the verified
	// client certificate's identity; forward_only passes the client's on
	// unchanged (behind a trusted proxy that sets it).
	ForwardClientCert string `yaml:"forward_client_cert"`
	// CipherSuites lists the TLS 1.2 cipher suites offered, by Go's names
	// (tls.CipherSuiteName, such as TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256);
	// default: Go's secure list, which still has CBC suites. TLS 1.3's
	// suites are not configurable in Go: all three are always on.
	CipherSuites []string `yaml:"cipher_suites"`
	// SessionTickets (default true) lets a client resume a session
	// without a full handshake. Go rotates the ticket keys daily and
	// keeps each for 7 days; SessionTicketLifetime refuses tickets older
	// than it (default 0: Go's 7 days). The lifetime a client is told
	// stays Go's 7 days (its constant): an older ticket gets a full
	// handshake instead.
	SessionTickets        *bool         `yaml:"session_tickets"`
	SessionTicketLifetime time.Duration `yaml:"session_ticket_lifetime"`
}

// Tickets reports whether session tickets are on.
func (t *ListenerTLS) Tickets() bool { return t.SessionTickets == nil || *t.SessionTickets }

// CipherSuiteIDs maps cipher_suites to crypto/tls's ids (nil: Go's
// default). The names were validated.
func CipherSuiteIDs(names []string) []uint16 {
	var ids []uint16
	for _, n := range names {
		for _, cs := range tls.CipherSuites() {
			if cs.Name == n {
				ids = append(ids, cs.ID)
			}
		}
	}
	return ids
}

// tls12Suites are the names cipher_suites accepts: Go's secure suites for
// TLS 1.2.
func tls12Suites() []string {
	var names []string
	for _, cs := range tls.CipherSuites() {
		if slices.Contains(cs.SupportedVersions, tls.VersionTLS12) {
			names = append(names, cs.Name)
		}
	}
	return names
}

// validateCipherSuites checks cipher_suites against Go's names.
func validateCipherSuites(key string, names []string, minVersion string, d *decoder, bad badFunc) {
	valid := tls12Suites()
	for i, n := range names {
		k := fmt.Sprintf("%s[%d]", key, i)
		switch {
		case slices.Contains(valid, n):
			if slices.Index(names, n) != i {
				bad(k, "%s is listed twice", n)
			}
			continue
		case slices.ContainsFunc(tls.CipherSuites(), func(cs *tls.CipherSuite) bool { return cs.Name == n }):
			bad(k, "%s is a TLS 1.3 suite: Go always offers all three and they cannot be chosen; list TLS 1.2 suites only (valid: %s)", n, strings.Join(valid, ", "))
		case slices.ContainsFunc(tls.InsecureCipherSuites(), func(cs *tls.CipherSuite) bool { return cs.Name == n }):
			bad(k, "%s is insecure (Go lists it in tls.InsecureCipherSuites) and is not offered; valid: %s", n, strings.Join(valid, ", "))
		default:
			bad(k, "unknown cipher suite %q; valid (Go's names for TLS 1.2): %s", n, strings.Join(valid, ", "))
		}
	}
	if len(names) > 0 && minVersion == "1.3" {
		d.warnf(d.lineOf(key), key, "has no effect with min_version 1.3: TLS 1.3's suites are not configurable")
	}
}

// CertPair is a certificate and its key, PEM files.
type CertPair struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Pairs returns the listener's certificate pairs, the default first.
func (t *ListenerTLS) Pairs() []CertPair {
	var ps []CertPair
	if t.CertFile != "" || t.KeyFile != "" {
		ps = append(ps, CertPair{t.CertFile, t.KeyFile})
	}
	return append(ps, t.Certificates...)
}

// ClusterTLS makes tracehop dial a cluster's endpoints over TLS.
type ClusterTLS struct {
	// CAFile verifies the upstream's certificate; without it, the
	// system's roots do.
	CAFile string `yaml:"ca_file"`
	// ServerName is sent as SNI and verified against the certificate;
	// by default, the endpoint's host.
	ServerName string `yaml:"server_name"`
	// CertFile and KeyFile are tracehop's client certificate, for mutual
	// TLS; re-read when they change, like a listener's.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// InsecureSkipVerify turns verification off: for tests only; tracehop
	// warns at start and in validate.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
	// MinVersion is 1.2 (default) or 1.3.
	MinVersion string `yaml:"min_version"`
}

// What ClientAuth may say.
const (
	ClientAuthRequest = "request"
	ClientAuthRequire = "require"
)

// What ForwardClientCert may say.
const (
	XFCCSanitize    = "sanitize"
	XFCCSanitizeSet = "sanitize_set"
	XFCCForwardOnly = "forward_only"
)

// Protocols a listener may offer by ALPN.
const (
	ALPNH2    = "h2"
	ALPNHTTP1 = "http/1.1"
)

// DefaultHandshakeTimeout bounds a TLS handshake on a listener.
const DefaultHandshakeTimeout = 10 * time.Second

// TLSVersion maps min_version to crypto/tls's constant.
func TLSVersion(v string) uint16 {
	if v == "1.3" {
		return tls.VersionTLS13
	}
	return tls.VersionTLS12
}

func resolve(dir string, p *string) {
	if *p != "" && !filepath.IsAbs(*p) {
		*p = filepath.Join(dir, *p)
	}
}

func (t *ListenerTLS) applyDefaults(dir string) {
	resolve(dir, &t.CertFile)
	resolve(dir, &t.KeyFile)
	resolve(dir, &t.ClientCAFile)
	for i := range t.Certificates {
		resolve(dir, &t.Certificates[i].CertFile)
		resolve(dir, &t.Certificates[i].KeyFile)
	}
	if t.MinVersion == "" {
		t.MinVersion = "1.2"
	}
	if t.ALPN == nil {
		t.ALPN = []string{ALPNH2, ALPNHTTP1}
	}
	if t.HandshakeTimeout == 0 {
		t.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if t.ClientAuth == "" && t.ClientCAFile != "" {
		t.ClientAuth = ClientAuthRequire
	}
	if t.ForwardClientCert == "" {
		t.ForwardClientCert = XFCCSanitize
	}
}

func (t *ClusterTLS) applyDefaults(dir string) {
	resolve(dir, &t.CAFile)
	resolve(dir, &t.CertFile)
	resolve(dir, &t.KeyFile)
	if t.MinVersion == "" {
		t.MinVersion = "1.2"
	}
}

type badFunc = func(key, format string, args ...any)

func validateMinVersion(key, v string, bad badFunc) {
	if v != "1.2" && v != "1.3" {
		bad(key, "must be 1.2 or 1.3, got %q", v)
	}
}

// validatePair checks that both files of a pair are given, readable, and
// a certificate with its key. Key contents never reach a message.
func validatePair(key string, p CertPair, bad badFunc) {
	switch {
	case p.CertFile == "" && p.KeyFile == "":
		return
	case p.CertFile == "":
		bad(key+".cert_file", "is required with key_file")
		return
	case p.KeyFile == "":
		bad(key+".key_file", "is required with cert_file")
		return
	}
	certPEM, err := os.ReadFile(p.CertFile)
	if err != nil {
		bad(key+".cert_file", "cannot read the certificate: %v", err)
	}
	keyPEM, kerr := os.ReadFile(p.KeyFile)
	if kerr != nil {
		bad(key+".key_file", "cannot read the key: %v", kerr)
	}
	if err != nil || kerr != nil {
		return
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		bad(key+".key_file", "%s and %s are not a certificate and its key: %s", filepath.Base(p.CertFile), filepath.Base(p.KeyFile),
			strings.TrimPrefix(err.Error(), "tls: "))
	}
}

func validateCA(key, file string, bad badFunc) {
	raw, err := os.ReadFile(file)
	if err != nil {
		bad(key, "cannot read the CA certificates: %v", err)
		return
	}
	if !x509.NewCertPool().AppendCertsFromPEM(raw) {
		bad(key, "%s holds no PEM certificate", filepath.Base(file))
	}
}

func (t *ListenerTLS) validate(key string, d *decoder, bad badFunc) {
	if t.CertFile == "" && t.KeyFile == "" && len(t.Certificates) == 0 {
		bad(key, "needs a certificate: cert_file and key_file, or a certificates list")
	}
	validatePair(key, CertPair{t.CertFile, t.KeyFile}, bad)
	for i, p := range t.Certificates {
		k := fmt.Sprintf("%s.certificates[%d]", key, i)
		if p.CertFile == "" && p.KeyFile == "" {
			bad(k, "needs cert_file and key_file")
		}
		validatePair(k, p, bad)
	}
	switch t.ClientAuth {
	case "":
	case ClientAuthRequest, ClientAuthRequire:
		if t.ClientAuth == ClientAuthRequire && t.ClientCAFile == "" {
			bad(key+".client_auth", "require needs client_ca_file, the CA that client certificates must chain to")
		}
	default:
		bad(key+".client_auth", "must be request or require, got %q", t.ClientAuth)
	}
	if t.ClientCAFile != "" {
		validateCA(key+".client_ca_file", t.ClientCAFile, bad)
	}
	validateMinVersion(key+".min_version", t.MinVersion, bad)
	if len(t.ALPN) == 0 {
		bad(key+".alpn", "needs at least one of h2, http/1.1 (leave it out for both)")
	}
	for i, p := range t.ALPN {
		if p != ALPNH2 && p != ALPNHTTP1 {
			bad(fmt.Sprintf("%s.alpn[%d]", key, i), "must be h2 or http/1.1, got %q", p)
		} else if slices.Index(t.ALPN, p) != i {
			bad(fmt.Sprintf("%s.alpn[%d]", key, i), "%s is listed twice", p)
		}
	}
	if t.HandshakeTimeout < 0 {
		bad(key+".handshake_timeout", "must not be negative")
	}
	switch t.ForwardClientCert {
	case XFCCSanitize, XFCCSanitizeSet, XFCCForwardOnly:
	default:
		bad(key+".forward_client_cert", "must be sanitize, sanitize_set or forward_only, got %q", t.ForwardClientCert)
	}
	validateCipherSuites(key+".cipher_suites", t.CipherSuites, t.MinVersion, d, bad)
	if t.SessionTicketLifetime < 0 {
		bad(key+".session_ticket_lifetime", "must not be negative (0: Go's 7 days)")
	}
}

func (t *ClusterTLS) validate(key string, d *decoder, bad badFunc) {
	validatePair(key, CertPair{t.CertFile, t.KeyFile}, bad)
	if t.CAFile != "" {
		validateCA(key+".ca_file", t.CAFile, bad)
	}
	validateMinVersion(key+".min_version", t.MinVersion, bad)
	if t.InsecureSkipVerify {
		d.warnf(d.lineOf(key+".insecure_skip_verify"), key+".insecure_skip_verify",
			"the upstream's certificate is not verified: anyone on the path can read and change this traffic")
	}
}
