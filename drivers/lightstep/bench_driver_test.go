package lightstep_test

import (
	"testing"

	"github.com/tracehop/tracehop/sdk/drivertest"
)

// BenchmarkDriver: spans/s through the lightstep driver's process, and its peak
// memory under a sustained 10,000 spans/s, into a local receiver.
func BenchmarkDriver(b *testing.B) {
	drivertest.BenchmarkDriver(b, "lightstep", "github.com/tracehop/tracehop/cmd/tracehop-driver-lightstep", benchConfig)
}

func benchConfig(b *testing.B) map[string]any {
	return map[string]any{"access_token": "bench", "collector": collector(receiver(b).GRPCAddr)}
}
