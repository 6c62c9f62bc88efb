// Package wire is the protocol between the tracehop host and a driver
// plugin: the gRPC service generated from driver.proto (proto package
// tracehop.driver.v1), the handshake constants both sides must agree on, and
// the conversions between core's types and the generated messages.
//
// Both the host (core/plugin) and the plugin side (sdk) import it; nothing
// else should. Regenerate the generated files with `make proto`.
package wire

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative driver.proto
