// Package driverhost launches and supervises tracehop's driver processes:
// it finds a driver's executable by name (Search), launches it with
// github.com/hashicorp/go-plugin over gRPC (AutoMTLS, handshake cookie,
// optional checksum pin, an explicit environment), configures it, routes
// its logs into tracehop's log, and supervises it: a driver process that
// dies or stops answering is restarted with backoff and configured again,
// while the pipeline re-sends the batches that were not acknowledged.
//
// A *Process, a driver process under supervision, is a core.Driver, so the
// pipeline cannot tell it from an in-process driver. What host and driver
// agree on (handshake, name and checksum rules, the batch layout, the
// mapping of errors to gRPC statuses) is in core/wire and core/wire/driverpb;
// the driver side of the protocol is the sdk package. go-plugin is imported
// by these two packages only.
//
// It is not for: deciding which drivers to run (the config does) or what to
// send them (core/pipeline batches and retries).
package driverhost
