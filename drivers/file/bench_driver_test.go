package file_test

import (
	"testing"

	"github.com/tracehop/tracehop/sdk/drivertest"
)

// BenchmarkDriver: spans/s and driver CPU per span through the file
// driver's process writing to /dev/null (the configuration make bench's
// tracehop-file row runs), and its peak memory under 10,000 spans/s.
func BenchmarkDriver(b *testing.B) {
	drivertest.BenchmarkDriver(b, "file", "github.com/tracehop/tracehop/cmd/tracehop-driver-file", func(*testing.B) map[string]any {
		return map[string]any{"path": "/dev/null"}
	})
}
