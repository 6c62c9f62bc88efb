package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tracehop/tracehop/internal/tlstest"
)

// tracehop validate prints every certificate with its subject, names and
// days to expiry, warns about one that expires soon and about
// insecure_skip_verify, and names file, line and key for a missing file.
func TestValidateTLS(t *testing.T) {
	dir := t.TempDir()
	ca, err := tlstest.NewCA("validate CA")
	if err != nil {
		t.Fatal(err)
	}
	caFile, _ := ca.WriteCA(dir, "ca")
	crt, key, _ := ca.WritePair(dir, "edge", tlstest.Localhost("edge"))
	soon, soonKey, _ := ca.WritePair(dir, "soon", tlstest.Leaf{CommonName: "soon", DNS: []string{"soon.test"}, NotAfter: time.Now().Add(10*24*time.Hour + time.Hour)})
	cfg := fmt.Sprintf(`admin: {address: "127.0.0.1:0"}
listeners:
  - name: edge
    address: "127.0.0.1:0"
    direction: ingress
    routes: [{cluster: app}]
    tls: {cert_file: %s, key_file: %s, client_ca_file: %s}
clusters:
  - name: app
    endpoints: [127.0.0.1:8080]
    tls: {cert_file: %s, key_file: %s, insecure_skip_verify: true}
`, crt, key, caFile, soon, soonKey)
	file := filepath.Join(dir, "tracehop.yaml")
	os.WriteFile(file, []byte(cfg), 0o644)
	var stdout, stderr bytes.Buffer
	code := run([]string{"validate", "-c", file}, &stdout, &stderr)
	out := stdout.String() + stderr.String()
	if code != exitOK {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	soonDate := time.Now().Add(10*24*time.Hour + time.Hour).UTC().Format(time.DateOnly)
	for _, want := range []string{
		"listeners[0].tls.cert_file: " + crt + ": CN=edge,O=tracehop test; names localhost, 127.0.0.1; expires ",
		"listeners[0].tls.client_ca_file: " + caFile + ": CN=validate CA,O=tracehop test; names validate CA;",
		"clusters[0].tls.cert_file: " + soon + ": CN=soon,O=tracehop test; names soon.test; expires " + soonDate + " (10 days)",
		"warning: clusters[0].tls.cert_file: " + soon + ": the certificate expires on " + soonDate + ", in 10 days",
		"warning: " + file + ":11: clusters[0].tls.insecure_skip_verify: the upstream's certificate is not verified",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "PRIVATE KEY") {
		t.Errorf("key material in the output:\n%s", out)
	}

	os.Remove(key)
	stdout.Reset()
	stderr.Reset()
	if code := run([]string{"validate", "-c", file}, &stdout, &stderr); code != exitInvalid ||
		!strings.Contains(stderr.String(), file+":7: listeners[0].tls.key_file: cannot read the key: open "+key+": no such file or directory") {
		t.Errorf("a missing key: exit %d:\n%s%s", code, stdout.String(), stderr.String())
	}
}
