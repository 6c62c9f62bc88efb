package datadog_test

import (
	"testing"

	"github.com/tracehop/tracehop/sdk/drivertest"
)

// BenchmarkDriver: spans/s through the datadog driver's process, and its peak
// memory under a sustained 10,000 spans/s, into a local receiver.
func BenchmarkDriver(b *testing.B) {
	drivertest.BenchmarkDriver(b, "datadog", "github.com/tracehop/tracehop/cmd/tracehop-driver-datadog", benchConfig)
}

func benchConfig(b *testing.B) map[string]any {
	return map[string]any{"agent_addr": receiver(b).Addr, "timeout": "60s"}
}
