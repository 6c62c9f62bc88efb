package wire

// ProtocolVersion is the version of the host-driver protocol, the N of the
// proto package tracehop.driver.vN. Host and driver refuse each other when it
// differs. Bump it (and the proto package) for any breaking change.
const ProtocolVersion = 1

// The handshake cookie. It is not a secret: it only keeps a user from
// running a driver binary by hand by mistake, and keeps tracehop from
// mistaking an unrelated program for a driver.
const (
	MagicCookieKey   = "TRACEHOP_DRIVER_MAGIC_COOKIE"
	MagicCookieValue = "b1f5c4c0-tracehop-driver"
)

// PluginName is the name the driver service is registered under in the
// plugin's plugin set.
const PluginName = "driver"

// MaxMessageBytes bounds one gRPC message between host and driver, both
// ways; a batch of the default 1,024 spans is far below it.
const MaxMessageBytes = 64 << 20

// FlowWindowBytes is the HTTP/2 flow-control window, per stream and per
// connection, that host and driver give each other, fixed. Left dynamic,
// gRPC estimates the bandwidth with a PING and its acknowledgement at the
// start of every burst of data: with the span ring, each Export is such a
// burst, and each batch cost both processes a ping's round trip (writes,
// reads, wake-ups) on top of the RPC's own. 16 MiB is as far as that
// estimate would grow the window, so a batch sent inside its Export (the
// gRPC transport) is not slowed either.
const FlowWindowBytes = 16 << 20

// InfoEnv, set to "1" in a driver's environment, makes the driver print
// its DriverInfo as one JSON line and exit, without the plugin handshake:
// how `tracehop version -drivers` learns what each driver is.
const InfoEnv = "TRACEHOP_DRIVER_INFO"

// DriverInfo is what a driver says of itself when InfoEnv asks.
type DriverInfo struct {
	// Version is the tracehop version the driver's SDK was built from.
	Version string `json:"version"`
	// Protocol is the host-driver protocol version it speaks.
	Protocol int `json:"protocol"`
	// Go is the Go toolchain that built it.
	Go string `json:"go"`
}
