package lightstep_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/tracehop/tracehop/core/plugin"
	"github.com/tracehop/tracehop/sdk/drivertest"
)

// BenchmarkDriver: spans/s through the lightstep driver's process, and its peak
// memory under a sustained 10,000 spans/s, into a local receiver.
func BenchmarkDriver(b *testing.B) {
	bin := filepath.Join(b.TempDir(), "tracehop-driver-lightstep")
	if err := drivertest.BuildDriver("github.com/tracehop/tracehop/cmd/tracehop-driver-lightstep", bin); err != nil {
		b.Fatal(err)
	}
	drivertest.BenchmarkDriver(b, func(b *testing.B) *plugin.Driver {
		cfg, _ := json.Marshal(benchConfig(b))
		d, err := plugin.Start(context.Background(), plugin.Spec{Name: "lightstep", Path: bin, Config: cfg}, plugin.Options{})
		if err != nil {
			b.Fatal(err)
		}
		return d
	})
}

func benchConfig(b *testing.B) map[string]any {
	return map[string]any{"access_token": "bench", "collector": collector(receiver(b).GRPCAddr)}
}
