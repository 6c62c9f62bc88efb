package zipkin_test

import (
	"testing"

	"github.com/tracehop/tracehop/sdk/drivertest"
)

// BenchmarkDriver: spans/s through the zipkin driver's process, and its peak
// memory under a sustained 10,000 spans/s, into a local receiver that
// decodes every request and keeps nothing.
func BenchmarkDriver(b *testing.B) {
	drivertest.BenchmarkDriver(b, "zipkin", "github.com/tracehop/tracehop/cmd/tracehop-driver-zipkin", benchConfig)
}

// benchConfig points the driver at a receiver that decodes every POST
// (Zipkin proto) and keeps nothing.
func benchConfig(b *testing.B) map[string]any {
	r := newReceiver(b)
	r.discard = true
	return map[string]any{"collector_endpoint": r.endpoint(), "encoding": "proto"}
}

// BenchmarkDriverUndecoded is BenchmarkDriver into a receiver that reads
// each POST without decoding it: the driver and its transport alone,
// without the receiver's decoding (which runs on the same cores).
func BenchmarkDriverUndecoded(b *testing.B) {
	drivertest.BenchmarkDriver(b, "zipkin", "github.com/tracehop/tracehop/cmd/tracehop-driver-zipkin", func(b *testing.B) map[string]any {
		r := newReceiver(b)
		r.discard, r.undecoded = true, true
		return map[string]any{"collector_endpoint": r.endpoint(), "encoding": "proto"}
	})
}
