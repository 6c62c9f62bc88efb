// Package drivers is the parent of tracehop's shipped tracer drivers, one
// package each (file, zipkin, ...). Each builds on the sdk package only and
// runs out of process as tracehop-driver-NAME; none imports the proxy.
package drivers
