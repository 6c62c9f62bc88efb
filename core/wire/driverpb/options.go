package driverpb

import (
	"google.golang.org/grpc"

	"github.com/tracehop/tracehop/core/wire"
)

// ServerOptions are the gRPC server options a driver serves the Driver
// service with (the SDK's server): messages of up to wire.MaxMessageBytes,
// and fixed flow-control windows of wire.FlowWindowBytes, so that gRPC does
// not ping the host at the start of every Export to size them.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(wire.MaxMessageBytes), grpc.MaxSendMsgSize(wire.MaxMessageBytes),
		grpc.InitialWindowSize(wire.FlowWindowBytes), grpc.InitialConnWindowSize(wire.FlowWindowBytes),
	}
}

// DialOptions are the host's side of ServerOptions, for its connection to
// a driver.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(wire.MaxMessageBytes), grpc.MaxCallRecvMsgSize(wire.MaxMessageBytes)),
		grpc.WithInitialWindowSize(wire.FlowWindowBytes), grpc.WithInitialConnWindowSize(wire.FlowWindowBytes),
	}
}
