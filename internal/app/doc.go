// Package app is the tracehop application around the data plane: it starts
// the drivers (each a process supervised by core/driverhost), builds the
// span pipeline and the tracer, runs proxy.Server, serves the admin server
// (liveness, readiness, metrics, the config in force, POST /reload), owns
// the metrics registry, and carries out reloads: drivers first, then the
// data plane's switch, so that a failure at any stage leaves the running
// config in force.
//
// It is the only part of tracehop's serving side that knows drivers run
// out of process: proxy sees a pipeline and a registry, core/pipeline sees
// core.Driver. Arrows: cmd/tracehop -> app -> proxy, core/pipeline,
// core/driverhost. It is not the data plane (proxy), nor the command line
// and signals (cmd/tracehop).
package app
