// Command tracehop-driver-lightstep is the LightStep driver's plugin
// executable; the tracehop host starts it when tracing.driver.name is
// "lightstep".
package main

import (
	"github.com/tracehop/tracehop/drivers/lightstep"
	"github.com/tracehop/tracehop/sdk"
)

func main() { sdk.Serve(lightstep.New()) }
