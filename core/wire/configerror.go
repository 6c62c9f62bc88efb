package wire

import (
	"fmt"
	"strings"
)

// ConfigError is a driver's refusal of its config, listing every problem,
// each with its key (a dotted path inside the driver's config block, such
// as "endpoint" or "tls.ca_file"), so that the host can print each at its
// line of the YAML file.
//
// It is one type on both sides. In a driver, sdk.DecodeConfig and
// sdk.Problems build it with Problems only, and its Error joins them. On
// the host, driverpb.ConfigureError rebuilds it from the status a refused
// Configure came back with: Driver is the name the driver was configured
// under and Message the driver's whole error text.
type ConfigError struct {
	// Driver is the driver's name (tracing.driver.name); set by the host.
	Driver string
	// Message is the driver's error text as it crossed the wire; empty in
	// the driver, where Problems say it all.
	Message string
	// Problems are the keys and what is wrong with each; a driver that
	// refused its config without the SDK's helpers may name none.
	Problems []ConfigProblem
}

// ConfigProblem is one problem with one key of a driver's config.
type ConfigProblem struct {
	Key, Message string
}

// Error is "key: problem; key: problem" in a driver, and "driver NAME
// rejected its config: ..." once the host has named the driver.
func (e *ConfigError) Error() string {
	msg := e.Message
	if msg == "" {
		parts := make([]string, len(e.Problems))
		for i, p := range e.Problems {
			parts[i] = p.Key + ": " + p.Message
		}
		msg = strings.Join(parts, "; ")
	}
	if e.Driver == "" {
		return msg
	}
	return fmt.Sprintf("driver %q rejected its config: %s", e.Driver, msg)
}
