package app_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tracehop/tracehop/internal/app"
	"github.com/tracehop/tracehop/proxy/config"
)

// Keys a driver declares secret are redacted whatever their names; the
// name patterns and headers still apply to drivers that declare nothing.
func TestRedactedConfigHidesDeclaredSecrets(t *testing.T) {
	cfg := parseConfig(t, `listeners:
  - {name: l, address: "127.0.0.1:0", direction: ingress, routes: [{cluster: up}]}
clusters:
  - {name: up, endpoints: ["127.0.0.1:1"]}
tracing:
  drivers:
    - {name: a, config: {endpoint: "http://x", dsn: "postgres://u:hunter2@db", account: {license: "LIC-123", user: bob}}}
    - {name: b, config: {api_key: "k-456", headers: {x-token: "t-789"}}}
`)
	raw, _ := json.Marshal(app.RedactedConfig(cfg, []string{"dsn", "account.license"}, nil))
	out := string(raw)
	for _, secret := range []string{"hunter2", "LIC-123", "k-456", "t-789"} {
		if strings.Contains(out, secret) {
			t.Errorf("%q shows in /config: %s", secret, out)
		}
	}
	for _, kept := range []string{"http://x", "bob"} {
		if !strings.Contains(out, kept) {
			t.Errorf("%q was redacted too: %s", kept, out)
		}
	}
}

func parseConfig(t *testing.T, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
