package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tracehop/tracehop/proxy/config"
)

// A sampling block sent to the admin API is checked as the file's is:
// every problem at once, keys named from "sampling"; remote and ${VAR}
// are refused there.
func TestParseSampling(t *testing.T) {
	t.Setenv("TRACEHOP_TEST_PCT", "5")
	cases := []struct {
		name, body string
		want       string // the error; "" for none
		random     float64
	}{
		{"json", `{"random": 12.5, "max_traces_per_second": 20}`, "", 12.5},
		{"yaml", "random: 0\n", "", 0},
		{"unknown keys", `{"clinet": 5, "rnadom": 1}`, `PUT /sampling: 2 problems:
  PUT /sampling:1: sampling.clinet: unknown key (did you mean "client"? valid keys here: random, client, overall, max_traces_per_second, remote)
  PUT /sampling:1: sampling.rnadom: unknown key (did you mean "random"? valid keys here: random, client, overall, max_traces_per_second, remote)`, 0},
		{"every problem", `{"random": 150, "overall": 0.001, "max_traces_per_second": 0}`, `PUT /sampling: 3 problems:
  PUT /sampling:1: sampling.random: must be between 0 and 100, got 150
  PUT /sampling:1: sampling.overall: is a percentage in steps of 0.01, got 0.001
  PUT /sampling:1: sampling.max_traces_per_second: must be a number above 0 (unset it for no cap), got 0`, 0},
		{"remote", `{"remote": {"url": "http://elsewhere/"}}`, `PUT /sampling:1: sampling.remote: is set in the config file only: the admin API does not point tracehop at other servers`, 0},
		{"no environment", `{"random": "${TRACEHOP_TEST_PCT}"}`, `PUT /sampling:1: sampling.random: expected a number, got "${TRACEHOP_TEST_PCT}"`, 0},
		{"empty", ``, `PUT /sampling: the body is empty: send the sampling block as JSON, such as {"random": 10}`, 0},
		{"not json", `{"random": `, `PUT /sampling: not valid JSON or YAML: line 1: did not find expected node content`, 0},
		{"not a map", `[1]`, `PUT /sampling:1: sampling: expected a map, got a list`, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := config.ParseSampling("PUT /sampling", []byte(c.body))
			if c.want != "" {
				if err == nil || err.Error() != c.want {
					t.Fatalf("error:\n%v\nwant:\n%s", err, c.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Random == nil || *s.Random != c.random {
				t.Fatalf("random = %v, want %v", s.Random, c.random)
			}
		})
	}
}

// tracing.sampling.remote takes its defaults: a minute between polls, and
// the node's service; a route matches a method.
func TestSamplingConfig(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "tracehop.yaml")
	cfg, err := config.Parse(path, []byte(`node: {id: n1, service: shop}
admin: {address: "0.0.0.0:9901", token_file: token}
listeners:
  - {name: in, address: "127.0.0.1:0", direction: ingress,
     routes: [{match: {prefix: /cart, method: POST}, cluster: up}, {name: rest, cluster: up}]}
clusters:
  - {name: up, endpoints: ["127.0.0.1:1"]}
tracing:
  driver: {name: file}
  sampling: {random: 10, remote: {url: "http://127.0.0.1:5778/api/sampling"}}
`))
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Tracing.Sampling.Remote
	if r.PollInterval != time.Minute || r.Service != "shop" {
		t.Errorf("remote defaults: %+v", r)
	}
	if cfg.Admin.TokenFile != filepath.Join(dir, "token") || len(cfg.Warnings) != 0 {
		t.Errorf("token_file %q (want it beside the config), warnings %v", cfg.Admin.TokenFile, cfg.Warnings)
	}
	routes := cfg.Listeners[0].Routes
	if routes[0].Match.Method != "POST" || routes[0].Label(0) != "route0" || routes[1].Label(1) != "rest" {
		t.Errorf("routes: %+v", routes)
	}
}

// An admin server beyond loopback without a token is allowed, and warned
// about: whoever reaches it can change sampling and reload.
func TestAdminBeyondLoopbackWarns(t *testing.T) {
	for addr, warn := range map[string]bool{"127.0.0.1:9901": false, "[::1]:9901": false, "localhost:9901": false, "0.0.0.0:9901": true, ":9901": true, "10.1.2.3:9901": true} {
		cfg, err := config.Parse("x.yaml", []byte("admin: {address: \""+addr+"\"}\n"))
		if err != nil {
			t.Fatal(err)
		}
		got := len(cfg.Warnings) == 1 && strings.Contains(cfg.Warnings[0].String(), "admin.address: "+addr+" is not loopback and admin.token_file is not set")
		if got != warn || len(cfg.Warnings) > 1 {
			t.Errorf("%s: warnings %v, want a warning: %v", addr, cfg.Warnings, warn)
		}
	}
}
