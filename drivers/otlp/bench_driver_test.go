package otlp_test

import (
	"testing"

	"github.com/tracehop/tracehop/sdk/drivertest"
	"github.com/tracehop/tracehop/sdk/drivertest/otlpreceiver"
)

// BenchmarkDriver: spans/s through the otlp driver's process, and its peak
// memory under a sustained 10,000 spans/s, into a local OTLP/gRPC receiver
// that decodes every request and keeps nothing (as zipkin's benchmark
// receiver does).
func BenchmarkDriver(b *testing.B) {
	drivertest.BenchmarkDriver(b, "otlp", "github.com/tracehop/tracehop/cmd/tracehop-driver-otlp", func(b *testing.B) map[string]any {
		r := otlpreceiver.Start(b, nil)
		r.Discard()
		return map[string]any{"endpoint": r.GRPCAddr, "tls": map[string]any{"insecure": true}}
	})
}

// BenchmarkDriverHTTP is BenchmarkDriver over OTLP/HTTP (protobuf).
func BenchmarkDriverHTTP(b *testing.B) {
	drivertest.BenchmarkDriver(b, "otlp", "github.com/tracehop/tracehop/cmd/tracehop-driver-otlp", func(b *testing.B) map[string]any {
		r := otlpreceiver.Start(b, nil)
		r.Discard()
		return map[string]any{"protocol": "http/protobuf", "endpoint": r.HTTPURL}
	})
}

// BenchmarkDriverUndecoded is BenchmarkDriver into a receiver that reads
// each request without decoding it: the driver and its transport alone,
// without the receiver's decoding (which runs on the same cores).
func BenchmarkDriverUndecoded(b *testing.B) {
	drivertest.BenchmarkDriver(b, "otlp", "github.com/tracehop/tracehop/cmd/tracehop-driver-otlp", func(b *testing.B) map[string]any {
		r := otlpreceiver.StartUndecoded(b)
		return map[string]any{"endpoint": r.GRPCAddr, "tls": map[string]any{"insecure": true}}
	})
}

// BenchmarkDriverHTTPUndecoded is BenchmarkDriverUndecoded over OTLP/HTTP:
// the configuration make bench's tracehop-otlp row runs.
func BenchmarkDriverHTTPUndecoded(b *testing.B) {
	drivertest.BenchmarkDriver(b, "otlp", "github.com/tracehop/tracehop/cmd/tracehop-driver-otlp", func(b *testing.B) map[string]any {
		r := otlpreceiver.StartUndecoded(b)
		return map[string]any{"protocol": "http/protobuf", "endpoint": r.HTTPURL}
	})
}
