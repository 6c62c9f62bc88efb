// Package sdk is what a tracehop driver author imports. A driver implements
// the Driver interface (Configure, Export, Shutdown) and its main function is
// one line:
//
//	func main() { sdk.Serve(mydriver.New()) }
//
// Serve runs the driver as a plugin process that the tracehop host launches,
// handshakes with over mutually authenticated gRPC, configures and feeds
// batches of finished spans. The author never touches go-plugin or gRPC.
//
// The spans an Export receives, and their tags and events, are reused for
// the next batch once Export returns: a driver that keeps any of them
// longer (to send them later, say) keeps a Span.Clone.
// Serve also ends the process when tracehop, its parent, is gone.
//
// The package also has the helpers a driver's Configure needs (DecodeConfig
// for strict decoding with errors that name the field, Duration, Secret) and
// the span types. sdk/drivertest is the conformance kit every driver's tests
// should run.
package sdk
