package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tracehop/tracehop/sdk/drivertest"
)

// otlpjsDriver is the JavaScript reference driver's executable, once its
// dependencies are installed (make js-deps: npm ci).
func otlpjsDriver(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not installed: the JavaScript reference driver cannot run here")
	}
	dir, err := filepath.Abs("../../drivers/otlpjs")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@grpc", "grpc-js")); err != nil {
		t.Fatalf("drivers/otlpjs has no node_modules: run make js-deps (npm ci) first: %v", err)
	}
	return filepath.Join(dir, "tracehop-driver-otlpjs")
}

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// `tracehop driver check` passes the drivers that pass the kit, a driver
// in JavaScript and a shipped Go one, and fails a driver with a bug the
// kit catches, saying what is wrong, with exit status 1.
func TestDriverCheck(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole kit on three drivers; run without -short")
	}
	bin := t.TempDir()
	for name, pkg := range map[string]string{
		"otlp":   "github.com/tracehop/tracehop/cmd/tracehop-driver-otlp",
		"mutant": "github.com/tracehop/tracehop/sdk/drivertest/internal/mutant/cmd/tracehop-driver-mutant",
	} {
		if err := drivertest.BuildDriver(pkg, filepath.Join(bin, "tracehop-driver-"+name)); err != nil {
			t.Fatal(err)
		}
	}
	mutant := func(bug string) string {
		return writeFile(t, "mutant.json", `{"config": {"endpoint": "{{endpoint}}", "bug": "`+bug+`"},
			"invalid": [{"name": "no endpoint", "config": {}, "key": "endpoint"}]}`)
	}
	cases := []struct {
		name string
		args func(t *testing.T) []string
		code int
		out  []string
	}{
		{"javascript", func(t *testing.T) []string { return []string{"-backend", "otlp-http", otlpjsDriver(t)} }, exitOK,
			[]string{`(driver "otlpjs")`, "PASS  CanonicalTrace", "PASS  Failures/throttled", "14 passed, 0 failed, 0 skipped",
				"transport: shm (the driver took the span ring"}},
		{"go otlp", func(t *testing.T) []string {
			return []string{"-backend", "otlp-http", "-config", writeFile(t, "otlp.json",
				`{"config": {"endpoint": "{{endpoint}}", "protocol": "http/protobuf", "attribute_names": "both"}}`), filepath.Join(bin, "tracehop-driver-otlp")}
		}, exitOK, []string{"14 passed, 0 failed", "transport: shm"}},
		{"go otlp grpc", func(t *testing.T) []string {
			return []string{"-backend", "otlp-grpc", "-burst", "2000", "-config", writeFile(t, "otlp.json",
				`{"config": {"endpoint": "{{endpoint}}", "tls": {"insecure": true}, "attribute_names": "both"}}`), filepath.Join(bin, "tracehop-driver-otlp")}
		}, exitOK, []string{"14 passed, 0 failed"}},
		{"mutant without a bug", func(t *testing.T) []string {
			return []string{"-backend", "zipkin", "-burst", "5000", "-config", mutant(""), filepath.Join(bin, "tracehop-driver-mutant")}
		}, exitOK, []string{`(driver "mutant")`, "14 passed, 0 failed"}},
		{"mutant byte order", func(t *testing.T) []string {
			return []string{"-backend", "zipkin", "-burst", "600", "-config", mutant("byteorder"), filepath.Join(bin, "tracehop-driver-mutant")}
		}, exitFailure, []string{"FAIL  CanonicalTrace", "want 0af7651916cd43dd8448eb211c80319c", "check the byte order of your ids", "PASS  Burst"}},
		{"mutant throttle", func(t *testing.T) []string {
			return []string{"-backend", "zipkin", "-burst", "600", "-config", mutant("throttle"), filepath.Join(bin, "tracehop-driver-mutant")}
		}, exitFailure, []string{"FAIL  Failures/throttled", "marked sdk.Permanent", "PASS  Failures/refusing", "1 failed"}},
		{"not there", func(t *testing.T) []string { return []string{filepath.Join(bin, "tracehop-driver-none")} }, exitFailure,
			[]string{"FAIL  Target", "no such file"}},
		{"no endpoint", func(t *testing.T) []string {
			return []string{"-config", writeFile(t, "c.json", `{"config": {"endpoint": "http://x"}}`), filepath.Join(bin, "tracehop-driver-otlp")}
		}, exitInvalid, []string{`no "{{endpoint}}"`}},
		{"unknown backend", func(t *testing.T) []string { return []string{"-backend", "webhook", "x"} }, exitUsage, []string{`"webhook" is not one of otlp-grpc, otlp-http, zipkin`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"driver", "check"}, tc.args(t)...), &stdout, &stderr)
			out := stdout.String() + stderr.String()
			if code != tc.code {
				t.Fatalf("exit status %d, want %d:\n%s", code, tc.code, out)
			}
			for _, want := range tc.out {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
		})
	}
}
