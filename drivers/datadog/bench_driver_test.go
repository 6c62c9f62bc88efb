package datadog_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/tracehop/tracehop/core/plugin"
	"github.com/tracehop/tracehop/sdk/drivertest"
)

// BenchmarkDriver: spans/s through the datadog driver's process, and its peak
// memory under a sustained 10,000 spans/s, into a local receiver.
func BenchmarkDriver(b *testing.B) {
	bin := filepath.Join(b.TempDir(), "tracehop-driver-datadog")
	if err := drivertest.BuildDriver("github.com/tracehop/tracehop/cmd/tracehop-driver-datadog", bin); err != nil {
		b.Fatal(err)
	}
	drivertest.BenchmarkDriver(b, func(b *testing.B) *plugin.Driver {
		cfg, _ := json.Marshal(benchConfig(b))
		d, err := plugin.Start(context.Background(), plugin.Spec{Name: "datadog", Path: bin, Config: cfg}, plugin.Options{})
		if err != nil {
			b.Fatal(err)
		}
		return d
	})
}

func benchConfig(b *testing.B) map[string]any {
	return map[string]any{"agent_addr": receiver(b).Addr, "timeout": "60s"}
}
