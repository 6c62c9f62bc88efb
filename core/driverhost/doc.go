// Package plugin is tracehop's plugin host: it finds a driver's executable by
// name, launches it with github.com/hashicorp/go-plugin over gRPC (AutoMTLS,
// handshake cookie, optional checksum pin, an explicit environment),
// configures it, routes its logs into tracehop's log, and supervises it:
// a driver process that dies or stops answering is restarted with backoff
// and configured again, while the pipeline re-sends the batches that were
// not acknowledged.
//
// A *Driver is a core.Driver, so the pipeline cannot tell a plugin from an
// in-process driver. The plugin side of the protocol is the sdk package;
// go-plugin is imported by these two packages only.
package driverhost
