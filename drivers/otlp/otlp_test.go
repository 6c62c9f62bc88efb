package otlp_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/tracehop/tracehop/drivers/otlp"
	"github.com/tracehop/tracehop/sdk"
	"github.com/tracehop/tracehop/sdk/drivertest"
	"github.com/tracehop/tracehop/sdk/drivertest/otlpreceiver"
)

// protocols are the two transports, each with the config that points the
// driver at a receiver.
var protocols = []struct {
	name   string
	config func(r *otlpreceiver.Receiver) map[string]any
}{
	{"grpc", func(r *otlpreceiver.Receiver) map[string]any {
		return map[string]any{"endpoint": r.GRPCAddr, "tls": map[string]any{"insecure": true}}
	}},
	{"http", func(r *otlpreceiver.Receiver) map[string]any {
		return map[string]any{"protocol": "http/protobuf", "endpoint": r.HTTPURL}
	}},
}

func TestConformance(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			drivertest.Run(t, drivertest.Suite{
				Name:        "otlp",
				New:         func() sdk.Driver { return otlp.New() },
				MainPackage: "github.com/tracehop/tracehop/cmd/tracehop-driver-otlp",
				Backend: func(t *testing.T) drivertest.Backend {
					proto := map[string]string{"grpc": "grpc", "http": "http/protobuf"}[p.name]
					return otlpreceiver.Start(t, nil).Backend(t, proto, func(endpoint string) map[string]any {
						cfg := map[string]any{"endpoint": endpoint, "protocol": proto, "tls": map[string]any{"insecure": true}}
						if proto != "grpc" {
							delete(cfg, "tls")
						}
						// The kit compares the proxy's own tags and span
						// names; both keeps them beside the OTel names.
						cfg["attribute_names"] = "both"
						return cfg
					})
				},
				Invalid: []drivertest.InvalidConfig{
					{Name: "protocol", Config: map[string]any{"protocol": "thrift"}, Key: "protocol"},
					{Name: "http endpoint", Config: map[string]any{"protocol": "http/protobuf", "endpoint": "localhost:4318"}, Key: "endpoint"},
					{Name: "compression", Config: map[string]any{"compression": "zstd"}, Key: "compression"},
					{Name: "names", Config: map[string]any{"attribute_names": "semconv"}, Key: "attribute_names"},
					{Name: "half mTLS", Config: map[string]any{"tls": map[string]any{"cert_file": "c.pem"}}, Key: "tls"},
					{Name: "unknown key", Config: map[string]any{"endpont": "x"}, Key: "endpont"},
				},
			})
		})
	}
}

func configure(t *testing.T, d *otlp.Driver, cfg map[string]any, host sdk.HostInfo) sdk.Capabilities {
	t.Helper()
	raw, _ := json.Marshal(cfg)
	caps, err := d.Configure(context.Background(), raw, host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Shutdown(context.Background()) })
	return caps
}

func attrs(kvs []*commonpb.KeyValue) map[string]*commonpb.AnyValue {
	m := map[string]*commonpb.AnyValue{}
	for _, kv := range kvs {
		m[kv.Key] = kv.Value
	}
	return m
}

// The default mapping, field by field, as the receiver decoded it.
func TestMapping(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			r := otlpreceiver.Start(t, nil)
			d := otlp.NewWithEnv(func(string) string { return "" })
			cfg := p.config(r)
			cfg["resource"] = map[string]any{"deployment.environment.name": "test"}
			caps := configure(t, d, cfg, sdk.HostInfo{Version: "1.2.3", NodeID: "node-7"})
			if !caps.TraceID128 || caps.Precision != time.Nanosecond || len(caps.Propagation) != 1 || caps.Propagation[0] != sdk.FormatTraceContext {
				t.Fatalf("capabilities = %+v", caps)
			}
			trace := drivertest.CanonicalTrace(time.Now())
			if err := d.Export(context.Background(), trace); err != nil {
				t.Fatal(err)
			}
			reqs := r.Requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(reqs))
			}
			rss := reqs[0].ResourceSpans
			var services []string
			spans := map[string]*tracepb.Span{}
			for _, rs := range rss {
				ra := attrs(rs.Resource.Attributes)
				services = append(services, ra["service.name"].GetStringValue())
				if ra["service.instance.id"].GetStringValue() != "node-7" || ra["deployment.environment.name"].GetStringValue() != "test" {
					t.Errorf("resource %v", rs.Resource.Attributes)
				}
				if len(rs.ScopeSpans) != 1 || rs.ScopeSpans[0].Scope.Name != "github.com/tracehop/tracehop" || rs.ScopeSpans[0].Scope.Version != "1.2.3" {
					t.Errorf("scope spans %v", rs.ScopeSpans)
				}
				for _, s := range rs.ScopeSpans[0].Spans {
					spans[ra["service.name"].GetStringValue()+"/"+string(s.SpanId)] = s
				}
			}
			if strings.Join(services, ",") != "front-proxy,service1,service2" {
				t.Errorf("resources for %v, want one per service in order", services)
			}
			front := rss[0].ScopeSpans[0].Spans[0]
			want := trace[0]
			if front.Name != "GET" || front.Kind != tracepb.Span_SPAN_KIND_SERVER ||
				front.StartTimeUnixNano != uint64(want.StartUnixNano) || front.EndTimeUnixNano != uint64(want.StartUnixNano)+uint64(want.Duration) ||
				front.Flags&0xff != 1 || len(front.ParentSpanId) != 0 || front.Status != nil {
				t.Errorf("front-proxy span = %v", front)
			}
			fa := attrs(front.Attributes)
			for k, v := range map[string]string{
				"http.request.method": "GET", "url.scheme": "http", "url.path": "/trace/1", "server.address": "localhost",
				"user_agent.original": "curl/8.5.0", "network.peer.address": "127.0.0.1", "guid:x-request-id": "6a3e0c5e-4b43-4b3b-9d2c-3f0e6c1d2b7a",
			} {
				if got := fa[k].GetStringValue(); got != v {
					t.Errorf("attribute %s = %q, want %q", k, got, v)
				}
			}
			if fa["http.response.status_code"].GetIntValue() != 200 || fa["server.port"].GetIntValue() != 8000 || fa["network.peer.port"].GetIntValue() != 53422 {
				t.Errorf("int attributes %v", front.Attributes)
			}
			if _, legacy := fa["http.method"]; legacy {
				t.Error("otel names keep the legacy http.method")
			}
			svc2 := rss[2].ScopeSpans[0].Spans[0]
			if svc2.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR || svc2.Status.GetMessage() != "upstream connect error" ||
				attrs(svc2.Attributes)["error.type"].GetStringValue() != "503" || svc2.Flags&0x300 != 0x300 {
				t.Errorf("error span = %v", svc2)
			}
			if len(svc2.Events) != 2 || svc2.Events[1].Name != "upstream reset" || svc2.Events[1].TimeUnixNano != uint64(trace[3].Events[1].UnixNano) {
				t.Errorf("events = %v", svc2.Events)
			}
			egress := rss[1].ScopeSpans[0].Spans[1]
			if egress.Kind != tracepb.Span_SPAN_KIND_CLIENT || attrs(egress.Attributes)["peer.service"].GetStringValue() != "service2" ||
				attrs(egress.Attributes)["network.peer.address"].GetStringValue() != "fd00::2" || string(egress.ParentSpanId) != string(rss[1].ScopeSpans[0].Spans[0].SpanId) ||
				egress.Flags != 0x301 {
				t.Errorf("client span = %v", egress)
			}
		})
	}
}

// The span flags say whether the parent is remote as the host says
// (Span.ParentOrigin), whatever the kind: an egress CLIENT span whose parent
// came in the application's traceparent is 0x301, not 0x101 (issue 26).
// From a host that says nothing, a SERVER span's parent is remote.
func TestParentRemoteFlag(t *testing.T) {
	cases := []struct {
		kind   sdk.Kind
		parent sdk.SpanID
		origin sdk.ParentOrigin
		flags  uint32
	}{
		{sdk.KindServer, 0, sdk.ParentUnknown, 0x101},
		{sdk.KindClient, 7, sdk.ParentRemote, 0x301},
		{sdk.KindClient, 7, sdk.ParentLocal, 0x101},
		{sdk.KindServer, 7, sdk.ParentRemote, 0x301},
		{sdk.KindServer, 7, sdk.ParentLocal, 0x101},
		{sdk.KindServer, 7, sdk.ParentUnknown, 0x301},
		{sdk.KindClient, 7, sdk.ParentUnknown, 0x101},
	}
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			r := otlpreceiver.Start(t, nil)
			d := otlp.New()
			configure(t, d, p.config(r), sdk.HostInfo{})
			spans := drivertest.Spans(1, len(cases))
			for i, c := range cases {
				spans[i].Kind, spans[i].ParentID, spans[i].ParentOrigin = c.kind, c.parent, c.origin
			}
			if err := d.Export(context.Background(), spans); err != nil {
				t.Fatal(err)
			}
			flags := map[string]uint32{}
			for _, rs := range r.Requests()[0].ResourceSpans {
				for _, s := range rs.ScopeSpans[0].Spans {
					flags[string(s.SpanId)] = s.Flags
				}
			}
			for i, c := range cases {
				id := string([]byte{0, 0, 0, 0, 0, 0, 0, byte(spans[i].SpanID)})
				if got := flags[id]; got != c.flags {
					t.Errorf("%s span, parent %d from %s: flags %#x, want %#x", c.kind, c.parent, c.origin, got, c.flags)
				}
			}
		})
	}
}

// Header values need not be UTF-8; protobuf refuses to marshal anything
// else, so the driver repairs them rather than lose the batch.
func TestInvalidUTF8IsRepaired(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			r := otlpreceiver.Start(t, nil)
			d := otlp.NewWithEnv(func(string) string { return "" })
			configure(t, d, p.config(r), sdk.HostInfo{})
			s := drivertest.Spans(1, 1)[0]
			s.Name = "bad\xffname"
			s.LocalService = "svc\xc3"
			s.Tags = []sdk.Tag{{Key: "user_agent", Value: "Mozilla\xfe\xff"}, {Key: "k\x80", Value: "v"}}
			s.Events = []sdk.Event{{UnixNano: s.StartUnixNano, Value: "\xe2\x82"}}
			if err := d.Export(context.Background(), []sdk.Span{s}); err != nil {
				t.Fatalf("Export: %v", err)
			}
			got, _ := r.Spans()
			if len(got) != 1 {
				t.Fatalf("received %d spans", len(got))
			}
			ua, _ := got[0].Tag("user_agent.original")
			if got[0].LocalService != "svc\uFFFD" || ua != "Mozilla\uFFFD" || got[0].Events[0].Value != "\uFFFD" {
				t.Fatalf("received %+v", got[0])
			}
			if _, ok := got[0].Tag("k\uFFFD"); !ok {
				t.Fatalf("the repaired key is missing: %v", got[0].Tags)
			}
		})
	}
}

// Errors by the OTLP spec's exporter section, through a receiver answering
// as told.
func TestErrorClasses(t *testing.T) {
	type want struct {
		permanent bool
		delay     time.Duration
		rejected  int
	}
	cases := []struct {
		name  string
		proto string
		fault otlpreceiver.Fault
		want  want
	}{
		{"unavailable", "grpc", otlpreceiver.Fault{Code: codes.Unavailable}, want{}},
		{"unavailable with RetryInfo", "grpc", otlpreceiver.Fault{Code: codes.Unavailable, RetryAfter: 3 * time.Second}, want{delay: 3 * time.Second}},
		{"resource exhausted with RetryInfo", "grpc", otlpreceiver.Fault{Code: codes.ResourceExhausted, RetryAfter: 2 * time.Second}, want{delay: 2 * time.Second}},
		{"resource exhausted without", "grpc", otlpreceiver.Fault{Code: codes.ResourceExhausted}, want{permanent: true}},
		{"invalid argument", "grpc", otlpreceiver.Fault{Code: codes.InvalidArgument, Message: "bad span"}, want{permanent: true}},
		{"unauthenticated", "grpc", otlpreceiver.Fault{Code: codes.Unauthenticated}, want{permanent: true}},
		{"deadline", "grpc", otlpreceiver.Fault{Code: codes.DeadlineExceeded}, want{}},
		{"partial success", "grpc", otlpreceiver.Fault{Rejected: 2, Message: "2 spans too old"}, want{rejected: 2}},
		{"429 Retry-After", "http", otlpreceiver.Fault{Status: 429, RetryAfter: 4 * time.Second}, want{delay: 4 * time.Second}},
		{"503", "http", otlpreceiver.Fault{Status: 503}, want{}},
		{"502", "http", otlpreceiver.Fault{Status: 502}, want{}},
		{"504", "http", otlpreceiver.Fault{Status: 504}, want{}},
		{"400", "http", otlpreceiver.Fault{Status: 400, Message: "bad span"}, want{permanent: true}},
		{"500", "http", otlpreceiver.Fault{Status: 500}, want{permanent: true}},
		{"401", "http", otlpreceiver.Fault{Status: 401}, want{permanent: true}},
		{"partial success", "http", otlpreceiver.Fault{Rejected: 3, Message: "3 spans too old"}, want{rejected: 3}},
	}
	for _, c := range cases {
		t.Run(c.proto+"/"+c.name, func(t *testing.T) {
			r := otlpreceiver.Start(t, nil)
			d := otlp.NewWithEnv(func(string) string { return "" })
			cfg := protocols[0].config(r)
			if c.proto == "http" {
				cfg = protocols[1].config(r)
			}
			configure(t, d, cfg, sdk.HostInfo{})
			r.FailNext(c.fault)
			err := d.Export(context.Background(), drivertest.Spans(1, 5))
			if err == nil {
				t.Fatal("Export succeeded")
			}
			if c.want.rejected > 0 {
				if pr, ok := err.(*sdk.PartialRejection); !ok || pr.Rejected != c.want.rejected || !strings.Contains(pr.Message, "too old") {
					t.Fatalf("Export = %#v; want a partial rejection of %d", err, c.want.rejected)
				}
				return
			}
			if sdk.IsPermanent(err) != c.want.permanent || sdk.RetryDelay(err) != c.want.delay {
				t.Fatalf("Export = %v: permanent %v delay %s; want %v %s", err, sdk.IsPermanent(err), sdk.RetryDelay(err), c.want.permanent, c.want.delay)
			}
			if c.fault.Message != "" && !strings.Contains(err.Error(), c.fault.Message) {
				t.Errorf("the receiver's message %q is not in %v", c.fault.Message, err)
			}
			if err := d.Export(context.Background(), drivertest.Spans(1, 5)); err != nil {
				t.Fatalf("the next Export: %v", err)
			}
		})
	}
}

// A receiver that is down gives a retryable error; once it is up, the same
// driver delivers.
func TestReceiverDownThenUp(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			r := otlpreceiver.Start(t, nil)
			d := otlp.NewWithEnv(func(string) string { return "" })
			cfg := p.config(r)
			configure(t, d, cfg, sdk.HostInfo{})
			r.Stop()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			err := d.Export(ctx, drivertest.Spans(1, 5))
			if err == nil || sdk.IsPermanent(err) {
				t.Fatalf("Export to a stopped receiver = %v; want a retryable error", err)
			}
		})
	}
}

// The standard OTEL_EXPORTER_OTLP_* variables configure what the config
// leaves out; the config's own keys win.
func TestEnvironment(t *testing.T) {
	r := otlpreceiver.Start(t, nil)
	env := map[string]string{
		"OTEL_EXPORTER_OTLP_PROTOCOL":       "http/protobuf",
		"OTEL_EXPORTER_OTLP_ENDPOINT":       strings.TrimSuffix(r.HTTPURL, "/v1/traces"),
		"OTEL_EXPORTER_OTLP_HEADERS":        "x-api-key=s%20ecret,x-team=a",
		"OTEL_EXPORTER_OTLP_TRACES_HEADERS": "",
		"OTEL_EXPORTER_OTLP_COMPRESSION":    "gzip",
		"OTEL_RESOURCE_ATTRIBUTES":          "deployment.environment.name=staging,service.name=from-env",
	}
	d := otlp.NewWithEnv(func(k string) string { return env[k] })
	configure(t, d, map[string]any{"resource": map[string]any{"team": "edge"}}, sdk.HostInfo{})
	if err := d.Export(context.Background(), drivertest.Spans(1, 2)); err != nil {
		t.Fatal(err)
	}
	h := r.Headers()
	if len(h) != 1 || h[0]["x-api-key"] != "s ecret" || h[0]["content-encoding"] != "gzip" {
		t.Fatalf("headers = %v", h)
	}
	ra := attrs(r.Requests()[0].ResourceSpans[0].Resource.Attributes)
	if ra["service.name"].GetStringValue() != "from-env" || ra["deployment.environment.name"].GetStringValue() != "staging" || ra["team"].GetStringValue() != "edge" {
		t.Fatalf("resource = %v", ra)
	}

	// A config key beats its variable: grpc here, whatever the env says.
	d = otlp.NewWithEnv(func(k string) string { return env[k] })
	configure(t, d, map[string]any{"protocol": "grpc", "endpoint": r.GRPCAddr, "tls": map[string]any{"insecure": true},
		"headers": map[string]any{"x-api-key": "cfg"}}, sdk.HostInfo{})
	if err := d.Export(context.Background(), drivertest.Spans(1, 2)); err != nil {
		t.Fatal(err)
	}
	if h := r.Headers(); len(h) != 2 || h[1]["x-api-key"] != "cfg" {
		t.Fatalf("headers = %v", h)
	}

	bad := map[string]string{"OTEL_EXPORTER_OTLP_TIMEOUT": "soon"}
	d = otlp.NewWithEnv(func(k string) string { return bad[k] })
	if _, err := d.Configure(context.Background(), nil, sdk.HostInfo{}); err == nil || !strings.Contains(err.Error(), "OTEL_EXPORTER_OTLP_TIMEOUT") {
		t.Fatalf("Configure with a bad variable = %v; want an error naming it", err)
	}
}

// tlsFiles writes a CA, a server certificate for 127.0.0.1 and a client
// certificate, all signed by the CA.
func tlsFiles(t *testing.T) (dir string, serverConf func(mtls bool) *tls.Config) {
	dir = t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(name string, serial int64, usage x509.ExtKeyUsage) tls.Certificate {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, _ := x509.MarshalECPrivateKey(key)
		os.WriteFile(filepath.Join(dir, name+".pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
		os.WriteFile(filepath.Join(dir, name+"-key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
		c, err := tls.LoadX509KeyPair(filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	os.WriteFile(filepath.Join(dir, "ca.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600)
	server := issue("server", 2, x509.ExtKeyUsageServerAuth)
	issue("client", 3, x509.ExtKeyUsageClientAuth)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return dir, func(mtls bool) *tls.Config {
		c := &tls.Config{Certificates: []tls.Certificate{server}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
		if mtls {
			c.ClientAuth, c.ClientCAs = tls.RequireAndVerifyClientCert, pool
		}
		return c
	}
}

func TestTLS(t *testing.T) {
	dir, serverConf := tlsFiles(t)
	for _, mtls := range []bool{false, true} {
		for _, p := range []string{"grpc", "http"} {
			name := p + "/tls"
			if mtls {
				name = p + "/mtls"
			}
			t.Run(name, func(t *testing.T) {
				r := otlpreceiver.Start(t, serverConf(mtls))
				cfg := map[string]any{"endpoint": r.GRPCAddr}
				if p == "http" {
					cfg = map[string]any{"protocol": "http/protobuf", "endpoint": r.HTTPURL}
				}
				tlsCfg := map[string]any{"ca_file": filepath.Join(dir, "ca.pem")}
				cfg["tls"] = tlsCfg
				if mtls {
					// Without the client certificate the receiver refuses.
					d := otlp.NewWithEnv(func(string) string { return "" })
					configure(t, d, cfg, sdk.HostInfo{})
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
					defer cancel()
					if err := d.Export(ctx, drivertest.Spans(1, 1)); err == nil {
						t.Fatal("an mTLS receiver took spans from a client without a certificate")
					}
					tlsCfg["cert_file"], tlsCfg["key_file"] = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
				}
				d := otlp.NewWithEnv(func(string) string { return "" })
				configure(t, d, cfg, sdk.HostInfo{})
				if err := d.Export(context.Background(), drivertest.Spans(1, 3)); err != nil {
					t.Fatalf("Export over TLS: %v", err)
				}
				if got, _ := r.Spans(); len(got) != 3 {
					t.Fatalf("received %d spans, want 3", len(got))
				}
			})
		}
	}
	d := otlp.NewWithEnv(func(string) string { return "" })
	raw, _ := json.Marshal(map[string]any{"tls": map[string]any{"ca_file": filepath.Join(dir, "missing.pem")}})
	if _, err := d.Configure(context.Background(), raw, sdk.HostInfo{}); err == nil || !strings.Contains(err.Error(), "tls.ca_file") {
		t.Fatalf("a missing CA file: %v", err)
	}
}

// TestLargeBatchInParts: over gRPC, a batch that encodes larger than the
// 4 MiB a default server takes (the Collector's max_recv_msg_size_mib, the
// reference receiver's gRPC default) goes in parts that each fit, and
// every span arrives once. In one request the receiver refused it with
// RESOURCE_EXHAUSTED, and the spans were lost.
func TestLargeBatchInParts(t *testing.T) {
	r := otlpreceiver.Start(t, nil)
	d := otlp.NewWithEnv(func(string) string { return "" })
	configure(t, d, protocols[0].config(r), sdk.HostInfo{Version: "1.2.3"})
	big := strings.Repeat("x", 5<<10)
	spans := make([]sdk.Span, 1024) // 1,024 spans of 5 KiB: 5 MiB
	for i := range spans {
		spans[i] = sdk.Span{
			TraceID: sdk.TraceID{High: 1, Low: uint64(i + 1)}, SpanID: sdk.SpanID(i + 1),
			Name: "ingress", Kind: sdk.KindServer, StartUnixNano: time.Now().UnixNano(), Duration: time.Millisecond,
			LocalService: "front-proxy", Sampled: true,
			Tags: []sdk.Tag{{Key: "big", Value: big}},
		}
	}
	if err := d.Export(context.Background(), spans); err != nil {
		t.Fatalf("export of a 5 MiB batch: %v", err)
	}
	reqs := r.Requests()
	if len(reqs) < 2 {
		t.Fatalf("%d requests for a 5 MiB batch, want it in parts", len(reqs))
	}
	seen := map[string]bool{}
	for _, req := range reqs {
		if n := proto.Size(req); n > 4<<20 {
			t.Errorf("a request of %d bytes, over 4 MiB", n)
		}
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					if seen[string(s.SpanId)] {
						t.Errorf("span %x arrived twice", s.SpanId)
					}
					seen[string(s.SpanId)] = true
				}
			}
		}
	}
	if len(seen) != len(spans) {
		t.Fatalf("%d spans arrived, want %d", len(seen), len(spans))
	}

	// The parts' partial rejections add up to the batch's.
	r.FailNext(otlpreceiver.Fault{Rejected: 3, Message: "first"}, otlpreceiver.Fault{Rejected: 4, Message: "second"})
	err := d.Export(context.Background(), spans)
	p := sdk.AsPartialRejection(err)
	if p == nil || p.Rejected != 7 || p.Message != "first; second" {
		t.Fatalf("parts refused 3 and 4 spans: Export = %v, want 7 rejected with both messages", err)
	}
}
