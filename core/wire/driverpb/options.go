package driverpb

import (
	"runtime"

	"google.golang.org/grpc"

	"github.com/tracehop/tracehop/core/wire"
)

// ServerOptions are the gRPC server options a driver serves the Driver
// service with (the SDK's server): messages of up to wire.MaxMessageBytes;
// fixed flow-control windows of wire.FlowWindowBytes, so that gRPC does
// not ping the host at the start of every Export to size them; and stream
// workers, one per core the driver may use beside those go-plugin's
// streams hold.
//
// Without workers gRPC starts a goroutine per call, and an Export's calls
// go deep (the decoder, then the driver's encoding): each new goroutine
// grows its stack by copying it, several times per batch (golang/go#18138),
// which was 6% of the file driver's CPU in its benchmark. A worker keeps
// its grown stack from call to call; a call that finds every worker busy
// gets its own goroutine, as without them. go-plugin's broker and stdio
// streams each hold a worker for the driver's life (longLivedStreams).
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(wire.MaxMessageBytes), grpc.MaxSendMsgSize(wire.MaxMessageBytes),
		grpc.InitialWindowSize(wire.FlowWindowBytes), grpc.InitialConnWindowSize(wire.FlowWindowBytes),
		grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0) + longLivedStreams)),
	}
}

// longLivedStreams is how many of a driver's streams last as long as it
// does: go-plugin's GRPCBroker.StartStream and GRPCStdio.StreamStdio.
const longLivedStreams = 2

// DialOptions are the host's side of ServerOptions, for its connection to
// a driver.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(wire.MaxMessageBytes), grpc.MaxCallRecvMsgSize(wire.MaxMessageBytes)),
		grpc.WithInitialWindowSize(wire.FlowWindowBytes), grpc.WithInitialConnWindowSize(wire.FlowWindowBytes),
	}
}
