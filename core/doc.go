// Package core holds tracehop's domain: the finished-span model that every
// part of tracehop agrees on, and the Driver interface that every tracer back
// end implements.
//
// It is deliberately small and has no dependencies beyond the standard
// library. The pieces that move spans live in sub-packages: the span
// pipeline (pipeline), the host that launches and supervises driver
// processes (driverhost) and the contract between host and driver (wire;
// its gRPC form in wire/driverpb). Core is
// not the place for HTTP handling (see proxy) or for any vendor library (see
// drivers).
package core
