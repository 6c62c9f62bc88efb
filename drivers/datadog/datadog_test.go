package datadog_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tracehop/tracehop/core/driverhost"
	"github.com/tracehop/tracehop/drivers/datadog"
	"github.com/tracehop/tracehop/sdk"
	"github.com/tracehop/tracehop/sdk/drivertest"
	"github.com/tracehop/tracehop/sdk/drivertest/datadogreceiver"
)

func receiver(t testing.TB) *datadogreceiver.Receiver {
	r, err := datadogreceiver.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// dd-trace-go's tracer is one per process: the in-process checks run one
// driver at a time, which the kit does.
func TestConformance(t *testing.T) {
	var last *datadogreceiver.Receiver
	drivertest.Run(t, drivertest.Suite{
		Name:        "datadog",
		New:         func() sdk.Driver { return datadog.New() },
		MainPackage: "github.com/tracehop/tracehop/cmd/tracehop-driver-datadog",
		Backend: func(t *testing.T) drivertest.Backend {
			r := receiver(t)
			last = r
			g := drivertest.NewGate(t, r.Addr)
			return drivertest.Backend{
				Config: map[string]any{"agent_addr": g.Addr(), "timeout": "20s"}, Received: r.Spans, TraceIDs: r.TraceIDs,
				AnswerLate: g.AnswerLate,
				Fail: func(f drivertest.Failure) func() {
					return g.Fail(f, func(f drivertest.Failure) func() {
						switch f {
						case drivertest.FailRefuse:
							return r.FailAll(http.StatusBadRequest)
						case drivertest.FailThrottled:
							return r.FailAll(http.StatusTooManyRequests)
						}
						return r.FailAll(http.StatusServiceUnavailable)
					})
				},
			}
		},
		Invalid: []drivertest.InvalidConfig{
			{Name: "agent_addr", Config: map[string]any{"agent_addr": "nohostport"}, Key: "agent_addr"},
			{Name: "timeout", Config: map[string]any{"timeout": "-1s"}, Key: "timeout"},
			{Name: "unknown", Config: map[string]any{"api_key": "x"}, Key: "api_key"},
		},
	})
	if last != nil && len(last.Other()) > 0 {
		t.Errorf("the tracer sent traffic nobody asked for: %v", last.Other())
	}
}

// Datadog's own view: naming, priority, the error bool and _dd.p.tid.
func TestDatadogShape(t *testing.T) {
	r := receiver(t)
	d := datadog.New()
	raw, _ := json.Marshal(map[string]any{"agent_addr": r.Addr, "env": "test", "version": "1.2.3", "tags": map[string]string{"team": "edge"}})
	if _, err := d.Configure(context.Background(), raw, sdk.HostInfo{}); err != nil {
		t.Fatal(err)
	}
	spans := drivertest.CanonicalTrace(time.Now())
	// A proxy span whose tags say error=false must not become an error.
	spans[0].Tags = append(spans[0].Tags, sdk.Tag{Key: "error", Value: "false"})
	if err := d.Export(context.Background(), spans); err != nil {
		t.Fatal(err)
	}
	d.Shutdown(context.Background())
	got := r.Raw()
	if len(got) != len(spans) {
		t.Fatalf("%d spans arrived, want %d", len(got), len(spans))
	}
	for _, s := range got {
		if s.Meta["_dd.p.tid"] != "0af7651916cd43dd" {
			t.Errorf("span %d: _dd.p.tid %q", s.SpanID, s.Meta["_dd.p.tid"])
		}
		if p := s.Metrics["_sampling_priority_v1"]; p != 2 {
			t.Errorf("span %d: priority %v, want 2 (user keep)", s.SpanID, p)
		}
		if s.Meta["env"] != "test" || s.Meta["version"] != "1.2.3" || s.Meta["team"] != "edge" {
			t.Errorf("span %d: env/version/tags %q %q %q", s.SpanID, s.Meta["env"], s.Meta["version"], s.Meta["team"])
		}
		switch s.SpanID {
		case uint64(spans[0].SpanID):
			if s.Error != 0 || s.Name != "http.request" || s.Resource != "GET ingress" || s.Type != "web" || s.Meta["span.kind"] != "server" {
				t.Errorf("front-proxy span: error %d name %q resource %q type %q kind %q", s.Error, s.Name, s.Resource, s.Type, s.Meta["span.kind"])
			}
		case uint64(spans[2].SpanID):
			if s.Error != 1 {
				t.Errorf("the error span arrived with error=%d", s.Error)
			}
		}
	}
}

// The library drops spans beyond its queue of 1000 chunks; a burst far
// beyond it must still arrive whole (the kit's burst sends 512 at a time:
// here 10,000 in one Export).
func TestBurstInOneExport(t *testing.T) {
	r := receiver(t)
	d := datadog.New()
	raw, _ := json.Marshal(map[string]any{"agent_addr": r.Addr, "timeout": "30s"})
	if _, err := d.Configure(context.Background(), raw, sdk.HostInfo{}); err != nil {
		t.Fatal(err)
	}
	defer d.Shutdown(context.Background())
	if err := d.Export(context.Background(), drivertest.Spans(1, 10000)); err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]bool{}
	for _, s := range r.Raw() {
		seen[s.SpanID] = true
	}
	if len(seen) != 10000 {
		t.Fatalf("%d of 10000 spans arrived", len(seen))
	}
}

func TestAgentRefusesThenRecovers(t *testing.T) {
	r := receiver(t)
	d := datadog.New()
	raw, _ := json.Marshal(map[string]any{"agent_addr": r.Addr, "timeout": "5s"})
	if _, err := d.Configure(context.Background(), raw, sdk.HostInfo{}); err != nil {
		t.Fatal(err)
	}
	defer d.Shutdown(context.Background())
	r.FailNext(100)
	err := d.Export(context.Background(), drivertest.Spans(1, 5))
	if err == nil || sdk.IsPermanent(err) || !strings.Contains(err.Error(), "503") {
		t.Fatalf("err = %v, want a retryable error naming the 503", err)
	}
	r.FailNext(0)
	if err := d.Export(context.Background(), drivertest.Spans(1, 5)); err != nil {
		t.Fatalf("after the agent recovered: %v", err)
	}
}

// The telemetry and remote-config switches must be in the driver process's
// environment from its start, whatever tracehop's config passed.
func TestProcessEnvironment(t *testing.T) {
	r := receiver(t)
	bin := t.TempDir() + "/tracehop-driver-datadog"
	if err := drivertest.BuildDriver("github.com/tracehop/tracehop/cmd/tracehop-driver-datadog", bin); err != nil {
		t.Fatal(err)
	}
	cfg, _ := json.Marshal(map[string]any{"agent_addr": r.Addr})
	drv, err := driverhost.Start(context.Background(), driverhost.Spec{
		Name: "datadog", Path: bin, Config: cfg,
		Env: map[string]string{"DD_INSTRUMENTATION_TELEMETRY_ENABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"},
	}, driverhost.Options{Logger: drivertest.TestLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer drv.Shutdown(context.Background())
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", drv.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	env := "\x00" + string(environ)
	for _, want := range []string{"DD_INSTRUMENTATION_TELEMETRY_ENABLED=false", "DD_REMOTE_CONFIGURATION_ENABLED=false", "DD_TRACE_AGENT_PROTOCOL_VERSION=0.4"} {
		if !strings.Contains(env, "\x00"+want+"\x00") {
			t.Errorf("the driver process runs without %s", want)
		}
	}
	if strings.Contains(env, "OTEL_TRACES_EXPORTER") {
		t.Errorf("OTEL_TRACES_EXPORTER reached the driver")
	}
	if err := drv.Export(context.Background(), drivertest.Spans(1, 3)); err != nil {
		t.Fatal(err)
	}
	if len(r.Other()) > 0 {
		t.Errorf("unasked-for traffic: %v", r.Other())
	}
}

// attribute_names: otel sends OpenTelemetry's names, which Datadog maps for
// OTLP data, and keeps the span a web request named by its method.
func TestAttributeNames(t *testing.T) {
	r := receiver(t)
	d := datadog.New()
	raw, _ := json.Marshal(map[string]any{"agent_addr": r.Addr, "attribute_names": "otel"})
	if _, err := d.Configure(context.Background(), raw, sdk.HostInfo{}); err != nil {
		t.Fatal(err)
	}
	spans := drivertest.CanonicalTrace(time.Now())
	if err := d.Export(context.Background(), spans); err != nil {
		t.Fatal(err)
	}
	d.Shutdown(context.Background())
	if _, ok := spans[0].Tag("http.method"); !ok {
		t.Fatalf("Export changed the caller's span: %+v", spans[0])
	}
	got := r.Raw()
	if len(got) != len(spans) {
		t.Fatalf("%d spans arrived, want %d", len(got), len(spans))
	}
	for _, s := range got {
		if s.SpanID != uint64(spans[0].SpanID) {
			continue
		}
		if s.Meta["http.request.method"] != "GET" || s.Meta["http.method"] != "" {
			t.Errorf("meta %v: want http.request.method and no http.method", s.Meta)
		}
		if s.Name != "http.request" || s.Resource != "GET" || s.Type != "web" {
			t.Errorf("name %q resource %q type %q, want http.request, GET, web", s.Name, s.Resource, s.Type)
		}
	}
	raw, _ = json.Marshal(map[string]any{"agent_addr": r.Addr, "attribute_names": "semconv"})
	if _, err := datadog.New().Configure(context.Background(), raw, sdk.HostInfo{}); err == nil || !strings.Contains(err.Error(), "attribute_names") {
		t.Fatalf("err = %v", err)
	}
}

// TestMain gives the in-process checks the environment the driver's
// process has (sdk.Serve sets ProcessEnv before the library starts):
// without it, dd-trace-go's remote configuration and telemetry would poll
// the test agent in the background.
func TestMain(m *testing.M) {
	for k, v := range datadog.New().ProcessEnv() {
		os.Setenv(k, v)
	}
	os.Exit(m.Run())
}
