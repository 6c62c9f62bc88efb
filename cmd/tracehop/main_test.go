package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tracehop/tracehop/sdk/drivertest"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tracehop.yaml")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestValidateAndDrivers(t *testing.T) {
	bin := t.TempDir()
	if err := drivertest.BuildDriver("github.com/tracehop/tracehop/cmd/tracehop-driver-file", filepath.Join(bin, "tracehop-driver-file")); err != nil {
		t.Fatal(err)
	}
	spans := filepath.Join(t.TempDir(), "spans.jsonl")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	busy := ln.Addr().String()
	cases := []struct {
		name   string
		args   func(cfg string) []string
		config string
		code   int
		out    []string
	}{
		{"valid", nil, "admin: {address: \"127.0.0.1:0\"}\ntracing:\n  plugin_dir: " + bin + "\n  driver: {name: file, config: {path: " + spans + "}}\n", exitOK,
			[]string{"config is valid", "driver file: ok", "reads tracecontext; 128-bit trace ids; keeps 1µs; spans over shm"}},
		{"no tracing", nil, "admin: {address: \"127.0.0.1:0\"}\n", exitOK, []string{"proxy without tracing"}},
		{"sampling per route", nil, "node: {service: shop}\nadmin: {address: \"127.0.0.1:0\"}\nlisteners:\n  - name: in\n    address: \"127.0.0.1:0\"\n    direction: ingress\n    routes:\n" +
			"      - {name: cart, match: {prefix: /cart, method: POST}, cluster: up, tracing: {sampling: {random: 1}}}\n" +
			"      - {match: {path: /healthz}, cluster: up, tracing: {enabled: false}}\n" +
			"      - {match: {prefix: /}, cluster: up}\n" +
			"clusters:\n  - {name: up, endpoints: [\"127.0.0.1:1\"]}\n" +
			"tracing:\n  plugin_dir: " + bin + "\n  driver: {name: file, config: {path: " + spans + "}}\n  propagation: [tracecontext]\n" +
			"  sampling: {random: 10, max_traces_per_second: 50, remote: {url: \"http://127.0.0.1:1/api/sampling\"}}\n", exitOK,
			[]string{"sampling: tracing.sampling is random 10%, client 100%, overall 100%, at most 50 new traces/s; decisions on W3C randomness",
				"  LISTENER  ROUTE   RULE           RANDOM  CLIENT  OVERALL  MAX/S  REMOTE\n",
				"  in        cart    cart           1%      100%    100%     50     operation ingress or cart, else its own rule stays\n",
				"  in        route1  (tracing off)  -       -       -        -      -\n",
				"  in        route2  default        10%     100%    100%     50     operation ingress or route2, else the strategy's default\n",
				"sampling.remote: http://127.0.0.1:1/api/sampling?service=shop every 1m0s; until its first answer",
				"tail sampling in a Collector tier"}},
		{"address in use", nil, "admin: {address: " + busy + "}\n", exitFailure, []string{`listener "admin": cannot listen on ` + busy}},
		{"invalid config", nil, "tracing:\n  drivr: {name: file}\n", exitInvalid, []string{`tracing.drivr: unknown key (did you mean "driver"?`}},
		{"driver rejects", nil, "tracing:\n  plugin_dir: " + bin + "\n  driver:\n    name: file\n    config:\n      pth: x\n      formt: json\n", exitInvalid,
			[]string{`tracehop.yaml:7: tracing.driver.config.formt: unknown key (valid keys: path) (driver "file")`,
				`tracehop.yaml:6: tracing.driver.config.pth: unknown key (did you mean "path"? valid keys: path) (driver "file")`}},
		{"driver missing", nil, "tracing:\n  plugin_dir: " + bin + "\n  driver: {name: nosuch}\n", exitInvalid,
			[]string{"tracehop-driver-nosuch, which is in none of these places", "tracing.plugin_dir: " + filepath.Join(bin, "tracehop-driver-nosuch")}},
		{"no -c", func(string) []string { return []string{"validate"} }, "", exitUsage, []string{"-c FILE is required"}},
		{"drivers", func(cfg string) []string { return []string{"drivers", "-c", cfg} }, "tracing:\n  plugin_dir: " + bin + "\n  driver: {name: file}\n", exitOK,
			[]string{"NAME  VERSION  PROTOCOL  PATH", "file  dev      1         " + filepath.Join(bin, "tracehop-driver-file") + "  tracing.plugin_dir"}},
		{"version with drivers", func(cfg string) []string { return []string{"version", "-drivers", "-c", cfg} }, "tracing:\n  plugin_dir: " + bin + "\n  driver: {name: file}\n", exitOK,
			[]string{"tracehop dev\n", "driver protocol: 1\n", "go:              go1.", "file  dev      1         " + filepath.Join(bin, "tracehop-driver-file")}},
		{"unknown command", func(string) []string { return []string{"serve"} }, "", exitUsage, []string{`unknown command "serve"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := writeConfig(t, c.config)
			args := []string{"validate", "-c", cfg}
			if c.args != nil {
				args = c.args(cfg)
			}
			var stdout, stderr bytes.Buffer
			code := run(args, &stdout, &stderr)
			all := stdout.String() + stderr.String()
			if code != c.code {
				t.Fatalf("exit code %d, want %d; output:\n%s", code, c.code, all)
			}
			for _, want := range c.out {
				if !strings.Contains(all, want) {
					t.Errorf("output lacks %q:\n%s", want, all)
				}
			}
		})
	}
}
