// Command tracehop-driver-otlp is the OTLP driver's plugin executable; the
// tracehop host starts it when tracing.driver.name is "otlp".
package main

import (
	"github.com/tracehop/tracehop/drivers/otlp"
	"github.com/tracehop/tracehop/sdk"
)

func main() { sdk.Serve(otlp.New()) }
