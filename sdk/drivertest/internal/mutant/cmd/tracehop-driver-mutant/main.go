// Command tracehop-driver-mutant is the mutant driver as a plugin process.
package main

import (
	"github.com/tracehop/tracehop/sdk"
	"github.com/tracehop/tracehop/sdk/drivertest/internal/mutant"
)

func main() { sdk.Serve(mutant.New()) }
