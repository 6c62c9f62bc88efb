package mutant_test

import (
	"os"
	"testing"

	"github.com/tracehop/tracehop/sdk"
	"github.com/tracehop/tracehop/sdk/drivertest"
	"github.com/tracehop/tracehop/sdk/drivertest/internal/mutant"
	"github.com/tracehop/tracehop/sdk/drivertest/zipkinreceiver"
)

// TestKit runs the kit on the mutant with the bug DRIVERTEST_MUTANT names
// (none: it must pass). drivertest's TestKitCatchesEveryBug runs it once
// per bug and expects the kit to fail.
func TestKit(t *testing.T) {
	bug := os.Getenv("DRIVERTEST_MUTANT")
	drivertest.Run(t, drivertest.Suite{
		Name:        "mutant",
		New:         func() sdk.Driver { return mutant.New() },
		MainPackage: "github.com/tracehop/tracehop/sdk/drivertest/internal/mutant/cmd/tracehop-driver-mutant",
		BurstSpans:  5000, // a batch of 512, one of 4096, the rest
		Backend: func(t *testing.T) drivertest.Backend {
			r := zipkinreceiver.Start(t)
			return r.Backend(map[string]any{"endpoint": r.Endpoint(), "bug": bug})
		},
		Invalid: []drivertest.InvalidConfig{{Name: "no endpoint", Config: map[string]any{}, Key: "endpoint"}},
	})
}
