package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tracehop/tracehop/internal/tlstest"
	"github.com/tracehop/tracehop/proxy/config"
)

// TestTLSConfig loads a listener and a cluster with TLS from certificates
// made now: defaults, relative paths, a pair that does not match, and the
// warning for insecure_skip_verify.
func TestTLSConfig(t *testing.T) {
	dir := t.TempDir()
	ca, err := tlstest.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ca.WritePair(dir, "a", tlstest.Localhost("a")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ca.WritePair(dir, "b", tlstest.Localhost("b")); err != nil {
		t.Fatal(err)
	}
	ca.WriteCA(dir, "ca")
	good := `listeners:
  - name: edge
    address: 127.0.0.1:0
    direction: ingress
    routes: [{cluster: app}]
    tls: {cert_file: a.crt, key_file: a.key, client_ca_file: ca.crt}
clusters:
  - name: app
    endpoints: [127.0.0.1:8080]
    protocol: h2
    tls:
      ca_file: ca.crt
      insecure_skip_verify: true
`
	file := filepath.Join(dir, "tracehop.yaml")
	os.WriteFile(file, []byte(good), 0o644)
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	lt := cfg.Listeners[0].TLS
	if lt.CertFile != filepath.Join(dir, "a.crt") || lt.ClientAuth != config.ClientAuthRequire || lt.MinVersion != "1.2" ||
		strings.Join(lt.ALPN, ",") != "h2,http/1.1" || lt.HandshakeTimeout != 10*time.Second || lt.ForwardClientCert != config.XFCCSanitize {
		t.Errorf("listener tls defaults: %+v", lt)
	}
	if len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0].String(), "tracehop.yaml:13: clusters[0].tls.insecure_skip_verify: the upstream's certificate is not verified") {
		t.Errorf("warnings = %v", cfg.Warnings)
	}

	mismatched := strings.Replace(good, "key_file: a.key", "key_file: b.key", 1)
	os.WriteFile(file, []byte(mismatched), 0o644)
	_, err = config.Load(file)
	if err == nil || !strings.Contains(err.Error(), "tracehop.yaml:6: listeners[0].tls.key_file: a.crt and b.key are not a certificate and its key: private key does not match public key") {
		t.Errorf("a mismatched pair: %v", err)
	}
}
