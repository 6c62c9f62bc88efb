package lightstep_test

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tracehop/tracehop/drivers/lightstep"
	"github.com/tracehop/tracehop/sdk"
	"github.com/tracehop/tracehop/sdk/drivertest"
	"github.com/tracehop/tracehop/sdk/drivertest/lightstepreceiver"
)

func receiver(t testing.TB) *lightstepreceiver.Receiver {
	r, err := lightstepreceiver.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

func collector(addr string) map[string]any {
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	return map[string]any{"host": host, "port": p, "plaintext": true}
}

func TestConformance(t *testing.T) {
	for _, transport := range []string{"grpc", "http"} {
		t.Run(transport, func(t *testing.T) {
			drivertest.Run(t, drivertest.Suite{
				Name:        "lightstep",
				New:         func() sdk.Driver { return lightstep.New() },
				MainPackage: "github.com/tracehop/tracehop/cmd/tracehop-driver-lightstep",
				Backend: func(t *testing.T) drivertest.Backend {
					r := receiver(t)
					addr := r.GRPCAddr
					if transport == "http" {
						addr = r.HTTPAddr
					}
					g := drivertest.NewGate(t, addr)
					return drivertest.Backend{
						Config:   map[string]any{"access_token": "test-token", "collector": collector(g.Addr()), "transport": transport},
						Received: r.Spans, TraceIDs: r.TraceIDs,
						Fail:       func(f drivertest.Failure) func() { return g.Fail(f, r.Answer) },
						AnswerLate: g.AnswerLate,
					}
				},
				Invalid: []drivertest.InvalidConfig{
					{Name: "no token", Config: map[string]any{"collector": collector("127.0.0.1:1")}, Key: "access_token"},
					{Name: "both tokens", Config: map[string]any{"access_token": "a", "access_token_file": "/x", "collector": collector("127.0.0.1:1")}, Key: "access_token_file"},
					{Name: "missing token file", Config: map[string]any{"access_token_file": "/nonexistent/token", "collector": collector("127.0.0.1:1")}, Key: "access_token_file"},
					{Name: "transport", Config: map[string]any{"access_token": "a", "transport": "udp"}, Key: "transport"},
					{Name: "port", Config: map[string]any{"access_token": "a", "collector": map[string]any{"host": "x", "port": 0}}, Key: "collector.port"},
				},
			})
		})
	}
}

func TestTokenFileServiceAndUpperTraceID(t *testing.T) {
	r := receiver(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte("from-file\n"), 0o600)
	raw, _ := json.Marshal(map[string]any{"access_token_file": tokenFile, "collector": collector(r.GRPCAddr)})
	d := lightstep.New()
	caps, err := d.Configure(context.Background(), raw, sdk.HostInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if caps.TraceID128 || caps.Propagation[0] != "ot-tracer" {
		t.Fatalf("capabilities %+v", caps)
	}
	spans := drivertest.Spans(1, 4)
	spans[1].LocalService, spans[3].LocalService = "other", "other"
	if err := d.Export(context.Background(), spans); err != nil {
		t.Fatal(err)
	}
	d.Shutdown(context.Background())
	got, _ := r.Spans()
	if len(got) != 4 || r.Tokens()["from-file"] == 0 {
		t.Fatalf("got %d spans, tokens %v", len(got), r.Tokens())
	}
	services := map[string]int{}
	for _, s := range got {
		services[s.LocalService]++
		// drivertest.Spans gives span N the upper trace id 0x7a11^N; the
		// wire keeps 64 bits, the tag trace_id_high the rest.
		if want := 0x7a11 ^ uint64(s.SpanID); s.TraceID.High != want {
			t.Errorf("span %s: trace_id_high %x, want %x", s.SpanID, s.TraceID.High, want)
		}
	}
	if services["drivertest"] != 2 || services["other"] != 2 {
		t.Errorf("services %v: one tracer per service expected", services)
	}
}

// A collector that is not there: Export fails with a retryable error, and
// works once the collector is back, without duplicating the failed chunk.
func TestCollectorDownThenUp(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	raw, _ := json.Marshal(map[string]any{"access_token": "t", "collector": collector(addr), "transport": "http", "timeout": "2s"})
	d := lightstep.New()
	if _, err := d.Configure(context.Background(), raw, sdk.HostInfo{}); err != nil {
		t.Fatal(err)
	}
	defer d.Shutdown(context.Background())
	err := d.Export(context.Background(), drivertest.Spans(1, 10))
	if err == nil || sdk.IsPermanent(err) || !strings.Contains(err.Error(), "LightStep") {
		t.Fatalf("err = %v, want a retryable LightStep error", err)
	}
}

// attribute_names: envoy by default; otel renames as sdk/attrnames says,
// without touching the caller's spans.
func TestAttributeNames(t *testing.T) {
	for _, tc := range []struct {
		names            string
		wantOld, wantNew bool
	}{{"", true, false}, {"otel", false, true}, {"both", true, true}} {
		t.Run("names="+tc.names, func(t *testing.T) {
			r := receiver(t)
			cfg := map[string]any{"access_token": "t", "collector": collector(r.GRPCAddr)}
			if tc.names != "" {
				cfg["attribute_names"] = tc.names
			}
			raw, _ := json.Marshal(cfg)
			d := lightstep.New()
			if _, err := d.Configure(context.Background(), raw, sdk.HostInfo{}); err != nil {
				t.Fatal(err)
			}
			spans := drivertest.Spans(1, 2)
			if err := d.Export(context.Background(), spans); err != nil {
				t.Fatal(err)
			}
			d.Shutdown(context.Background())
			if spans[0].Tags[0].Key != "http.method" {
				t.Fatalf("Export changed the caller's span: %+v", spans[0])
			}
			got, _ := r.Spans()
			if len(got) != 2 {
				t.Fatalf("%d spans arrived", len(got))
			}
			_, old := got[1].Tag("http.method")
			_, otel := got[1].Tag("http.request.method")
			if old != tc.wantOld || otel != tc.wantNew {
				t.Fatalf("received tags %+v", got[1].Tags)
			}
		})
	}
	raw, _ := json.Marshal(map[string]any{"access_token": "t", "attribute_names": "semconv"})
	if _, err := lightstep.New().Configure(context.Background(), raw, sdk.HostInfo{}); err == nil || !strings.Contains(err.Error(), "attribute_names") {
		t.Fatalf("err = %v", err)
	}
}
