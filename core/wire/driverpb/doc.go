// Package driverpb is the host-driver contract as it travels over gRPC: the
// Driver service generated from driver.proto (proto package
// tracehop.driver.v1), the conversions between core's types and its
// messages, and the one mapping between errors and gRPC statuses
// (status.go): a driver's error classes, its retry delay, a partial
// rejection and a refused config, each to a status and back; and the gRPC
// options both sides connect with (options.go).
//
// The host (core/driverhost) and the driver side (sdk) both import it;
// nothing else should: what the rest of tracehop needs of the contract is
// in the parent package, wire, which does not depend on gRPC. Regenerate
// the generated files with `make proto`.
package driverpb

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative driver.proto
