// Package drivers is the parent of tracehop's shipped tracer drivers, one
// package each (file, zipkin, ...). Each builds on the sdk package only and
// runs out of process as tracehop-driver-NAME; none imports the proxy.
//
// drivers/otlpjs is no Go package: it is the reference driver in
// JavaScript (Node.js), written from docs/driver-protocol.md without the
// SDK, and checked with `tracehop driver check` like any executable.
package drivers
