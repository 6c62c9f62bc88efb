package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/tracehop/tracehop/core/wire"
	"github.com/tracehop/tracehop/sdk/drivertest"
	"github.com/tracehop/tracehop/sdk/drivertest/otlpreceiver"
	"github.com/tracehop/tracehop/sdk/drivertest/zipkinreceiver"
)

// endpointPlaceholder is replaced, in every string of a check config's
// "config", by the address of the reference receiver of the check.
const endpointPlaceholder = "{{endpoint}}"

// checkConfig is the file of `tracehop driver check -config`: the driver's
// config with {{endpoint}} where the receiver's address goes, and the
// configs it must refuse.
type checkConfig struct {
	Config  map[string]any             `json:"config"`
	Invalid []drivertest.InvalidConfig `json:"invalid"`
}

// checkBackends are the back ends of `tracehop driver check -backend`: the
// kit's reference receivers, each with a default config that points the
// shipped driver of its protocol at it (what {{endpoint}} becomes is said
// in docs/writing-a-driver.md).
var checkBackends = map[string]struct {
	about    string
	defaults string
	start    func(t drivertest.T, config func(endpoint string) map[string]any) drivertest.Backend
}{
	"otlp-http": {
		about:    "OTLP/HTTP with protobuf bodies; {{endpoint}} is the traces URL (http://127.0.0.1:PORT/v1/traces)",
		defaults: `{"config": {"endpoint": "{{endpoint}}", "protocol": "http/protobuf"}}`,
		start: func(t drivertest.T, config func(string) map[string]any) drivertest.Backend {
			return otlpreceiver.Start(t, nil).Backend(t, "http/protobuf", config)
		},
	},
	"otlp-grpc": {
		about:    "OTLP/gRPC in plaintext; {{endpoint}} is host:port (127.0.0.1:PORT)",
		defaults: `{"config": {"endpoint": "{{endpoint}}", "protocol": "grpc", "tls": {"insecure": true}}}`,
		start: func(t drivertest.T, config func(string) map[string]any) drivertest.Backend {
			return otlpreceiver.Start(t, nil).Backend(t, "grpc", config)
		},
	},
	"zipkin": {
		about:    "Zipkin v2 JSON or protobuf; {{endpoint}} is the spans URL (http://127.0.0.1:PORT/api/v2/spans)",
		defaults: `{"config": {"collector_endpoint": "{{endpoint}}"}}`,
		start: func(t drivertest.T, config func(string) map[string]any) drivertest.Backend {
			r := zipkinreceiver.Start(t)
			return r.Backend(config(r.Endpoint()))
		},
	},
}

// defaultInvalid is the config every driver must refuse when the check
// config lists none: the protocol says a driver decodes its config
// strictly.
var defaultInvalid = []drivertest.InvalidConfig{{
	Name: "unknown key", Config: map[string]any{"tracehop_check_no_such_key": true}, Key: "tracehop_check_no_such_key",
}}

func cmdDriver(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprintln(stderr, "tracehop driver: the only subcommand is 'check': tracehop driver check -h")
		return exitUsage
	}
	return cmdDriverCheck(args[1:], stdout, stderr)
}

func cmdDriverCheck(args []string, stdout, stderr io.Writer) int {
	var names []string
	for n := range checkBackends {
		names = append(names, n)
	}
	slices.Sort(names)
	fs := newFlagSet("driver check", "driver check [-backend "+strings.Join(names, "|")+"] [-config FILE] [-name NAME] [-burst N] [-v] PATH", stderr)
	backend := fs.String("backend", "otlp-http", "the reference receiver the driver reports to: "+strings.Join(names, ", "))
	configFile := fs.String("config", "", `a JSON file {"config": {...}, "invalid": [{"name", "config", "key"}]}: the driver's config with "{{endpoint}}" where the receiver's address goes, and configs it must refuse naming "key" (default: the backend's config for tracehop's own driver, and an unknown key)`)
	name := fs.String("name", "", "the driver's name (default: the file's name without tracehop-driver-)")
	burst := fs.Int("burst", drivertest.DefaultBurstSpans, "spans in the burst check")
	verbose := fs.Bool("v", false, "print every check's log, the driver's included")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: tracehop driver check [flags] PATH\n\n"+
			"Runs the conformance kit (sdk/drivertest) on the driver executable PATH, in any language,\n"+
			"through tracehop's own host, against a reference receiver; exit status 0 when every check passes.\n\nBack ends:\n")
		for _, n := range names {
			fmt.Fprintf(stderr, "  %-10s %s\n             default -config: %s\n", n, checkBackends[n].about, checkBackends[n].defaults)
		}
		fmt.Fprintf(stderr, "\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "tracehop driver check: give one driver executable")
		fs.Usage()
		return exitUsage
	}
	b, ok := checkBackends[*backend]
	if !ok {
		fmt.Fprintf(stderr, "tracehop driver check: -backend: %q is not one of %s\n", *backend, strings.Join(names, ", "))
		return exitUsage
	}
	raw := []byte(b.defaults)
	source := "-backend " + *backend + "'s default"
	if *configFile != "" {
		var err error
		if raw, err = os.ReadFile(*configFile); err != nil {
			fmt.Fprintf(stderr, "tracehop driver check: -config: %v\n", err)
			return exitUsage
		}
		source = *configFile
	}
	cc, err := parseCheckConfig(raw)
	if err != nil {
		fmt.Fprintf(stderr, "tracehop driver check: %s: %v\n", source, err)
		return exitInvalid
	}
	path := fs.Arg(0)
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	if *name == "" {
		*name = strings.TrimPrefix(filepath.Base(path), wire.BinaryPrefix)
	}
	var logger *slog.Logger
	if *verbose {
		logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	fmt.Fprintf(stdout, "tracehop driver check: %s (driver %q) against the reference %s receiver, config from %s\n", path, *name, *backend, source)
	report := drivertest.Check(drivertest.Target{
		Name: *name, Path: path, Invalid: cc.Invalid, BurstSpans: *burst, Logger: logger,
		Backend: func(t drivertest.T) drivertest.Backend {
			return b.start(t, func(endpoint string) map[string]any { return withEndpoint(cc.Config, endpoint) })
		},
	})
	report.Write(stdout, *verbose)
	if !report.OK() {
		return exitFailure
	}
	return exitOK
}

// parseCheckConfig reads a check config strictly, and gives it the default
// invalid configs when it lists none.
func parseCheckConfig(raw []byte) (checkConfig, error) {
	var cc checkConfig
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cc); err != nil {
		return cc, fmt.Errorf("want a JSON object {\"config\": {...}, \"invalid\": [...]}: %w", err)
	}
	if cc.Config == nil {
		return cc, errors.New(`"config": missing: give the driver's config, with "{{endpoint}}" where the receiver's address goes`)
	}
	if !strings.Contains(fmt.Sprint(cc.Config), endpointPlaceholder) {
		return cc, errors.New(`"config": no "{{endpoint}}" in any value: the driver would not report to the receiver`)
	}
	for i, ic := range cc.Invalid {
		if ic.Name == "" || ic.Key == "" {
			return cc, fmt.Errorf(`"invalid"[%d]: give "name", "config" and "key" (the key the driver's refusal must name)`, i)
		}
	}
	if len(cc.Invalid) == 0 {
		cc.Invalid = defaultInvalid
	}
	return cc, nil
}

// withEndpoint is a deep copy of v with {{endpoint}} replaced in every string.
func withEndpoint(v map[string]any, endpoint string) map[string]any {
	var walk func(any) any
	walk = func(v any) any {
		switch x := v.(type) {
		case string:
			return strings.ReplaceAll(x, endpointPlaceholder, endpoint)
		case map[string]any:
			out := make(map[string]any, len(x))
			for k, e := range x {
				out[k] = walk(e)
			}
			return out
		case []any:
			out := make([]any, len(x))
			for i, e := range x {
				out[i] = walk(e)
			}
			return out
		}
		return v
	}
	return walk(v).(map[string]any)
}
