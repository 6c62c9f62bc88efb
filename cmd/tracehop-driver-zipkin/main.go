// Command tracehop-driver-zipkin is the Zipkin driver's plugin executable;
// the tracehop host starts it when tracing.driver.name is "zipkin".
package main

import (
	"github.com/tracehop/tracehop/drivers/zipkin"
	"github.com/tracehop/tracehop/sdk"
)

func main() { sdk.Serve(zipkin.New()) }
