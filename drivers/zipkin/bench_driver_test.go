package zipkin_test

import (
	"testing"

	"github.com/tracehop/tracehop/sdk/drivertest"
)

// BenchmarkDriver: spans/s through the zipkin driver's process, and its peak
// memory under a sustained 10,000 spans/s, into a local receiver.
func BenchmarkDriver(b *testing.B) {
	drivertest.BenchmarkDriver(b, "zipkin", "github.com/tracehop/tracehop/cmd/tracehop-driver-zipkin", benchConfig)
}

func benchConfig(b *testing.B) map[string]any {
	return map[string]any{"collector_endpoint": newReceiver(b).endpoint(), "encoding": "proto"}
}
