// Command tracehop-driver-file is the file driver's plugin executable; the
// tracehop host starts it when tracing.driver.name is "file".
package main

import (
	"github.com/tracehop/tracehop/drivers/file"
	"github.com/tracehop/tracehop/sdk"
)

func main() { sdk.Serve(file.New()) }
