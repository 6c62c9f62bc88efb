// Command tracehop-driver-datadog is the Datadog driver's plugin
// executable; the tracehop host starts it when tracing.driver.name is
// "datadog".
package main

import (
	"github.com/tracehop/tracehop/drivers/datadog"
	"github.com/tracehop/tracehop/sdk"
)

func main() { sdk.Serve(datadog.New()) }
